"""Committee consensus (fedchain.core.consensus): worked examples, and the arithmetic against a plain reference."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedchain.core.consensus import SCORE_SCALE, ConsensusError, Reveal, consensus, consensus_score

A, B = b"\xaa" * 32, b"\xbb" * 32
S = SCORE_SCALE


def reveal(scores, model=A, available=None, slash=None) -> Reveal:
    n = len(scores)
    return Reveal(tuple(available or [True] * n), model, tuple(scores), tuple(slash or [False] * n))


def test_three_equal_members_one_colluding_the_colluder_is_clipped():
    # Contributors: honest h0, h1 and the colluder's accomplice x. Honest members agree; the colluder pays x.
    honest = reveal([S // 2, S // 2, 0])
    colluder = reveal([0, 0, S])
    out = consensus([100, 100, 100], [honest, honest, colluder], contributors_budget=900, members_budget=90)
    assert out.consensus_scores == (S // 2, S // 2, 0)
    assert out.rewards == (450, 450, 0)  # the accomplice gets nothing
    assert out.agreement == (S, S, 0)  # nothing of the colluder's vector survived clipping
    assert out.dividends == (45, 45, 0)
    assert out.model_digest == A


def test_worked_example_from_the_protocol_doc():
    # Stakes 50/30/20; scores for two contributors. c_0: sorted 0.7 (50), 0.6 (30) -> 80 > 50 at 0.6.
    r = [reveal([7 * S // 10, 3 * S // 10]), reveal([6 * S // 10, 4 * S // 10]), reveal([2 * S // 10, 8 * S // 10])]
    out = consensus([50, 30, 20], r, contributors_budget=1000, members_budget=0)
    assert out.consensus_scores == (6 * S // 10, 3 * S // 10)
    # weights: c0: 50*0.6 + 30*0.6 + 20*0.2 = 52; c1: 50*0.3 + 30*0.3 + 20*0.3 = 30 (in units of S/10)
    assert out.rewards == (1000 * 52 // 82, 1000 * 30 // 82)


def test_a_member_that_does_not_reveal_counts_as_zero_and_earns_nothing():
    out = consensus([100, 100, 100], [reveal([S, 0]), reveal([S, 0]), None], 100, 30)
    assert out.consensus_scores == (S, 0) and out.rewards == (100, 0)
    assert out.agreement[2] == 0 and out.dividends == (15, 15, 0)


def test_two_of_three_offline_means_no_majority_and_no_model():
    out = consensus([100, 100, 100], [reveal([S]), None, None], 100, 30)
    assert out.model_digest is None
    assert out.consensus_scores == (0,) and out.rewards == (0,)


def test_the_input_set_needs_a_stake_majority_and_excludes_what_it_lacks():
    seen_by_one = reveal([S // 2, S // 2], available=[True, False])
    out = consensus([100, 100, 100], [seen_by_one, reveal([S, 0], available=[True, False]), reveal([0, S])], 100, 0)
    assert out.inputs == (True, False)
    assert out.consensus_scores[1] == 0 and out.rewards[1] == 0


def test_slashing_needs_a_stake_majority_of_verdicts():
    r = [reveal([S, 0], slash=[False, True]), reveal([S, 0], slash=[False, True]), reveal([S, 0])]
    assert consensus([10, 10, 10], r, 0, 0).slashed == (False, True)
    assert consensus([10, 10, 40], r, 0, 0).slashed == (False, False)  # the heavy member disagrees


def test_exactly_half_the_stake_is_not_a_majority():
    assert consensus_score([50, 50], [S, 0], 100) == 0
    assert consensus([50, 50], [reveal([S], model=A), reveal([S], model=B)], 0, 0).model_digest is None


@pytest.mark.parametrize(
    ("reveals", "message"),
    [
        ([reveal([S, 1])], "sum to"),
        ([reveal([S]), reveal([S, 0])], "covers 2 submissions"),
        ([reveal([-1, S + 1])], r"\[0, 2\*\*32\)"),
    ],
)
def test_malformed_reveals_are_refused(reveals, message):
    with pytest.raises(ConsensusError, match=message):
        consensus([1] * len(reveals), reveals, 0, 0)


# ---------------------------------------------------------------- against a plain reference


def reference(stakes, reveals, cb, mb):
    """The formulas of the module docstring, written the slow way with exact fractions."""
    total = sum(stakes)
    n = len(next(r for r in reveals if r is not None).scores)
    live = [(s, r) for s, r in zip(stakes, reveals) if r is not None]
    inputs = [Fraction(sum(s for s, r in live if r.available[i]), total) > Fraction(1, 2) for i in range(n)]
    w = [[(r.scores[i] if r is not None and inputs[i] else 0) for i in range(n)] for r in reveals]
    c = []
    for i in range(n):
        candidates = sorted({w[v][i] for v in range(len(stakes))} | {0}, reverse=True)
        c.append(next(x for x in candidates + [0]
                      if x == 0 or Fraction(sum(s for v, s in enumerate(stakes) if w[v][i] >= x), total) > Fraction(1, 2)))
        if Fraction(sum(s for v, s in enumerate(stakes) if w[v][i] >= c[i]), total) <= Fraction(1, 2):
            c[i] = 0
    clipped = [[min(w[v][i], c[i]) for i in range(n)] for v in range(len(stakes))]
    weight = [sum(stakes[v] * clipped[v][i] for v in range(len(stakes))) for i in range(n)]
    rewards = [(cb * x // sum(weight)) if sum(weight) else 0 for x in weight]
    agreement = [sum(row) for row in clipped]
    dw = [stakes[v] * agreement[v] for v in range(len(stakes))]
    dividends = [(mb * x // sum(dw)) if sum(dw) else 0 for x in dw]
    return tuple(inputs), tuple(c), tuple(rewards), tuple(agreement), tuple(dividends)


@st.composite
def committees(draw):
    members = draw(st.integers(1, 7))
    n = draw(st.integers(1, 6))
    stakes = draw(st.lists(st.integers(1, 10**24), min_size=members, max_size=members))
    reveals = []
    for _ in range(members):
        if draw(st.booleans()) and draw(st.booleans()):
            reveals.append(None)
            continue
        raw = draw(st.lists(st.integers(0, 1000), min_size=n, max_size=n))
        total = sum(raw)
        scores = [0] * n if total == 0 else [x * S // total for x in raw]
        if total:
            scores[max(range(n), key=lambda i: raw[i])] += S - sum(scores)
        available = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        reveals.append(reveal(scores, available=available))
    if all(r is None for r in reveals):
        reveals[0] = reveal([S] + [0] * (n - 1))
    return stakes, reveals


@settings(max_examples=200, deadline=None)
@given(committees(), st.integers(0, 10**27), st.integers(0, 10**26))
def test_consensus_matches_the_reference(committee, contributors_budget, members_budget):
    stakes, reveals = committee
    out = consensus(stakes, reveals, contributors_budget, members_budget)
    inputs, c, rewards, agreement, dividends = reference(stakes, reveals, contributors_budget, members_budget)
    assert (out.inputs, out.consensus_scores, out.rewards, out.agreement, out.dividends) == (
        inputs, c, rewards, agreement, dividends)
    assert sum(out.rewards) <= contributors_budget and sum(out.dividends) <= members_budget
    # no single member below a stake majority can raise a contributor's consensus score above what a majority gave
    for i, ci in enumerate(out.consensus_scores):
        backing = sum(s for s, r in zip(stakes, reveals) if r is not None and out.inputs[i] and r.scores[i] >= ci)
        assert ci == 0 or 2 * backing > sum(stakes)


def test_integer_scores_sum_to_the_scale_and_keep_zeros():
    from fedchain.core.consensus import integer_scores

    assert integer_scores([0.5, 0.25, 0.25]) == (S // 2, S // 4, S // 4)
    third = integer_scores([1, 1, 1])
    assert sum(third) == S and third == (333_333_334, 333_333_333, 333_333_333)
    assert integer_scores([0.0, 0.0]) == (0, 0)
    assert integer_scores([0.3, 0.0])[1] == 0


def test_commitments_bind_the_member_and_every_field():
    from fedchain.core.consensus import commitment

    base = dict(chain_id=31337, contract="0x" + "11" * 20, task_id=1, round_index=0, member="0x" + "22" * 20,
                model_digest=A, report_digest=B, slash=[False, True], scores=[S, 0], salt=b"\x01" * 32)
    reference_hash = commitment(**base)
    assert len(reference_hash) == 32
    for change in ({"member": "0x" + "33" * 20}, {"scores": [0, S]}, {"slash": [False, False]}, {"salt": b"\x02" * 32},
                   {"round_index": 1}, {"chain_id": 1}):
        assert commitment(**{**base, **change}) != reference_hash
