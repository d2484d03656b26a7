// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IStakeRegistry
/// @notice One global stake per account, in the stake token, serving every task. Stake stays slashable
///         while it unbonds, so work can still be judged after an unstake request.
interface IStakeRegistry {
    // ─── EVENTS ───
    event Staked(address indexed account, uint256 amount, uint256 activeStake);
    event UnstakeRequested(address indexed account, uint256 amount, uint256 unbondingStake, uint64 releaseTime);
    event Withdrawn(address indexed account, uint256 amount);
    event StakeSlashed(address indexed account, address indexed slasher, uint256 amount, bytes32 evidence);
    /// @notice The role minimums were set (at deployment) or changed by the admin.
    event MinStakesUpdated(uint256 minContributorStake, uint256 minValidatorStake);

    // ─── LOGIC ───
    /// @notice Add `amount` of the stake token to the caller's active stake (needs an allowance).
    function stake(uint256 amount) external;

    /// @notice Move `amount` from active to unbonding stake; it can be withdrawn after the unbonding period.
    ///         A new request adds to what is unbonding and restarts the period for all of it.
    function requestUnstake(uint256 amount) external;

    /// @notice Withdraw all unbonding stake whose period is over.
    function withdraw() external returns (uint256 amount);

    /// @notice Slash up to `amount` from `account` (active stake first, then unbonding), capped at what it holds;
    ///         the tokens go to the treasury. Only authorised slashers (task managers).
    function slash(address account, uint256 amount, bytes32 evidence) external returns (uint256 slashed);

    /// @notice Admin: change the role minimums (tasks already created keep their own contributor minimum).
    function setMinStakes(uint256 minContributorStake_, uint256 minValidatorStake_) external;

    // ─── VIEWS ───
    /// @notice The token staked (FedToken).
    function stakeToken() external view returns (address);
    /// @notice Where slashed tokens go.
    function treasury() external view returns (address);
    /// @notice Seconds between an unstake request and its withdrawal.
    function unbondingPeriod() external view returns (uint64);
    /// @notice The least a task may ask of its contributors.
    function minContributorStake() external view returns (uint256);
    /// @notice Active stake a validator needs when a task naming it is created.
    function minValidatorStake() external view returns (uint256);
    /// @notice Active (slashable, usable) stake of `account`.
    function activeStake(address account) external view returns (uint256);
    /// @notice Unbonding stake of `account` and when it can be withdrawn.
    function unbonding(address account) external view returns (uint256 amount, uint64 releaseTime);
}
