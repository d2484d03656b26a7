"""Typed access to the CommitteeManager: committee seats, a round's availability votes, commits and reveals,
finalization, non-revealer slashes, and the logs off-chain verification reads.

    committees = Committees.from_deployments(chain, deployments)   # or Protocol(...).committees
    committee_id, _ = committees.propose(owner, members, min_seat_stake, 300, 300, 300, 1_000)
    committees.join(member, committee_id, stake)
    ... create a task whose validator is committees.address (Protocol.create_task) ...
    committees.vote_availability(member, task_id, round, opened)
    committees.commit(member, task_id, round, committees.commitment(member.address, task_id, round, ...))
    committees.reveal(member, task_id, round, model, report, inputs, scores, slash, salt)
    committees.finalize(anyone, task_id, round)
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from web3.logs import DISCARD

from fedchain.chain.client import Chain, TxResult
from fedchain.chain.deployments import Deployments
from fedchain.core.consensus import bitmap, commitment


class CommitteePhase(enum.IntEnum):
    """ICommitteeManager.CommitteePhase."""

    PENDING = 0  # not opened, or still taking submissions
    AVAILABILITY = 1
    COMMIT = 2
    REVEAL = 3
    FINALIZE = 4
    FINALIZED = 5
    EXPIRED = 6


@dataclass(frozen=True)
class CommitteeInfo:
    committee_id: int
    owner: str
    bound: bool
    task_id: int  # meaningful once bound
    min_seat_stake: int
    availability_window: int
    commit_window: int
    reveal_window: int
    member_share_bps: int
    total_stake: int
    non_reveal_slash: int
    members: tuple[str, ...]
    stakes: tuple[int, ...]  # the members' consensus weights (0 before joining an unbound committee)
    joined: tuple[bool, ...]


@dataclass(frozen=True)
class CommitteeRoundStatus:
    phase: CommitteePhase
    submission_deadline: int
    availability_end: int
    commit_end: int
    reveal_end: int
    aggregation_deadline: int
    input_count: int
    voted_mask: int
    finalized: bool


@dataclass(frozen=True)
class Ballot:
    voted_availability: bool
    commitment: bytes
    revealed: bool
    model_digest: bytes
    report_digest: bytes
    slash_bitmap: int
    scores: tuple[int, ...]
    slashed: bool


@dataclass(frozen=True)
class AvailabilityVote:
    task_id: int
    round: int
    member: str
    contributors: tuple[str, ...]
    input_count: int
    block_number: int
    log_index: int


@dataclass(frozen=True)
class RevealRecord:
    task_id: int
    round: int
    member: str
    model_digest: bytes
    report_digest: bytes
    slash_bitmap: int
    scores: tuple[int, ...]  # over the round's agreed inputs, ascending (Committees.inputs_of)
    salt: bytes
    block_number: int
    log_index: int


@dataclass(frozen=True)
class CommitteeFinalization:
    task_id: int
    round: int
    model_digest: bytes
    rewards_root: bytes
    contributors_budget: int
    members_budget: int
    consensus_scores: tuple[int, ...]  # per agreed input, ascending
    dividends: tuple[int, ...]  # per member, in committee order
    slash_bitmap: int
    block_number: int


def _ascending(addresses: Sequence[str]) -> list[str]:
    """Checksummed and sorted by numeric value, as the contract wants address lists."""
    return sorted({to_checksum_address(a) for a in addresses}, key=lambda a: int(a, 16))


class Committees:
    """The CommitteeManager of one deployment, with typed reads, writes and event queries."""

    def __init__(self, chain: Chain, address: str) -> None:
        self.chain = chain
        self.contract = chain.contract("CommitteeManager", address)

    @classmethod
    def from_deployments(cls, chain: Chain, deployments: Deployments) -> Committees:
        return cls(chain, deployments.address("CommitteeManager"))

    @property
    def address(self) -> str:
        return str(self.contract.address)

    # ─── seats ───
    def propose(
        self, owner: LocalAccount, members: Sequence[str], min_seat_stake: int, availability_window: int,
        commit_window: int, reveal_window: int, member_share_bps: int,
    ) -> tuple[int, TxResult]:
        """Propose the owner's next task's committee (members in this order); returns its id."""
        fn = self.contract.functions.propose(
            [to_checksum_address(m) for m in members], min_seat_stake, availability_window, commit_window,
            reveal_window, member_share_bps,
        )
        result = self.chain.send(fn, owner, action="propose")
        (event,) = self.contract.events.CommitteeProposed().process_receipt(result.receipt, errors=DISCARD)
        return int(event["args"]["committeeId"]), result

    def join(self, member: LocalAccount, committee_id: int, stake: int) -> TxResult:
        """Take the member's seat, locking `stake` of its registry stake (stake it first: Protocol.ensure_stake)."""
        return self.chain.send(self.contract.functions.join(committee_id, stake), member, action="join")

    def leave(self, member: LocalAccount, committee_id: int) -> TxResult:
        return self.chain.send(self.contract.functions.leave(committee_id), member, action="leave")

    # ─── rounds ───
    def vote_availability(self, member: LocalAccount, task_id: int, round_index: int, contributors: Sequence[str]) -> TxResult:
        fn = self.contract.functions.voteAvailability(task_id, round_index, _ascending(contributors))
        return self.chain.send(fn, member, action="voteAvailability")

    def commitment(
        self, member: str, task_id: int, round_index: int, model_digest: bytes, report_digest: bytes,
        slash: Sequence[bool], scores: Sequence[int], salt: bytes,
    ) -> bytes:
        """What `member` commits to (fedchain.core.consensus.commitment bound to this chain and contract)."""
        return commitment(
            chain_id=self.chain.chain_id, contract=self.address, task_id=task_id, round_index=round_index,
            member=to_checksum_address(member), model_digest=model_digest, report_digest=report_digest, slash=slash,
            scores=scores, salt=salt,
        )

    def commit(self, member: LocalAccount, task_id: int, round_index: int, commitment_: bytes) -> TxResult:
        return self.chain.send(self.contract.functions.commit(task_id, round_index, commitment_), member, action="commit")

    def reveal(
        self, member: LocalAccount, task_id: int, round_index: int, model_digest: bytes, report_digest: bytes,
        inputs: Sequence[str], scores: Sequence[int], slash: Sequence[bool], salt: bytes,
    ) -> TxResult:
        """Reveal over the agreed inputs; `inputs`, `scores` and `slash` are in ascending address order."""
        order = [to_checksum_address(a) for a in inputs]
        if order != _ascending(order):
            raise ValueError("inputs must be the agreed input set in ascending address order (Committees.inputs_of)")
        fn = self.contract.functions.reveal(
            task_id, round_index, model_digest, report_digest, order, list(scores), bitmap(slash), salt
        )
        return self.chain.send(fn, member, action="reveal")

    def finalize(self, caller: LocalAccount, task_id: int, round_index: int) -> TxResult:
        return self.chain.send(self.contract.functions.finalize(task_id, round_index), caller, action="finalize")

    def slash_non_revealer(self, caller: LocalAccount, task_id: int, round_index: int, member: str) -> TxResult:
        fn = self.contract.functions.slashNonRevealer(task_id, round_index, to_checksum_address(member))
        return self.chain.send(fn, caller, action="slashNonRevealer")

    # ─── views ───
    def committee_count(self) -> int:
        return int(self.contract.functions.committeeCount().call())

    def committee(self, committee_id: int) -> CommitteeInfo:
        raw = self.contract.functions.getCommittee(committee_id).call()
        return CommitteeInfo(
            committee_id=committee_id, owner=to_checksum_address(raw[0]), bound=bool(raw[1]), task_id=int(raw[2]),
            min_seat_stake=int(raw[3]), availability_window=int(raw[4]), commit_window=int(raw[5]),
            reveal_window=int(raw[6]), member_share_bps=int(raw[7]), total_stake=int(raw[8]),
            non_reveal_slash=int(raw[9]), members=tuple(to_checksum_address(m) for m in raw[10]),
            stakes=tuple(int(s) for s in raw[11]), joined=tuple(bool(j) for j in raw[12]),
        )

    def committee_of_task(self, task_id: int) -> int:
        """The committee bound to the task (0: an ordinary one-validator task)."""
        return int(self.contract.functions.committeeOfTask(task_id).call())

    def pending_committee_of(self, owner: str) -> int:
        return int(self.contract.functions.pendingCommitteeOf(to_checksum_address(owner)).call())

    def round_status(self, task_id: int, round_index: int) -> CommitteeRoundStatus:
        raw = self.contract.functions.getRoundStatus(task_id, round_index).call()
        return CommitteeRoundStatus(
            phase=CommitteePhase(raw[0]), submission_deadline=int(raw[1]), availability_end=int(raw[2]),
            commit_end=int(raw[3]), reveal_end=int(raw[4]), aggregation_deadline=int(raw[5]), input_count=int(raw[6]),
            voted_mask=int(raw[7]), finalized=bool(raw[8]),
        )

    def ballot(self, task_id: int, round_index: int, member: str) -> Ballot:
        raw = self.contract.functions.getBallot(task_id, round_index, to_checksum_address(member)).call()
        return Ballot(bool(raw[0]), bytes(raw[1]), bool(raw[2]), bytes(raw[3]), bytes(raw[4]), int(raw[5]),
                      tuple(int(s) for s in raw[6]), bool(raw[7]))

    def inputs_of(self, task_id: int, round_index: int) -> list[str]:
        """The agreed input set as the round's first reveal stored it (empty before any reveal)."""
        return [to_checksum_address(a) for a in self.contract.functions.inputsOf(task_id, round_index).call()]

    def availability_of(self, task_id: int, round_index: int, contributor: str) -> int:
        return int(self.contract.functions.availabilityOf(task_id, round_index, to_checksum_address(contributor)).call())

    def agreed_inputs(self, task_id: int, round_index: int, contributors: Sequence[str]) -> list[str]:
        """Of `contributors` (e.g. the round's submitters), those whose availability votes hold a strict majority of
        the committee's stake, ascending: the agreed input set once the availability phase is over."""
        total = self.committee(self.committee_of_task(task_id)).total_stake
        return [c for c in _ascending(contributors) if 2 * self.availability_of(task_id, round_index, c) > total]

    # ─── events ───
    def _logs(self, name: str, task_id: int, round_index: int | None, from_block: int, to_block: int | str) -> list[Any]:
        filters: dict[str, Any] = {"taskId": task_id}
        if round_index is not None:
            filters["round"] = round_index
        logs = getattr(self.contract.events, name)().get_logs(
            from_block=from_block, to_block=to_block, argument_filters=filters
        )
        return sorted(logs, key=lambda e: (e["blockNumber"], e["logIndex"]))

    def availability_votes(
        self, task_id: int, round_index: int | None = None, from_block: int = 0, to_block: int | str = "latest"
    ) -> list[AvailabilityVote]:
        return [
            AvailabilityVote(
                task_id=int(e["args"]["taskId"]), round=int(e["args"]["round"]),
                member=to_checksum_address(e["args"]["member"]),
                contributors=tuple(to_checksum_address(c) for c in e["args"]["contributors"]),
                input_count=int(e["args"]["inputCount"]), block_number=e["blockNumber"], log_index=e["logIndex"],
            )
            for e in self._logs("AvailabilityVoted", task_id, round_index, from_block, to_block)
        ]

    def reveals(
        self, task_id: int, round_index: int | None = None, from_block: int = 0, to_block: int | str = "latest"
    ) -> list[RevealRecord]:
        return [
            RevealRecord(
                task_id=int(e["args"]["taskId"]), round=int(e["args"]["round"]),
                member=to_checksum_address(e["args"]["member"]), model_digest=bytes(e["args"]["modelDigest"]),
                report_digest=bytes(e["args"]["reportDigest"]), slash_bitmap=int(e["args"]["slashBitmap"]),
                scores=tuple(int(s) for s in e["args"]["scores"]), salt=bytes(e["args"]["salt"]),
                block_number=e["blockNumber"], log_index=e["logIndex"],
            )
            for e in self._logs("Revealed", task_id, round_index, from_block, to_block)
        ]

    def finalizations(
        self, task_id: int, round_index: int | None = None, from_block: int = 0, to_block: int | str = "latest"
    ) -> list[CommitteeFinalization]:
        return [
            CommitteeFinalization(
                task_id=int(e["args"]["taskId"]), round=int(e["args"]["round"]),
                model_digest=bytes(e["args"]["modelDigest"]), rewards_root=bytes(e["args"]["rewardsRoot"]),
                contributors_budget=int(e["args"]["contributorsBudget"]), members_budget=int(e["args"]["membersBudget"]),
                consensus_scores=tuple(int(c) for c in e["args"]["consensusScores"]),
                dividends=tuple(int(d) for d in e["args"]["dividends"]), slash_bitmap=int(e["args"]["slashBitmap"]),
                block_number=e["blockNumber"],
            )
            for e in self._logs("CommitteeFinalized", task_id, round_index, from_block, to_block)
        ]
