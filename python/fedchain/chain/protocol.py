"""Typed access to fedchain's contracts: the task manager, the stake registry and ERC20 tokens."""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from web3.exceptions import ContractCustomError, ContractLogicError
from web3.logs import DISCARD

from fedchain.chain.client import Chain, TxResult
from fedchain.chain.committee import Committees
from fedchain.chain.deployments import Deployments
from fedchain.chain.errors import ChainError, TaskNotFoundError
from fedchain.state import StateBinding

log = logging.getLogger(__name__)


class RoundPhase(enum.IntEnum):
    PENDING = 0
    OPEN = 1
    AGGREGATING = 2
    FINALIZED = 3
    EXPIRED = 4


@dataclass(frozen=True)
class TaskParams:
    reward_token: str
    spec_digest: bytes
    initial_model_digest: bytes
    num_rounds: int
    reward_per_round: int
    submission_window: int
    aggregation_window: int
    min_contributor_stake: int
    max_contributors: int
    validator: str
    slash_amount: int
    # A round stays open at least this long even when full; meanwhile more stake displaces the least (0: a full
    # round closes at once, as before; open to a sybil fill, see docs/PROTOCOL.md).
    min_open: int = 0

    @property
    def budget(self) -> int:
        return self.num_rounds * self.reward_per_round

    def as_tuple(self) -> tuple:
        return (
            to_checksum_address(self.reward_token), self.spec_digest, self.initial_model_digest, self.num_rounds,
            self.reward_per_round, self.submission_window, self.aggregation_window, self.min_contributor_stake,
            self.max_contributors, to_checksum_address(self.validator), self.slash_amount, self.min_open,
        )


@dataclass(frozen=True)
class TaskInfo:
    task_id: int
    owner: str
    reward_token: str
    validator: str
    spec_digest: bytes
    initial_model_digest: bytes
    num_rounds: int
    current_round: int
    max_contributors: int
    submission_window: int
    aggregation_window: int
    reward_per_round: int
    min_contributor_stake: int
    slash_amount: int
    funded: int
    paid_out: int
    refunded: int
    carry: int
    cancelled: bool
    ended: bool
    ended_at: int
    min_open: int


@dataclass(frozen=True)
class RoundInfo:
    phase: RoundPhase
    opened_at: int
    submission_deadline: int
    aggregation_deadline: int
    submissions: int
    rewards_root: bytes
    total_rewards: int
    claimed: int


@dataclass(frozen=True)
class Submission:
    task_id: int
    round: int
    contributor: str
    digest: bytes
    num_samples: int
    block_number: int
    log_index: int


@dataclass(frozen=True)
class PseudoLabelDeclaration:
    """A PseudoLabelsDeclared event: the summary of the pseudo-labels a submission declares (decoded by
    fedchain.unlabelled.record.Summary.from_event)."""

    task_id: int
    round: int
    contributor: str
    labels_root: bytes
    summary: int
    histogram: bytes
    block_number: int
    log_index: int


@dataclass(frozen=True)
class Finalization:
    task_id: int
    round: int
    model_digest: bytes
    report_digest: bytes
    rewards_root: bytes
    total_rewards: int
    block_number: int


class Protocol:
    """The deployed contracts of one network, with typed reads, writes and event queries."""

    def __init__(self, chain: Chain, deployments: Deployments) -> None:
        self.chain = chain
        self.deployments = deployments
        self.manager = chain.contract("TaskManager", deployments.address("TaskManager"))
        self.registry = chain.contract("StakeRegistry", deployments.address("StakeRegistry"))
        self.token = chain.contract("FedToken", deployments.address("FedToken"))
        self._binding: StateBinding | None = None
        self._committees: Committees | None = None

    def binding(self) -> StateBinding:
        """What local state made against this deployment is bound to: the chain id, the TaskManager's address and
        the hash of the deployment's first block (the one after the deployments file's `block`, which holds the
        first deployment transaction). A fresh Anvil repeats chain id and addresses, never that hash. (Not the
        genesis block: Anvil makes a new one each time it loads a saved chain.)"""
        if self._binding is None:
            number = self.deployments.block + 1
            if number > self.chain.block_number():
                raise ChainError(f"the deployments file says the contracts were deployed after block "
                                 f"{self.deployments.block}, but {self.chain.rpc_url} has no block {number}: it is "
                                 "not the chain they were deployed on (pass the matching --deployments)")
            block = self.chain.w3.eth.get_block(number)
            self._binding = StateBinding(
                chain_id=self.chain.chain_id, contract=str(self.manager.address),
                block=number, block_hash="0x" + bytes(block["hash"]).hex(),
            )
        return self._binding

    @property
    def committees(self) -> Committees:
        """The CommitteeManager (ArtifactsError if the deployments file predates it)."""
        if self._committees is None:
            self._committees = Committees.from_deployments(self.chain, self.deployments)
        return self._committees

    # ─── tokens ───
    def erc20(self, address: str) -> Any:
        return self.chain.contract("FedToken", address)  # any ERC20: FedToken's ABI is a superset

    def balance_of(self, account: str, token: str | None = None) -> int:
        contract = self.erc20(token) if token else self.token
        return contract.functions.balanceOf(to_checksum_address(account)).call()

    def approve(self, account: LocalAccount, spender: str, amount: int, token: str | None = None) -> TxResult:
        contract = self.erc20(token) if token else self.token
        return self.chain.send(contract.functions.approve(spender, amount), account, action="approve")

    # ─── staking ───
    def active_stake(self, account: str) -> int:
        return self.registry.functions.activeStake(to_checksum_address(account)).call()

    def locked_stake(self, account: str) -> int:
        """Stake of `account` locked behind submissions whose locks were not released yet (never withdrawable)."""
        return self.registry.functions.lockedStake(to_checksum_address(account)).call()

    def eth_balance(self, account: str) -> int:
        return int(self.chain.w3.eth.get_balance(to_checksum_address(account)))

    def unbonding(self, account: str) -> tuple[int, int]:
        """(amount unbonding, unix time it becomes withdrawable)."""
        amount, release = self.registry.functions.unbonding(to_checksum_address(account)).call()
        return int(amount), int(release)

    def unbonding_period(self) -> int:
        return int(self.registry.functions.unbondingPeriod().call())

    def min_stakes(self) -> tuple[int, int]:
        """(minimum contributor stake, minimum validator stake) of the registry."""
        return (int(self.registry.functions.minContributorStake().call()),
                int(self.registry.functions.minValidatorStake().call()))

    def stake(self, account: LocalAccount, amount: int) -> list[TxResult]:
        """Approve and stake `amount` of the stake token."""
        approve = self.approve(account, self.registry.address, amount)
        return [approve, self.chain.send(self.registry.functions.stake(amount), account, action="stake")]

    def request_unstake(self, account: LocalAccount, amount: int) -> TxResult:
        return self.chain.send(self.registry.functions.requestUnstake(amount), account, action="requestUnstake")

    def withdraw_stake(self, account: LocalAccount) -> TxResult:
        return self.chain.send(self.registry.functions.withdraw(), account, action="withdraw")

    def ensure_stake(self, account: LocalAccount, minimum: int) -> list[TxResult]:
        """Top the caller's active stake up to `minimum` (approve + stake); nothing if it is already there."""
        missing = minimum - self.active_stake(account.address)
        if missing <= 0:
            return []
        approve = self.approve(account, self.registry.address, missing)
        staked = self.chain.send(self.registry.functions.stake(missing), account, action="stake")
        return [approve, staked]

    # ─── tasks ───
    def create_task(self, owner: LocalAccount, params: TaskParams, epsilon_cap: int = 0) -> tuple[int, TxResult]:
        """Create a task (a private one when `epsilon_cap`, each contributor's cap in micro-epsilon, is positive)."""
        self.approve(owner, self.manager.address, params.budget, token=params.reward_token)
        if epsilon_cap:
            fn = self.manager.functions.createPrivateTask(params.as_tuple(), epsilon_cap)
            result = self.chain.send(fn, owner, action="createPrivateTask")
        else:
            result = self.chain.send(self.manager.functions.createTask(params.as_tuple()), owner, action="createTask")
        (event,) = self.manager.events.TaskCreated().process_receipt(result.receipt, errors=DISCARD)
        return int(event["args"]["taskId"]), result

    def task(self, task_id: int) -> TaskInfo:
        if not 0 <= task_id < 2**64:
            self.require_task(task_id)
        try:
            raw = self.manager.functions.getTask(task_id).call()
        except (ContractCustomError, ContractLogicError, OverflowError, ValueError):
            self.require_task(task_id)  # TaskNotFoundError, naming the ids there are
            raise
        return TaskInfo(task_id, *raw)

    def require_task(self, task_id: int) -> None:
        """Raise TaskNotFoundError, naming the ids that exist, unless `task_id` is a task of this deployment."""
        count = self.task_count()
        if not 0 <= task_id < count:
            raise TaskNotFoundError(task_id, count, self.chain.rpc_url)

    def cancel_task(self, owner: LocalAccount, task_id: int) -> TxResult:
        return self.chain.send(self.manager.functions.cancelTask(task_id), owner, action="cancelTask")

    def withdraw_refund(self, owner: LocalAccount, task_id: int) -> tuple[int, TxResult]:
        amount = self.refundable(task_id)
        return amount, self.chain.send(self.manager.functions.withdrawRefund(task_id), owner, action="withdrawRefund")

    def refundable(self, task_id: int) -> int:
        """What the owner may withdraw now: 0 while the task runs."""
        return int(self.manager.functions.refundable(task_id).call())

    def claim_deadline(self, task_id: int) -> int:
        """Unix time after which rewards can no longer be claimed (0 while the task runs)."""
        return int(self.manager.functions.claimDeadline(task_id).call())

    def token_meta(self, address: str) -> tuple[str, int]:
        """(symbol, decimals) of an ERC20, ("FED", 18) for the stake token or one that does not say."""
        if to_checksum_address(address) == self.token.address:
            return "FED", 18
        contract = self.erc20(address)
        try:
            return str(contract.functions.symbol().call()), int(contract.functions.decimals().call())
        except Exception:  # an ERC20 without the optional metadata functions
            return "tokens", 0

    def round(self, task_id: int, round_index: int) -> RoundInfo:
        raw = list(self.manager.functions.getRound(task_id, round_index).call())
        raw[0] = RoundPhase(raw[0])
        return RoundInfo(*raw)

    def task_count(self) -> int:
        return self.manager.functions.taskCount().call()

    def submission_of(self, task_id: int, round_index: int, account: str) -> bytes:
        return bytes(self.manager.functions.submissionOf(task_id, round_index, to_checksum_address(account)).call())

    def has_claimed(self, task_id: int, round_index: int, account: str) -> bool:
        return self.manager.functions.hasClaimed(task_id, round_index, to_checksum_address(account)).call()

    def submit_update(self, account: LocalAccount, task_id: int, round_index: int, digest: bytes, num_samples: int,
                      epsilon: int | None = None) -> TxResult:
        """Submit an update digest. The submission locks the task's slash amount of the caller's stake until the
        round settles; when the unlocked stake cannot cover that, the caller's settled locks are released first.
        A private task's submission carries `epsilon`, the caller's cumulative spend for the task (micro-epsilon)."""
        if not self._lock_fits(account.address, task_id, round_index):
            self.release_settled(account)
        if epsilon is not None:  # a private task's submissions go through its ledger (no displacement)
            fn = self.manager.functions.submitPrivateUpdate(task_id, round_index, digest, num_samples, epsilon)
            return self.chain.send(fn, account, action="submitPrivateUpdate")
        displaced = self._displaceable(account.address, task_id, round_index)
        if displaced is not None:
            log.info("round %d of task %d is full: taking the slot of %s, which holds less stake", round_index,
                     task_id, displaced)
            fn = self.manager.functions.submitUpdateDisplacing(task_id, round_index, digest, num_samples, displaced)
            return self.chain.send(fn, account, action="submitUpdateDisplacing")
        fn = self.manager.functions.submitUpdate(task_id, round_index, digest, num_samples)
        return self.chain.send(fn, account, action="submitUpdate")

    def _displaceable(self, account: str, task_id: int, round_index: int) -> str | None:
        """In a full round that is still open (its task's min_open keeps it so), the submitter holding the least
        active stake, if that is strictly less than `account`'s: the slot a submission can take. None otherwise
        (then submitUpdate goes ahead, and reverts with TaskManagerRoundFull if the round is full)."""
        try:
            info, task = self.round(task_id, round_index), self.task(task_id)
        except ContractLogicError:
            return None
        if info.phase != RoundPhase.OPEN or info.submissions < task.max_contributors:
            return None
        stakes = {s.contributor: self.active_stake(s.contributor) for s in self.submissions(task_id, round_index)}
        if not stakes:
            return None
        weakest = min(stakes, key=lambda a: (stakes[a], a.lower()))
        return weakest if stakes[weakest] < self.active_stake(account) else None

    def close_full_round(self, caller: LocalAccount, task_id: int, round_index: int) -> bool:
        """Close a full round's submissions once it has been open its task's min_open seconds (anyone may); True if
        this call closed it. Rounds whose min_open is 0 close by themselves when the last slot is taken."""
        info, task = self.round(task_id, round_index), self.task(task_id)
        if (info.phase != RoundPhase.OPEN or info.submissions < task.max_contributors
                or time.time() < info.opened_at + task.min_open):
            return False
        self.chain.sync_clock()  # on Anvil, a block at the wall clock's time first
        try:
            self.chain.send(self.manager.functions.closeFullRound(task_id, round_index), caller, action="closeFullRound")
        except ChainError as exc:  # closed by someone else meanwhile
            log.info("round %d of task %d: not closed by this call: %s", round_index, task_id, exc)
            return False
        return True

    def submit_update_with_pseudo_labels(
        self, account: LocalAccount, task_id: int, round_index: int, digest: bytes, num_samples: int,
        labels_root: bytes, summary: int, histogram: bytes,
    ) -> TxResult:
        """submit_update with the update's pseudo-label declaration (emitted as PseudoLabelsDeclared)."""
        if not self._lock_fits(account.address, task_id, round_index):
            self.release_settled(account)
        fn = self.manager.functions.submitUpdateWithPseudoLabels(
            task_id, round_index, digest, num_samples, labels_root, summary, histogram)
        return self.chain.send(fn, account, action="submitUpdateWithPseudoLabels")

    def pseudo_label_declarations(self, task_id: int, round_index: int | None = None) -> list[PseudoLabelDeclaration]:
        """PseudoLabelsDeclared events of a task (one round's with round_index), in chain order."""
        filters: dict[str, Any] = {"taskId": task_id}
        if round_index is not None:
            filters["round"] = round_index
        logs = self.manager.events.PseudoLabelsDeclared().get_logs(from_block=self.deployments.block,
                                                                    argument_filters=filters)
        return sorted(
            (PseudoLabelDeclaration(
                int(e["args"]["taskId"]), int(e["args"]["round"]), to_checksum_address(e["args"]["contributor"]),
                bytes(e["args"]["labelsRoot"]), int(e["args"]["summary"]), bytes(e["args"]["histogram"]),
                e["blockNumber"], e["logIndex"]) for e in logs),
            key=lambda d: (d.block_number, d.log_index),
        )

    # ─── the privacy ledger ───
    def privacy_cap(self, task_id: int) -> int:
        """Each contributor's epsilon cap for the task in micro-epsilon (0: not a private task)."""
        return int(self.manager.functions.privacyCapOf(task_id).call())

    def privacy_spent(self, task_id: int, account: str) -> int:
        """`account`'s cumulative spend for the task as the chain records it, in micro-epsilon."""
        return int(self.manager.functions.privacySpentOf(task_id, to_checksum_address(account)).call())

    # ─── stake locks ───
    def locked_for(self, task_id: int, round_index: int, account: str) -> int:
        """Stake `account` still holds locked for its submission to this round (0 once released or carried on)."""
        return self.manager.functions.lockedFor(task_id, round_index, to_checksum_address(account)).call()

    def release(self, caller: LocalAccount, task_id: int, round_index: int, account: str | None = None) -> TxResult:
        """Release the stake `account` (default: the caller) locked for a settled round; anyone may send it."""
        target = to_checksum_address(account or caller.address)
        return self.chain.send(self.manager.functions.release(task_id, round_index, target), caller, action="release")

    def releasable(self, account: str, from_block: int | None = None) -> list[tuple[int, int]]:
        """(task, round) of `account`'s submissions whose lock is held and whose round is settled (finalized, or
        past its aggregation deadline), found from its UpdateSubmitted logs."""
        start = self.deployments.block if from_block is None else from_block
        logs = self.manager.events.UpdateSubmitted().get_logs(
            from_block=start, argument_filters={"contributor": to_checksum_address(account)}
        )
        out = []
        for key in sorted({(int(e["args"]["taskId"]), int(e["args"]["round"])) for e in logs}):
            if self.locked_for(*key, account) and self.round(*key).phase in (RoundPhase.FINALIZED, RoundPhase.EXPIRED):
                out.append(key)
        return out

    def release_settled(self, account: LocalAccount) -> list[TxResult]:
        """Release every settled lock of the caller (one transaction each): what a withdrawal or a new submission
        may need. Locks of rounds still open or aggregating stay: they back work that can still be slashed."""
        self.chain.sync_clock()  # on Anvil, let views see deadlines that passed in reality
        results = [self.release(account, task_id, round_index) for task_id, round_index in self.releasable(account.address)]
        if results:
            log.info("released %d settled stake lock(s) of %s", len(results), account.address)
        return results

    def _lock_fits(self, account: str, task_id: int, round_index: int) -> bool:
        """Whether submitting to this round can take (or carry) its lock without releasing anything first."""
        try:
            slash = self.task(task_id).slash_amount
        except ContractLogicError:  # no such task: the submission's own revert will say so
            return True
        if slash == 0:
            return True
        active, locked = self.registry.functions.stakeOf(to_checksum_address(account)).call()
        carried = round_index > 0 and self.locked_for(task_id, round_index - 1, account) > 0
        return locked + (0 if carried else slash) <= active

    def post_result(
        self,
        validator: LocalAccount,
        task_id: int,
        round_index: int,
        model_digest: bytes,
        report_digest: bytes,
        rewards_root: bytes,
        total_rewards: int,
        slashes: Sequence[tuple[str, bytes]] = (),
    ) -> TxResult:
        # The contract checks for duplicates in O(n): slashes must be sorted by address, strictly ascending.
        ordered = sorted(((to_checksum_address(a), e) for a, e in slashes), key=lambda s: int(s[0], 16))
        fn = self.manager.functions.postResult(
            task_id, round_index, model_digest, report_digest, rewards_root, total_rewards, ordered
        )
        return self.chain.send(fn, validator, action="postResult")

    def claim(self, account: LocalAccount, task_id: int, round_index: int, amount: int, proof: Sequence[bytes]) -> TxResult:
        fn = self.manager.functions.claim(task_id, round_index, amount, list(proof))
        return self.chain.send(fn, account, action="claim")

    def claim_many(self, account: LocalAccount, task_id: int, claims: Sequence[tuple[int, int, Sequence[bytes]]]) -> TxResult:
        rounds = [c[0] for c in claims]
        amounts = [c[1] for c in claims]
        proofs = [list(c[2]) for c in claims]
        return self.chain.send(self.manager.functions.claimMany(task_id, rounds, amounts, proofs), account, action="claimMany")

    def expire_round(self, account: LocalAccount, task_id: int, round_index: int) -> TxResult:
        return self.chain.send(self.manager.functions.expireRound(task_id, round_index), account, action="expireRound")

    # ─── events ───
    def submissions(self, task_id: int, round_index: int | None = None, from_block: int = 0, to_block: int | str = "latest") -> list[Submission]:
        from_block = max(from_block, self.deployments.block)  # nothing of the contracts lies before their deployment
        filters: dict[str, Any] = {"taskId": task_id}
        if round_index is not None:
            filters["round"] = round_index
        logs = self.manager.events.UpdateSubmitted().get_logs(
            from_block=from_block, to_block=to_block, argument_filters=filters
        )
        displaced = self.manager.events.UpdateDisplaced().get_logs(
            from_block=from_block, to_block=to_block, argument_filters=filters
        )
        submitted = sorted(
            (
                Submission(
                    task_id=int(e["args"]["taskId"]), round=int(e["args"]["round"]),
                    contributor=to_checksum_address(e["args"]["contributor"]), digest=bytes(e["args"]["digest"]),
                    num_samples=int(e["args"]["numSamples"]), block_number=e["blockNumber"], log_index=e["logIndex"],
                )
                for e in logs
            ),
            key=lambda s: (s.block_number, s.log_index),
        )
        return without_displaced(submitted, [
            ((int(e["args"]["taskId"]), int(e["args"]["round"]), to_checksum_address(e["args"]["displaced"])),
             (e["blockNumber"], e["logIndex"]))
            for e in displaced
        ])

    def finalizations(
        self, task_id: int, round_index: int | None = None, from_block: int = 0, to_block: int | str = "latest"
    ) -> list[Finalization]:
        """RoundFinalized logs: the model and report digests live only there (not in storage, to save gas)."""
        from_block = max(from_block, self.deployments.block)
        filters: dict[str, Any] = {"taskId": task_id}
        if round_index is not None:
            filters["round"] = round_index
        logs = self.manager.events.RoundFinalized().get_logs(
            from_block=from_block, to_block=to_block, argument_filters=filters
        )
        return [
            Finalization(
                task_id=int(e["args"]["taskId"]), round=int(e["args"]["round"]),
                model_digest=bytes(e["args"]["modelDigest"]), report_digest=bytes(e["args"]["reportDigest"]),
                rewards_root=bytes(e["args"]["rewardsRoot"]), total_rewards=int(e["args"]["totalRewards"]),
                block_number=e["blockNumber"],
            )
            for e in logs
        ]

    def task_event_count(self, task_id: int, from_block: int, to_block: int) -> int:
        """How many TaskManager logs of `task_id` lie in [from_block, to_block]: one query for every event kind,
        since the task id is the first indexed argument of all of them."""
        topic = "0x" + task_id.to_bytes(32, "big").hex()
        logs = self.chain.w3.eth.get_logs(
            {"address": self.manager.address, "fromBlock": from_block, "toBlock": to_block, "topics": [None, topic]}
        )
        return len(logs)

    def events(self, name: str, from_block: int = 0, to_block: int | str = "latest", **filters: Any) -> Iterable[Any]:
        return getattr(self.manager.events, name)().get_logs(from_block=max(from_block, self.deployments.block),
                                                             to_block=to_block, argument_filters=filters or None)


def without_displaced(submitted: Sequence[Submission],
                      displaced: Iterable[tuple[tuple[int, int, str], tuple[int, int]]]) -> list[Submission]:
    """The submissions (in chain order) still in their rounds: each UpdateDisplaced ((task, round, account), (block,
    log index)) removes that account's submission made before it (the account may submit again later)."""
    removed: dict[tuple[int, int, str], list[tuple[int, int]]] = {}
    for key, position in displaced:
        removed.setdefault(key, []).append(position)

    def kept(s: Submission) -> bool:
        later = removed.get((s.task_id, s.round, s.contributor), [])
        return not any(position > (s.block_number, s.log_index) for position in later)

    return [s for s in submitted if kept(s)]
