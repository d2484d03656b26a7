"""The committee's consensus and reward-root libraries against the Python reference: fedchain.core.consensus
(stake-weighted consensus, exact integers) and fedchain.core.merkle.RewardTree (OpenZeppelin's StandardMerkleTree).

The libraries are reached through contracts/test/CommitteeMathHarness.sol with eth_call only, so Hypothesis can try
many random committees (stakes, score matrices, missing reveals) quickly; test_committee_rounds.py checks the same
outcome through the deployed CommitteeManager on a few."""

from __future__ import annotations

import pytest
from eth_utils import keccak, to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedchain.core.consensus import SCORE_SCALE, Reveal, bitmap, consensus
from fedchain.core.merkle import RewardTree

S = SCORE_SCALE
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def harness(project, admin):
    return project.CommitteeMathHarness.deploy(sender=admin)


def score_row(raw: list[int]) -> list[int]:
    """Non-negative integers summing to SCORE_SCALE (or all zero), shaped by `raw`."""
    total = sum(raw)
    if total == 0:
        return [0] * len(raw)
    row = [x * S // total for x in raw]
    row[max(range(len(raw)), key=lambda i: raw[i])] += S - sum(row)
    return row


@st.composite
def committees(draw):
    m = draw(st.integers(1, 16))
    n = draw(st.integers(0, 12))
    # Small stakes make exact halves (no majority) likely; large ones probe the bounds (seats are below 2^96).
    stakes = draw(st.lists(st.integers(1, 4) | st.integers(1, 2**96 - 1), min_size=m, max_size=m))
    rows, slashes, models = [], [], []
    for _ in range(m):
        if draw(st.integers(0, 3)) == 0:  # a member that did not reveal
            rows.append(None), slashes.append(0), models.append(b"\x00" * 32)
            continue
        rows.append(score_row(draw(st.lists(st.integers(0, 1000), min_size=n, max_size=n))))
        slashes.append(draw(st.integers(0, 2**n - 1)))
        models.append(draw(st.sampled_from([b"\xaa" * 32, b"\xbb" * 32])))
    return stakes, rows, slashes, models, n


def python_outcome(stakes, rows, slashes, models, n, cb, mb):
    reveals = [None if r is None else Reveal((True,) * n, models[v], tuple(r), tuple(bool(slashes[v] >> i & 1) for i in range(n)))
               for v, r in enumerate(rows)]
    if all(r is None for r in reveals):  # the reference needs one reveal to know n; nothing can score then
        return None
    return consensus(stakes, reveals, cb, mb)


@FAST
@given(committees(), st.integers(0, 2**120 - 1), st.integers(0, 2**120 - 1))
def test_tally_matches_the_python_consensus(harness, committee, cb, mb):
    stakes, rows, slashes, models, n = committee
    full = [r if r is not None else [0] * n for r in rows]
    flat = [full[v][i] for i in range(n) for v in range(len(rows))]  # input-major: n rows of m
    consensus_scores, rewards, agreement, dividends = harness.tally(stakes, flat, n, cb, mb)
    out = python_outcome(stakes, rows, slashes, models, n, cb, mb)
    if out is None:
        assert not any(consensus_scores) and not any(rewards) and not any(dividends)
        return
    assert tuple(consensus_scores) == out.consensus_scores
    assert tuple(rewards) == out.rewards
    assert tuple(agreement) == out.agreement
    assert tuple(dividends) == out.dividends


@FAST
@given(committees())
def test_model_and_slashes_need_a_stake_majority_as_in_python(harness, committee):
    stakes, rows, slashes, models, n = committee
    out = python_outcome(stakes, rows, slashes, models, n, 0, 0)
    digest, lead = harness.majorityDigest(models, stakes)
    expected_model = out.model_digest if out else None
    assert digest == (expected_model or b"\x00" * 32)
    if expected_model:  # the lowest-index member that revealed the consensus model gives the report
        assert lead == models.index(expected_model)
    bits = harness.majorityBits(slashes, stakes, n)
    assert bits == (bitmap(out.slashed) if out else 0)


def test_the_worked_example_of_the_protocol_doc(harness):
    # Stakes 50/30/20, two contributors (tests/python/test_consensus.py): c = (0.6, 0.3) of the scale.
    rows = [[7 * S // 10, 3 * S // 10], [6 * S // 10, 4 * S // 10], [2 * S // 10, 8 * S // 10]]
    flat = [rows[v][i] for i in range(2) for v in range(3)]  # input-major
    c, rewards, agreement, dividends = harness.tally([50, 30, 20], flat, 2, 1000, 100)
    assert list(c) == [6 * S // 10, 3 * S // 10]
    assert list(rewards) == [1000 * 52 // 82, 1000 * 30 // 82]
    assert list(agreement) == [9 * S // 10, 9 * S // 10, 5 * S // 10]
    assert list(dividends) == [100 * 50 * 9 // (50 * 9 + 30 * 9 + 20 * 5), 100 * 30 * 9 // 820, 100 * 20 * 5 // 820]


def test_exactly_half_the_stake_is_no_majority(harness):
    assert harness.majorityDigest([b"\xaa" * 32, b"\xbb" * 32], [50, 50]) == (b"\x00" * 32, 0)
    c, *_ = harness.tally([50, 50], [S, 0], 1, 0, 0)
    assert list(c) == [0]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 2**32), st.integers(1, 2**128)), min_size=1, max_size=40, unique_by=lambda e: e[0]),
       st.integers(0, 2**64), st.integers(0, 2**24))
def test_reward_root_is_the_standard_merkle_tree(harness, entries, task_id, round_index):
    accounts = [to_checksum_address(keccak(b"acct%d" % seed)[12:]) for seed, _ in entries]
    amounts = [amount for _, amount in entries]
    tree = RewardTree(task_id, round_index, dict(zip(accounts, amounts)))
    assert harness.root(task_id, round_index, accounts, amounts) == tree.root


def test_reward_root_of_no_leaves_is_zero(harness):
    assert harness.root(1, 0, [], []) == b"\x00" * 32
