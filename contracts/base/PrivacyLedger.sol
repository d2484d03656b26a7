// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {RoundLifecycle} from "./RoundLifecycle.sol";
import {IPrivacyLedger} from "../interfaces/IPrivacyLedger.sol";

/// @title PrivacyLedger
/// @notice Private submissions: the caller's cumulative epsilon for the task, kept per (task, contributor),
///         capped by the task's epsilonCap and never decreasing; the submission itself is RoundLifecycle's.
/// @dev One slot per (task, contributor): a contributor's first private submission to a task writes a fresh slot,
///      later ones rewrite it. The cap shares the Task slot that every submission reads already.
abstract contract PrivacyLedger is RoundLifecycle, IPrivacyLedger {
    mapping(uint256 taskId => mapping(address account => uint64 epsilon)) internal _privacySpent;

    /// @inheritdoc IPrivacyLedger
    /// @dev The ledger's effects come before _submit, whose checks revert the whole call and whose registry call
    ///      comes last.
    ///      Not pausable, as submitUpdate: a pause must not let the owner run rounds out empty.
    function submitPrivateUpdate(uint256 taskId, uint256 round, bytes32 digest, uint256 numSamples, uint64 epsilon)
        external
    {
        uint64 cap = _tasks[taskId].epsilonCap;
        if (cap == 0) revert TaskManagerNotPrivateTask(taskId);
        if (epsilon > cap) revert TaskManagerPrivacyCapExceeded(taskId, msg.sender, epsilon, cap);
        mapping(address => uint64) storage spent = _privacySpent[taskId];
        uint64 recorded = spent[msg.sender];
        if (epsilon < recorded) revert TaskManagerPrivacySpendDecreased(taskId, msg.sender, epsilon, recorded);
        if (epsilon != recorded) spent[msg.sender] = epsilon;
        emit PrivacySpent(taskId, round, msg.sender, epsilon);
        _submit(taskId, round, digest, numSamples);
    }

    /// @inheritdoc IPrivacyLedger
    function privacyCapOf(uint256 taskId) external view returns (uint64) {
        return _tasks[taskId].epsilonCap;
    }

    /// @inheritdoc IPrivacyLedger
    function privacySpentOf(uint256 taskId, address account) external view returns (uint64) {
        return _privacySpent[taskId][account];
    }
}
