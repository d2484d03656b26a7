"""A committee round end to end on Anvil: three staked members (one colluding, one offline in the second task),
real training, sealed updates, availability votes, commits, reveals and the contract's consensus; claims rebuilt from
the reveals, and `fedchain verify` agreeing with the chain."""

from __future__ import annotations

import time

import pytest

from fedchain.learning.trainers import LocalData

pytestmark = pytest.mark.e2e
FED = 10**18
WINDOWS = (6, 10, 6)  # availability, commit, reveal (seconds)


@pytest.fixture(scope="module")
def committee_task(devnet, protocol, ipfs, tmp_path_factory):
    return new_committee_task(protocol, ipfs, tmp_path_factory.mktemp("committee"), seats=1)


def new_committee_task(protocol, ipfs, tmp, seats: int):
    """A committee of dev accounts 20-22 (each staking `seats` seats), contributors 24-26, one round."""
    from fedchain.core.keys import generate_sealing_key, load_sealing_key
    from fedchain.core.spec import ScoringConfig, mnist_spec
    from fedchain.learning.data import dirichlet_shards, mnist_subset, save_npz, train_test_split
    from fedchain.roles.owner import create_task_from_spec
    from fedchain.sim.devnet import dev_account

    owner = dev_account(0)
    members = [dev_account(20 + i) for i in range(3)]
    contributors = [dev_account(24 + i) for i in range(3)]
    for account in (owner, *members, *contributors):
        protocol.chain.send(protocol.token.functions.mint(account.address, 10_000 * FED), owner, action="mint")
    seat = protocol.registry.functions.minValidatorStake().call()
    keys = []
    for i, member in enumerate(members):
        protocol.ensure_stake(member, seat * seats)
        keys.append(generate_sealing_key(tmp / f"member{i}.key"))
    committees = protocol.committees
    committee_id, _ = committees.propose(owner, [m.address for m in members], seat, *WINDOWS, 1_000)
    for member in members:
        committees.join(member, committee_id, seat)
    spec = mnist_spec("mlp", [k.hex() for k in keys], scoring=ScoringConfig(permutations=4, eval_samples=100))
    task_id = create_task_from_spec(
        protocol, ipfs, owner, spec, rounds=1, reward_per_round=1_000 * FED, submission_window=600,
        aggregation_window=120, max_contributors=3, validator=committees.address,
    )
    x, y = mnist_subset()
    split = train_test_split(x, y, test_fraction=0.3, seed=0)
    shards = dirichlet_shards(split.y_train, 3, alpha=5.0, seed=0)
    holdouts = []
    for i in range(3):  # each member scores on its own held-out data
        part = slice(i * 400, (i + 1) * 400)
        holdouts.append(tmp / f"holdout{i}.npz")
        save_npz(holdouts[-1], split.x_test[part], split.y_test[part])
    return {"task_id": task_id, "members": members, "contributors": contributors, "tmp": tmp, "shards": shards,
            "split": split, "holdouts": holdouts, "keys": [load_sealing_key(tmp / f"member{i}.key") for i in range(3)]}


def _contribute(protocol, ipfs, task) -> None:
    from fedchain.roles.contributor import Contributor, ContributorConfig

    split, tmp = task["split"], task["tmp"]
    for account, shard in zip(task["contributors"], task["shards"]):
        client = Contributor(protocol, ipfs, account, ContributorConfig(task["task_id"], tmp / "unused.npz",
                                                                         tmp / "state", progress=False))
        protocol.ensure_stake(account, protocol.task(task["task_id"]).min_contributor_stake)
        x, y = split.x_train[shard][:300], split.y_train[shard][:300]
        assert client.contribute_round(0, LocalData(x, y)) is not None


def _serve(protocol, ipfs, task, behaviours, deadline_s=150.0):
    from fedchain.chain.protocol import RoundPhase
    from fedchain.roles.collect import UpdateCollector
    from fedchain.roles.member import CommitteeMember, MemberConfig

    members = []
    for i, (account, behaviour) in enumerate(zip(task["members"], behaviours)):
        collector = UpdateCollector(protocol, ipfs, task["task_id"], task["holdouts"][i], task["keys"][i], "cpu")
        config = MemberConfig(task["task_id"], task["holdouts"][i], task["tmp"] / f"mstate{i}", poll_interval=0.2,
                              scoring_workers=1)
        members.append(CommitteeMember(protocol, protocol.committees, ipfs, account, collector, config, behaviour))
    done = [False] * len(members)
    stop = time.monotonic() + deadline_s
    while not all(done) and time.monotonic() < stop:
        for i, member in enumerate(members):
            if not done[i]:
                done[i] = member.serve_round(0)
        time.sleep(0.3)
    return protocol.round(task["task_id"], 0).phase == RoundPhase.FINALIZED


def test_a_committee_with_a_colluding_member_finalizes_by_consensus(devnet, protocol, ipfs, committee_task):
    from fedchain.roles.member import Behaviour
    from fedchain.roles.verify import verify_round
    from fedchain.sim.member_attacks import member_behaviour
    from fedchain.views.committee import committee_round
    from fedchain.views.rewards import claimable_rewards

    task = committee_task
    _contribute(protocol, ipfs, task)
    victim = task["contributors"][0].address
    colluding = member_behaviour("colluding", accomplices=[victim])
    assert _serve(protocol, ipfs, task, [Behaviour(), Behaviour(), colluding])

    view = committee_round(protocol, task["task_id"], 0)
    assert view is not None and view.matches_chain
    assert len(view.inputs) == 3 and all(r is not None for r in view.reveals)
    # The honest majority decides: the colluder's all-in vote for one contributor is clipped to the consensus.
    honest_agreement = min(view.outcome.agreement[:2])
    assert view.outcome.agreement[2] < honest_agreement
    assert view.outcome.dividends[2] < min(view.outcome.dividends[:2])
    assert sum(view.outcome.rewards) > 0

    # Every contributor and member claims what the consensus gives it, through TaskManager's Merkle claims.
    for account in [*task["contributors"], *task["members"]]:
        claims = claimable_rewards(protocol, ipfs, task["task_id"], account.address)
        expected = view.entries.get(account.address, 0)
        assert sum(c.amount for c in claims) == expected
        if claims:
            before = protocol.balance_of(account.address)
            protocol.claim_many(account, task["task_id"], [(c.round, c.amount, c.proof) for c in claims])
            assert protocol.balance_of(account.address) == before + expected

    result = verify_round(protocol, ipfs, task["task_id"], 0)
    assert result.ok, [c for c in result.checks if not c.ok]


def test_one_silent_member_neither_stalls_the_round_nor_escapes_its_slash(devnet, protocol, ipfs, committee_task,
                                                                          tmp_path):
    from fedchain.roles.member import Behaviour
    from fedchain.sim.member_attacks import member_behaviour
    from fedchain.views.committee import committee_round

    task = new_committee_task(protocol, ipfs, tmp_path, seats=2)  # the members' first seats are still locked
    _contribute(protocol, ipfs, task)
    silent = task["members"][2].address
    stake_before = protocol.active_stake(silent)
    assert _serve(protocol, ipfs, task, [Behaviour(), Behaviour(), member_behaviour("offline")])
    view = committee_round(protocol, task["task_id"], 0)
    assert view is not None and view.reveals[2] is None and view.matches_chain
    assert view.outcome.dividends[2] == 0 and sum(view.outcome.rewards) > 0
    assert protocol.committees.ballot(task["task_id"], 0, silent).slashed
    assert protocol.active_stake(silent) < stake_before


def test_a_member_killed_after_committing_and_restarted_reveals_once_the_same_result(devnet, protocol, ipfs,
                                                                                  committee_task, tmp_path):
    from fedchain.roles.member import Behaviour, CommitteeMember

    task = new_committee_task(protocol, ipfs, tmp_path, seats=3)
    _contribute(protocol, ipfs, task)
    crashed = {"done": False}
    original_save = CommitteeMember._save

    def crash_after_commit(self, round_index, state):
        # The commit transaction went through, but the process dies before it records that it did.
        if state.get("committed") and self.account.address == task["members"][0].address and not crashed["done"]:
            crashed["done"] = True
            raise KeyboardInterrupt("killed")
        original_save(self, round_index, state)

    CommitteeMember._save = crash_after_commit
    try:
        with pytest.raises(KeyboardInterrupt):
            _serve(protocol, ipfs, task, [Behaviour()] * 3)
    finally:
        CommitteeMember._save = original_save
    member = task["members"][0].address
    committed = protocol.committees.ballot(task["task_id"], 0, member).commitment
    assert committed != bytes(32)
    assert _serve(protocol, ipfs, task, [Behaviour()] * 3)  # restarted: same state directories
    reveals = [r for r in protocol.committees.reveals(task["task_id"], 0) if r.member == member]
    assert len(reveals) == 1
    assert protocol.committees.ballot(task["task_id"], 0, member).commitment == committed
