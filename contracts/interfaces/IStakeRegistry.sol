// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IStakeRegistry
/// @notice One global stake per account, in the stake token, serving every task. Stake stays slashable while it
///         unbonds, so work can still be judged after an unstake request. Task managers lock the stake that backs
///         a piece of work (a submission) until that work is settled: locked stake cannot be withdrawn, and what
///         one account has locked never exceeds its active stake at the time of each lock.
interface IStakeRegistry {
    // ─── EVENTS ───
    /// @notice `account` staked `amount`; `activeStake` is its active stake now.
    event Staked(address indexed account, uint256 amount, uint256 activeStake);
    /// @notice `account` moved `amount` to unbonding (`unbondingStake` in all), withdrawable from `releaseTime`.
    event UnstakeRequested(address indexed account, uint256 amount, uint256 unbondingStake, uint64 releaseTime);
    /// @notice `account` withdrew `amount` of its unbonding stake.
    event Withdrawn(address indexed account, uint256 amount);
    /// @notice `slasher` took `amount` of `account`'s stake for the update with digest `evidence`.
    event StakeSlashed(address indexed account, address indexed slasher, uint256 amount, bytes32 evidence);
    /// @notice The role minimums were set (at deployment) or changed by the admin.
    event MinStakesUpdated(uint256 minContributorStake, uint256 minValidatorStake);
    /// @notice `locker` locked `amount` of `account`'s stake; `locked` is the account's total locked now.
    event StakeLocked(address indexed account, address indexed locker, uint256 amount, uint256 locked);
    /// @notice `locker` released `amount` of `account`'s locked stake; `locked` is what stays locked.
    event StakeUnlocked(address indexed account, address indexed locker, uint256 amount, uint256 locked);
    /// @notice Roles can no longer be granted or revoked: the set of slashers (task managers) is final.
    event RolesFrozen(address indexed by);

    // ─── ERRORS ───
    /// @notice An amount of zero was given where a positive amount is needed.
    error StakeRegistryZeroAmount();
    /// @notice The registry received `received` tokens for a transfer of `expected` (fee-on-transfer tokens).
    error StakeRegistryFeeOnTransfer(uint256 expected, uint256 received);
    /// @notice `account` asked to unstake `requested` but has only `active` active stake.
    error StakeRegistryInsufficientStake(address account, uint256 active, uint256 requested);
    /// @notice `account` has no unbonding stake to withdraw.
    error StakeRegistryNothingToWithdraw(address account);
    /// @notice `account`'s unbonding stake is released at `releaseTime`; it is now `nowTime`.
    error StakeRegistryStillUnbonding(address account, uint64 releaseTime, uint64 nowTime);
    /// @notice All of `account`'s unbonding stake backs its locks: `locked` of its `stake` (active plus unbonding)
    ///         is locked until the work it backs is settled and released.
    error StakeRegistryStakeLocked(address account, uint256 locked, uint256 stake);
    /// @notice `caller` does not hold SLASHER_ROLE (the task managers' role: lock, unlock, slash).
    error StakeRegistryUnauthorizedSlasher(address caller);
    /// @notice Locking `amount` more would lock more than `account`'s `active` stake (`locked` is locked already).
    error StakeRegistryLockExceedsStake(address account, uint256 active, uint256 locked, uint256 amount);
    /// @notice Unlocking `amount` is more than `account` has locked (`locked`).
    error StakeRegistryUnlockExceedsLocked(address account, uint256 locked, uint256 amount);
    /// @notice A constructor argument was the zero address (`what` names it).
    error StakeRegistryZeroAddress(string what);
    /// @notice The unbonding period is longer than `maximum` seconds (a period near 2^64 would overflow and keep
    ///         every unstaked token in the registry forever).
    error StakeRegistryUnbondingPeriodTooLong(uint64 unbondingPeriod, uint64 maximum);
    /// @notice freezeRoles was called: no role is granted or revoked any more (renouncing one's own still works).
    error StakeRegistryRolesFrozen();

    // ─── LOGIC ───
    /// @notice Add `amount` of the stake token to the caller's active stake (needs an allowance).
    function stake(uint256 amount) external;

    /// @notice Move `amount` from active to unbonding stake; it can be withdrawn after the unbonding period.
    ///         A new request adds to what is unbonding and restarts the period for all of it. Locked stake may be
    ///         unstaked too: it stays slashable while it unbonds, and cannot be withdrawn while locked.
    function requestUnstake(uint256 amount) external;

    /// @notice Withdraw the caller's unbonding stake whose period is over, except what its locks still need:
    ///         everything unbonding, up to (active + unbonding - locked).
    function withdraw() external returns (uint256 amount);

    /// @notice Slash up to `amount` from `account` (active stake first, then unbonding), capped at what it holds;
    ///         the tokens go to the treasury. Only authorised slashers (task managers). Locks are left to their
    ///         lockers: a task manager slashes the lock of work it settles now and releases that lock later.
    function slash(address account, uint256 amount, bytes32 evidence) external returns (uint256 slashed);

    /// @notice Lock `amount` of `account`'s active stake for the caller (a task manager), so that it cannot be
    ///         withdrawn until the caller unlocks it. Reverts if the account's locked total would exceed its active
    ///         stake. Only task managers (SLASHER_ROLE).
    function lock(address account, uint256 amount) external returns (uint256 locked);

    /// @notice Release `amount` of `account`'s locked stake. Only task managers (SLASHER_ROLE), for what they locked.
    function unlock(address account, uint256 amount) external returns (uint256 locked);

    /// @notice Admin: change the role minimums (tasks already created keep their own contributor minimum).
    function setMinStakes(uint256 minContributorStake_, uint256 minValidatorStake_) external;

    /// @notice Admin, once (the deploy scripts call it after granting the task managers SLASHER_ROLE): from now on no
    ///         role can be granted or revoked, so the admin can never make itself (or anyone) a slasher, nor take a
    ///         manager's role away while it holds locks.
    function freezeRoles() external;

    /// @notice Whether freezeRoles was called.
    function rolesFrozen() external view returns (bool);

    // ─── VIEWS ───
    /// @notice The token staked (FedToken).
    function stakeToken() external view returns (address);
    /// @notice Where slashed tokens go.
    function treasury() external view returns (address);
    /// @notice Seconds between an unstake request and its withdrawal.
    function unbondingPeriod() external view returns (uint64);
    /// @notice The least a task may ask of its contributors.
    function minContributorStake() external view returns (uint256);
    /// @notice Active stake a validator needs when a task naming it is created and whenever it posts a result.
    function minValidatorStake() external view returns (uint256);
    /// @notice Active (slashable, usable) stake of `account`.
    function activeStake(address account) external view returns (uint256);
    /// @notice Unbonding stake of `account` and when it can be withdrawn.
    function unbonding(address account) external view returns (uint256 amount, uint64 releaseTime);
    /// @notice Stake of `account` locked by task managers (it may include locks whose work was slashed and not
    ///         yet released: a slash takes the tokens, the release clears the lock).
    function lockedStake(address account) external view returns (uint256);
    /// @notice Active and locked stake of `account` in one call (what a task manager checks before locking).
    function stakeOf(address account) external view returns (uint256 active, uint256 locked);
}
