// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {ITaskManager} from "../interfaces/ITaskManager.sol";
import {IStakeRegistry} from "../interfaces/IStakeRegistry.sol";
import {RoundClock} from "../libraries/RoundClock.sol";

/// @title TaskManagerStorage
/// @notice The TaskManager's state (tasks, round clocks, results, submissions, claims and lock releases) and the
///         views over it. The pieces that change it (SubmissionLocks, RoundLifecycle, RewardClaims, TaskManager)
///         inherit it, so one deployed contract keeps one storage and one address.
/// @dev Accounting per task: funded == paidOut + refunded + held, and the contract holds sum(held) of each token.
///      Storage is packed so that the hot paths (submitUpdate, postResult, claim) touch few slots.
abstract contract TaskManagerStorage is ITaskManager, Pausable, ReentrancyGuardTransient {
    using RoundClock for RoundClock.Clock;
    using RoundClock for mapping(uint256 => RoundClock.Clock);

    // ─── STORAGE ───
    /// @dev Packed by access path: slot 0 for postResult/expire, slot 1 for submitUpdate, slot 2 the round budget,
    ///      slots 3-4 for claim. Amounts fit uint128 (checked at creation), windows uint32, rounds uint24.
    ///      The current round is not stored (postResult would rewrite it every round): rounds open in order, so
    ///      getTask finds it by binary search over the round clocks. aggregationWindow is kept in slots 0 and 1
    ///      so that neither postResult nor the submission that closes a round reads another slot.
    struct Task {
        address validator; // slot 0
        uint24 numRounds;
        bool cancelled;
        uint32 submissionWindow;
        uint32 aggregationWindow;
        uint128 minContributorStake; // slot 1
        uint32 maxContributors;
        uint32 closeWindow; // == aggregationWindow
        uint32 minOpen; // a full round closes early only after this long (submitUpdate reads this slot anyway)
        uint32 epsilonCap; // micro-epsilon per contributor (<= 4294.967295); 0: not a private task (PrivacyLedger)
        uint128 rewardPerRound; // slot 2
        uint128 carry;
        IERC20 rewardToken; // slot 3
        uint64 endedAt; // 0 while running
        uint128 funded; // slot 4
        uint128 paidOut;
        address owner; // slot 5
        uint128 refunded; // slot 6
        uint128 slashAmount;
        bytes32 specDigest; // slot 7
        bytes32 initialModelDigest; // slot 8
    }

    /// @dev Written when the round ends. `outcome` is Pending while the round is live, then Finalized or Expired;
    ///      it shares a slot with the totals postResult writes anyway (no rewrite of the clock), and `claimed`
    ///      grows with claims beside the cap it is checked against. Budgets are < 2^120, so totals fit.
    struct Result {
        bytes32 rewardsRoot;
        uint120 totalRewards;
        RoundPhase outcome;
        uint128 claimed;
    }

    /// @dev What happened after a round for one account: it claimed its reward; it released its stake lock.
    struct Settlement {
        bool claimed;
        bool released;
    }

    /// @notice The longest claim period a TaskManager accepts (four years), so that no claim deadline overflows.
    uint64 public constant MAX_CLAIM_PERIOD = 4 * 365 days;

    IStakeRegistry internal immutable _registry;
    uint64 internal immutable _claimPeriod;
    /// @dev The task count and the committee manager share a slot: createTask reads both.
    uint96 internal _taskCount;
    /// @dev The validator of committee tasks, set once by the owner.
    address internal _committeeManager;
    mapping(uint256 taskId => Task task) internal _tasks;
    mapping(uint256 taskId => mapping(uint256 round => RoundClock.Clock clock)) internal _clocks;
    mapping(uint256 taskId => mapping(uint256 round => Result result)) internal _results;
    /// @dev The digest each contributor submitted: slash evidence must equal it. Same slot cost as a flag.
    mapping(uint256 taskId => mapping(uint256 round => mapping(address account => bytes32 digest))) internal
        _submissions;
    /// @dev Claim and lock release share one slot per (task, round, account): whichever comes second is cheap.
    mapping(uint256 taskId => mapping(uint256 round => mapping(address account => Settlement settlement))) internal
        _settlements;

    /// @notice Fix the registry and the claim period for the contract's lifetime.
    /// @param registry the StakeRegistry; it must grant the TaskManager SLASHER_ROLE (the deploy script does).
    /// @param claimPeriod_ seconds after a task ends during which rewards stay claimable (at most MAX_CLAIM_PERIOD).
    constructor(IStakeRegistry registry, uint64 claimPeriod_) {
        if (address(registry) == address(0)) revert TaskManagerZeroAddress("registry");
        if (claimPeriod_ > MAX_CLAIM_PERIOD) revert TaskManagerClaimPeriodTooLong(claimPeriod_, MAX_CLAIM_PERIOD);
        _registry = registry;
        _claimPeriod = claimPeriod_;
    }

    // ─── VIEWS ───
    /// @inheritdoc ITaskManager
    function stakeRegistry() external view returns (address) {
        return address(_registry);
    }

    /// @inheritdoc ITaskManager
    function committeeManager() external view returns (address) {
        return _committeeManager;
    }

    /// @inheritdoc ITaskManager
    function claimPeriod() external view returns (uint64) {
        return _claimPeriod;
    }

    /// @inheritdoc ITaskManager
    function taskCount() external view returns (uint256) {
        return _taskCount;
    }

    /// @inheritdoc ITaskManager
    function getTask(uint256 taskId) external view returns (TaskView memory v) {
        if (taskId >= _taskCount) revert TaskManagerUnknownTask(taskId);
        Task storage t = _tasks[taskId];
        v.owner = t.owner;
        v.rewardToken = t.rewardToken;
        v.validator = t.validator;
        v.specDigest = t.specDigest;
        v.initialModelDigest = t.initialModelDigest;
        v.numRounds = t.numRounds;
        v.currentRound = uint32(_clocks[taskId].current(t.numRounds));
        v.maxContributors = t.maxContributors;
        v.submissionWindow = t.submissionWindow;
        v.aggregationWindow = t.aggregationWindow;
        v.rewardPerRound = t.rewardPerRound;
        v.minContributorStake = t.minContributorStake;
        v.slashAmount = t.slashAmount;
        v.funded = t.funded;
        v.paidOut = t.paidOut;
        v.refunded = t.refunded;
        v.carry = t.carry;
        v.cancelled = t.cancelled;
        v.ended = t.endedAt != 0;
        v.endedAt = t.endedAt;
        v.minOpen = t.minOpen;
    }

    /// @inheritdoc ITaskManager
    function getRound(uint256 taskId, uint256 round) external view returns (RoundView memory v) {
        RoundClock.Clock storage c = _clocks[taskId][round];
        Result storage r = _results[taskId][round];
        v.phase = _phase(c, r);
        v.openedAt = c.openedAt;
        v.submissionDeadline = c.submissionDeadline;
        v.aggregationDeadline = c.aggregationDeadline;
        v.submissions = c.submissions;
        v.rewardsRoot = r.rewardsRoot;
        v.totalRewards = r.totalRewards;
        v.claimed = r.claimed;
    }

    /// @inheritdoc ITaskManager
    function submissionOf(uint256 taskId, uint256 round, address account) external view returns (bytes32) {
        return _submissions[taskId][round][account];
    }

    // ─── INTERNAL ───
    /// @dev The one place a round's phase is derived: the clock decides Pending and Open (reading only the clock
    ///      slot while the round is open); after that a recorded outcome (Finalized, Expired) wins over the time.
    function _phase(RoundClock.Clock storage c, Result storage r) internal view returns (RoundPhase phase) {
        phase = c.phase();
        if (phase > RoundPhase.Open) {
            RoundPhase outcome = r.outcome;
            if (outcome != RoundPhase.Pending) return outcome;
        }
    }

    /// @dev The validator holds at least `required` active stake (at creation: the registry's minimum; at each
    ///      result: that minimum as it was when the task was created, kept in the round's clock).
    function _checkValidatorStake(address validator, uint256 required) internal view {
        uint256 staked = _registry.activeStake(validator);
        if (staked < required) revert TaskManagerValidatorStakeTooLow(validator, staked, required);
    }

    function _onlyTaskOwner(Task storage t, uint256 taskId) internal view {
        address taskOwner = t.owner;
        if (msg.sender != taskOwner) revert TaskManagerNotTaskOwner(taskId, msg.sender, taskOwner);
    }
}
