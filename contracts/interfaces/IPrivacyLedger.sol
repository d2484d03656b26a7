// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {ITaskManager} from "./ITaskManager.sol";

/// @title IPrivacyLedger
/// @notice Differentially private tasks: each task has an epsilon cap per contributor, and each private submission
///         declares the contributor's cumulative epsilon for the task. The TaskManager keeps the latest per
///         (task, contributor), refuses a spend above the cap or below the one recorded, and plain submissions
///         to a private task (or private ones to a plain task).
/// @dev Epsilons are fixed-point integers: micro-epsilon (EPSILON_SCALE = 1e6 per unit of epsilon), rounded up by
///      the contributor. The spend is what the contributor declares: validators check it against the accountant
///      for the parameters in the update's metadata (fedchain.privacy), the contract only keeps it monotone and
///      capped.
interface IPrivacyLedger {
    /// @notice Task `taskId` is private: each contributor may spend at most `epsilonCap` (micro-epsilon).
    event PrivacyCapSet(uint256 indexed taskId, uint64 epsilonCap);
    /// @notice `contributor`'s cumulative spend for the task, declared with its update to `round`.
    event PrivacySpent(uint256 indexed taskId, uint256 indexed round, address indexed contributor, uint64 epsilon);

    /// @notice A private task needs a positive cap.
    error TaskManagerZeroPrivacyCap();
    /// @notice The cap is above the largest one a task stores (4294.967295 epsilon, in micro-epsilon).
    error TaskManagerPrivacyCapTooLarge(uint64 epsilonCap, uint64 max);
    /// @notice The task is private: submit with submitPrivateUpdate and the cumulative spend.
    error TaskManagerPrivateTask(uint256 taskId);
    /// @notice The task is not private: submit with submitUpdate.
    error TaskManagerNotPrivateTask(uint256 taskId);
    /// @notice The declared cumulative spend is above the task's cap.
    error TaskManagerPrivacyCapExceeded(uint256 taskId, address contributor, uint64 epsilon, uint64 cap);
    /// @notice The declared cumulative spend is below the one recorded: spends only grow.
    error TaskManagerPrivacySpendDecreased(uint256 taskId, address contributor, uint64 epsilon, uint64 recorded);

    /// @notice Like createTask, for a private task whose contributors may each spend at most `epsilonCap`.
    function createPrivateTask(ITaskManager.TaskParams calldata params, uint64 epsilonCap)
        external
        returns (uint256 taskId);

    /// @notice Like submitUpdate, for a private task: `epsilon` is the caller's cumulative spend for the task,
    ///         this update included (micro-epsilon); at most the cap, at least what it declared before.
    function submitPrivateUpdate(uint256 taskId, uint256 round, bytes32 digest, uint256 numSamples, uint64 epsilon)
        external;

    /// @notice The task's per-contributor cap in micro-epsilon (0: not a private task).
    function privacyCapOf(uint256 taskId) external view returns (uint64);
    /// @notice `account`'s latest declared cumulative spend for the task, in micro-epsilon (0: none yet).
    function privacySpentOf(uint256 taskId, address account) external view returns (uint64);
}
