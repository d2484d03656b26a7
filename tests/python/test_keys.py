"""Sealing key files: mode 0600, optional password, no overwrite, clear errors; the CLI never shows the key."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedchain.cli.main import app
from fedchain.core.keys import (
    KeyFileExistsError,
    KeyFileNotFoundError,
    KeyPasswordError,
    SealingKeyError,
    generate_sealing_key,
    load_sealing_key,
    public_key_bytes,
    public_key_from_hex,
    public_key_hex,
)


def test_key_file_is_private_and_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "validator.pem"
    public = generate_sealing_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert public_key_bytes(load_sealing_key(path)) == public


def test_password_protected_key(tmp_path: Path) -> None:
    path = tmp_path / "v.pem"
    public = generate_sealing_key(path, password="correct horse")
    assert b"ENCRYPTED" in path.read_bytes()
    assert public_key_bytes(load_sealing_key(path, "correct horse")) == public
    with pytest.raises(KeyPasswordError, match="password-protected"):
        load_sealing_key(path)
    with pytest.raises(KeyPasswordError, match="wrong password"):
        load_sealing_key(path, "wrong")


def test_password_for_a_plain_key_is_an_error(tmp_path: Path) -> None:
    generate_sealing_key(tmp_path / "v.pem")
    with pytest.raises(KeyPasswordError, match="not password-protected"):
        load_sealing_key(tmp_path / "v.pem", "pw")


def test_existing_key_is_not_overwritten_unless_told(tmp_path: Path) -> None:
    path = tmp_path / "v.pem"
    first = generate_sealing_key(path)
    with pytest.raises(KeyFileExistsError):
        generate_sealing_key(path)
    assert public_key_bytes(load_sealing_key(path)) == first
    second = generate_sealing_key(path, overwrite=True)
    assert second != first and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_missing_and_garbage_files(tmp_path: Path) -> None:
    with pytest.raises(KeyFileNotFoundError, match="fedchain keys create"):
        load_sealing_key(tmp_path / "absent.pem")
    (tmp_path / "junk.pem").write_text("junk")
    with pytest.raises(SealingKeyError):
        load_sealing_key(tmp_path / "junk.pem")


def test_hex_helpers_round_trip() -> None:
    raw = bytes(range(32))
    assert public_key_from_hex(public_key_hex(raw)) == raw
    assert public_key_from_hex("0x" + raw.hex()) == raw
    with pytest.raises(SealingKeyError):
        public_key_from_hex("abcd")


def test_cli_create_and_public_print_only_the_public_key(tmp_path: Path) -> None:
    runner = CliRunner()
    path = tmp_path / "v.pem"
    created = runner.invoke(app, ["keys", "create", "--out", str(path), "--password-env", "FC_PW"],
                            env={"FC_PW": "s3cret"})
    assert created.exit_code == 0, created.output
    public_hex = created.stdout.strip().splitlines()[-1]
    assert public_key_from_hex(public_hex) == public_key_bytes(load_sealing_key(path, "s3cret"))
    shown = runner.invoke(app, ["keys", "public", "--key", str(path), "--password-env", "FC_PW"],
                          env={"FC_PW": "s3cret"})
    assert shown.exit_code == 0 and shown.stdout.strip() == public_hex
    assert "PRIVATE" not in created.output + shown.output and "s3cret" not in created.output + shown.output
    again = runner.invoke(app, ["keys", "create", "--out", str(path)])
    assert again.exit_code == 1 and "already exists" in again.output
