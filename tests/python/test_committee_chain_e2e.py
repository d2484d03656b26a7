"""The committee chain adapter (fedchain.chain.committee) end to end on a devnet: deploy_all wires the
CommitteeManager; a committee of three proposes, joins, judges one round (votes, commits, reveals) and finalizes; the
posted reward root is the Python reference's (fedchain.core.consensus, fedchain.core.merkle); the logs decode."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e
FED = 10**18
SPEC, MODEL0, MODEL1, REPORT = (bytes([b]) * 32 for b in (0x5A, 0x0A, 0x01, 0x02))
S = 10**9


def travel_to(protocol, timestamp: int) -> None:
    w3 = protocol.chain.w3
    w3.provider.make_request("evm_setNextBlockTimestamp", [max(timestamp, protocol.chain.timestamp() + 1)])
    w3.provider.make_request("evm_mine", [])


def test_a_committee_round_through_the_adapter(devnet, protocol):
    from fedchain.chain.committee import CommitteePhase
    from fedchain.chain.errors import TransactionRevertedError
    from fedchain.chain.protocol import TaskParams
    from fedchain.core.consensus import Reveal, consensus
    from fedchain.core.merkle import RewardTree
    from fedchain.sim.devnet import dev_account

    committees = protocol.committees
    assert protocol.manager.functions.committeeManager().call() == committees.address
    owner, members, contributors = dev_account(0), [dev_account(i) for i in (1, 2, 3)], [dev_account(i) for i in (4, 5)]
    for account in [owner, *members, *contributors]:
        protocol.chain.send(protocol.token.functions.mint(account.address, 10_000 * FED), owner, action="mint")
    seat = protocol.registry.functions.minValidatorStake().call()
    committee_id, _ = committees.propose(owner, [m.address for m in members], seat, 60, 60, 60, 1_000)
    assert committees.pending_committee_of(owner.address) == committee_id
    for member, stake in zip(members, (seat, seat, 2 * seat)):
        protocol.ensure_stake(member, stake)
        committees.join(member, committee_id, stake)
    params = TaskParams(
        reward_token=protocol.token.address, spec_digest=SPEC, initial_model_digest=MODEL0, num_rounds=2,
        reward_per_round=1_000 * FED, submission_window=600, aggregation_window=600,
        min_contributor_stake=protocol.registry.functions.minContributorStake().call(), max_contributors=2,
        validator=committees.address, slash_amount=FED,
    )
    task_id, _ = protocol.create_task(owner, params)
    info = committees.committee(committee_id)
    assert info.bound and info.task_id == task_id and info.stakes == (seat, seat, 2 * seat) and all(info.joined)
    assert committees.committee_of_task(task_id) == committee_id
    for i, c in enumerate(contributors):
        protocol.ensure_stake(c, params.min_contributor_stake)
        protocol.submit_update(c, task_id, 0, bytes([i + 1]) * 32, 10)  # the second closes submissions

    status = committees.round_status(task_id, 0)
    assert status.phase == CommitteePhase.AVAILABILITY
    # Stake units 1, 1, 2: the second member could not open the second update, which still has 3 of 4 units.
    committees.vote_availability(members[0], task_id, 0, [c.address for c in contributors])
    committees.vote_availability(members[1], task_id, 0, [contributors[0].address])
    assert committees.agreed_inputs(task_id, 0, [c.address for c in contributors]) == []  # 2 of 4: no majority
    committees.vote_availability(members[2], task_id, 0, [c.address for c in contributors])
    inputs = committees.agreed_inputs(task_id, 0, [c.address for c in contributors])
    assert inputs == sorted((c.address for c in contributors), key=lambda a: int(a, 16))
    votes = committees.availability_votes(task_id, 0)
    assert [v.member for v in votes] == [m.address for m in members] and votes[-1].input_count == 2

    travel_to(protocol, status.availability_end)
    scores = {members[0].address: (S // 2, S // 2), members[1].address: (S, 0), members[2].address: (S // 4, 3 * S // 4)}
    salt = b"\x07" * 32
    for member in members:
        digest = committees.commitment(member.address, task_id, 0, MODEL1, REPORT, [False, False], scores[member.address], salt)
        committees.commit(member, task_id, 0, digest)
    travel_to(protocol, status.commit_end)
    with pytest.raises(TransactionRevertedError, match="CommitteeManagerCommitmentMismatch"):
        committees.reveal(members[0], task_id, 0, MODEL1, REPORT, inputs, (S, 0), [False, False], salt)
    for member in members:
        committees.reveal(member, task_id, 0, MODEL1, REPORT, inputs, scores[member.address], [False, False], salt)
    assert committees.inputs_of(task_id, 0) == inputs
    assert committees.ballot(task_id, 0, members[1].address).scores == (S, 0)
    revealed = committees.reveals(task_id, 0)
    assert {r.member: r.scores for r in revealed} == scores

    committees.finalize(contributors[0], task_id, 0)  # early: everyone who committed revealed
    stakes = [seat, seat, 2 * seat]
    outcome = consensus(stakes, [Reveal((True, True), MODEL1, scores[m.address], (False, False)) for m in members],
                        contributors_budget=900 * FED, members_budget=100 * FED)
    entries = dict(zip(inputs, outcome.rewards))
    entries.update({m.address: d for m, d in zip(members, outcome.dividends)})
    tree = RewardTree(task_id, 0, {a: v for a, v in entries.items() if v})
    assert protocol.round(task_id, 0).rewards_root == tree.root
    [final] = committees.finalizations(task_id, 0)
    assert final.consensus_scores == outcome.consensus_scores and final.dividends == outcome.dividends
    assert committees.round_status(task_id, 0).phase == CommitteePhase.FINALIZED
    for account in [*contributors, *members]:
        if account.address in tree.entries:
            protocol.claim(account, task_id, 0, tree.amount(account.address), tree.proof(account.address))
