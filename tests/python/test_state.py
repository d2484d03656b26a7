"""Local state files bound to the deployment they were made on."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from fedchain.state import (
    StateBinding,
    StateCorruptError,
    StateMismatchError,
    check_bound_dir,
    delete_state,
    read_bound_json,
    superseded_state,
    write_bound_json,
)

HERE = StateBinding(31337, "0x" + "aa" * 20, 1, "0x" + "01" * 32)
RESET = replace(HERE, block_hash="0x" + "02" * 32)  # a devnet started anew: same chain id, same addresses


def test_a_file_reads_back_on_its_own_deployment(tmp_path):
    write_bound_json(tmp_path / "s.json", {"block": 7}, HERE)
    assert read_bound_json(tmp_path / "s.json", HERE) == {"block": 7}
    assert read_bound_json(tmp_path / "absent.json", HERE) is None


def test_a_file_of_a_reset_chain_is_refused_with_what_to_do(tmp_path):
    write_bound_json(tmp_path / "v" / "round-0.json", {"round": 0}, RESET)
    with pytest.raises(StateMismatchError, match=r"was made on chain 31337.*0x020202.*but this is.*0x010101.*Delete"):
        read_bound_json(tmp_path / "v" / "round-0.json", HERE)
    with pytest.raises(StateMismatchError):
        check_bound_dir(tmp_path / "v", HERE)


def test_an_unbound_or_damaged_file_is_refused(tmp_path):
    (tmp_path / "old.json").write_text(json.dumps({"block": 500}))
    with pytest.raises(StateMismatchError, match="names no chain"):
        read_bound_json(tmp_path / "old.json", HERE)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(StateCorruptError, match="not valid JSON"):
        read_bound_json(tmp_path / "bad.json", HERE)


def test_superseded_state_is_what_an_earlier_chain_at_these_addresses_left(tmp_path):
    write_bound_json(tmp_path / "a" / "round-0.json", {"files": ["round-0.update"]}, RESET)
    (tmp_path / "a" / "round-0.update").write_bytes(b"update")
    write_bound_json(tmp_path / "b.json", {}, HERE)
    write_bound_json(tmp_path / "c.json", {}, replace(RESET, contract="0x" + "bb" * 20))  # another deployment
    (tmp_path / "notes.json").write_text("{}")  # not fedchain state
    stale = superseded_state(tmp_path, HERE)
    assert stale == [tmp_path / "a" / "round-0.json"]
    assert sorted(p.name for p in delete_state(stale)) == ["round-0.json", "round-0.update"]
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["b.json", "c.json", "notes.json"]
