// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IStakeRegistry} from "./interfaces/IStakeRegistry.sol";

/// @title StakeRegistry
/// @notice One global stake per account, in one stake token, serving every task. Unstaking goes through an
///         unbonding period during which the stake stays slashable, so work can still be judged after a request.
///         Task managers lock the stake that backs work not yet settled; locked stake is never withdrawn.
/// @dev Invariants: stakeToken.balanceOf(this) == sum of (active + unbonding); a lock keeps the locked total within
///      the active stake; a withdrawal leaves at least the locked total in active + unbonding. One locked total per
///      account, not per locker: lockers are trusted task managers releasing only what they locked, and one slot
///      keeps submitting cheap. Slashed tokens leave for the treasury at once. The transient reentrancy guard
///      (EIP-1153, ~200 gas) keeps even a hostile stake token harmless.
contract StakeRegistry is IStakeRegistry, AccessControl, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using SafeCast for uint256;

    // ─── STORAGE ───
    /// @notice Task managers: may lock, unlock and slash (granted by the deploy script).
    bytes32 public constant SLASHER_ROLE = keccak256("SLASHER_ROLE");
    /// @notice The longest unbonding period a registry accepts (four years), so that no release time overflows.
    uint64 public constant MAX_UNBONDING_PERIOD = 4 * 365 days;

    /// @dev Active and locked stake in one slot: the stake check and the lock of a submission touch one slot.
    struct Stake {
        uint128 active;
        uint128 locked;
    }

    /// @dev Unbonding stake and its release time: unstaking, withdrawal, and slashes beyond the active stake.
    struct Unbonding {
        uint128 amount;
        uint64 releaseTime;
    }

    IERC20 private immutable _stakeToken;
    address private immutable _treasury;
    uint64 private immutable _unbondingPeriod;
    uint256 private _minContributorStake;
    uint256 private _minValidatorStake;
    mapping(address account => Stake stake) private _stakes;
    mapping(address account => Unbonding unbonding) private _unbonding;
    /// @dev Set once by freezeRoles; read only when a role is granted or revoked.
    bool private _rolesFrozen;

    /// @notice Deploy a registry for `stakeToken_`, its treasury, unbonding period and role minimums.
    /// @param stakeToken_ token staked (FedToken); must not take a fee on transfer.
    /// @param treasury_ receives every slashed token.
    /// @param unbondingPeriod_ seconds between an unstake request and the withdrawal (at most MAX_UNBONDING_PERIOD).
    /// @param minContributorStake_ registry-wide minimum a task may ask of contributors.
    /// @param minValidatorStake_ active stake a task's validator needs (at creation and when posting results).
    /// @param admin holds DEFAULT_ADMIN_ROLE (grants SLASHER_ROLE, updates the minimums).
    constructor(
        IERC20 stakeToken_,
        address treasury_,
        uint64 unbondingPeriod_,
        uint256 minContributorStake_,
        uint256 minValidatorStake_,
        address admin
    ) {
        if (address(stakeToken_) == address(0)) revert StakeRegistryZeroAddress("stakeToken");
        if (treasury_ == address(0)) revert StakeRegistryZeroAddress("treasury");
        if (admin == address(0)) revert StakeRegistryZeroAddress("admin");
        if (unbondingPeriod_ > MAX_UNBONDING_PERIOD) {
            revert StakeRegistryUnbondingPeriodTooLong(unbondingPeriod_, MAX_UNBONDING_PERIOD);
        }
        _stakeToken = stakeToken_;
        _treasury = treasury_;
        _unbondingPeriod = unbondingPeriod_;
        _minContributorStake = minContributorStake_;
        _minValidatorStake = minValidatorStake_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        emit MinStakesUpdated(minContributorStake_, minValidatorStake_);
    }

    // ─── STAKING ───
    /// @inheritdoc IStakeRegistry
    function stake(uint256 amount) external nonReentrant {
        if (amount == 0) revert StakeRegistryZeroAmount();
        Stake storage s = _stakes[msg.sender];
        // Pull first and measure: the credit must equal what arrived, or the balance invariant breaks.
        uint256 before = _stakeToken.balanceOf(address(this));
        _stakeToken.safeTransferFrom(msg.sender, address(this), amount);
        uint256 received = _stakeToken.balanceOf(address(this)) - before;
        if (received != amount) revert StakeRegistryFeeOnTransfer(amount, received);
        uint256 active = s.active + amount;
        s.active = active.toUint128();
        emit Staked(msg.sender, amount, active);
    }

    /// @inheritdoc IStakeRegistry
    /// @dev Locks stay as they are: the stake they need may now sit in unbonding, where it is still slashable.
    function requestUnstake(uint256 amount) external {
        if (amount == 0) revert StakeRegistryZeroAmount();
        Stake storage s = _stakes[msg.sender];
        uint256 active = s.active;
        if (amount > active) revert StakeRegistryInsufficientStake(msg.sender, active, amount);
        Unbonding storage u = _unbonding[msg.sender];
        uint256 unbonding_ = u.amount + amount;
        uint64 release = uint64(block.timestamp) + _unbondingPeriod; // period <= 4 years: no overflow
        // amount <= active <= type(uint128).max, and unbonding + active never exceeds the staked total (uint128).
        s.active = uint128(active - amount);
        u.amount = unbonding_.toUint128();
        u.releaseTime = release;
        emit UnstakeRequested(msg.sender, amount, unbonding_, release);
    }

    /// @inheritdoc IStakeRegistry
    /// @dev Pays min(unbonding, active + unbonding - locked): what is left still covers every lock.
    function withdraw() external nonReentrant returns (uint256 amount) {
        Unbonding storage u = _unbonding[msg.sender];
        uint256 unbonding_ = u.amount;
        if (unbonding_ == 0) revert StakeRegistryNothingToWithdraw(msg.sender);
        uint64 release = u.releaseTime;
        if (block.timestamp < release) {
            revert StakeRegistryStillUnbonding(msg.sender, release, uint64(block.timestamp));
        }
        Stake storage s = _stakes[msg.sender];
        uint256 total = s.active + unbonding_;
        uint256 locked = s.locked;
        uint256 free = total > locked ? total - locked : 0; // a slashed lock not yet released can exceed the stake
        amount = unbonding_ < free ? unbonding_ : free;
        if (amount == 0) revert StakeRegistryStakeLocked(msg.sender, locked, total);
        if (amount == unbonding_) {
            delete _unbonding[msg.sender]; // effects before the transfer
        } else {
            u.amount = uint128(unbonding_ - amount); // the rest backs locks: withdrawable once they are released
        }
        emit Withdrawn(msg.sender, amount);
        _stakeToken.safeTransfer(msg.sender, amount);
    }

    // ─── TASK MANAGERS: LOCK, UNLOCK, SLASH ───
    /// @inheritdoc IStakeRegistry
    function lock(address account, uint256 amount) external returns (uint256 locked) {
        _onlySlasher();
        Stake storage s = _stakes[account];
        uint256 active = s.active;
        uint256 before = s.locked;
        locked = before + amount;
        if (locked > active) revert StakeRegistryLockExceedsStake(account, active, before, amount);
        s.locked = uint128(locked); // <= active < 2^128
        emit StakeLocked(account, msg.sender, amount, locked);
    }

    /// @inheritdoc IStakeRegistry
    function unlock(address account, uint256 amount) external returns (uint256 locked) {
        _onlySlasher();
        Stake storage s = _stakes[account];
        uint256 before = s.locked;
        if (amount > before) revert StakeRegistryUnlockExceedsLocked(account, before, amount);
        locked = before - amount;
        s.locked = uint128(locked);
        emit StakeUnlocked(account, msg.sender, amount, locked);
    }

    /// @inheritdoc IStakeRegistry
    /// @dev Returns the amount actually taken (possibly 0). Emits StakeSlashed even for 0 so that the
    ///      attempt is on record; moves tokens only when something was taken. The unbonding slot is read only
    ///      when the active stake does not cover the amount.
    function slash(address account, uint256 amount, bytes32 evidence)
        external
        nonReentrant
        returns (uint256 slashed)
    {
        _onlySlasher();
        Stake storage s = _stakes[account];
        uint256 active = s.active;
        // Active stake first, then unbonding, capped at what the account holds.
        if (amount <= active) {
            slashed = amount;
            unchecked {
                s.active = uint128(active - amount); // amount <= active, checked just above
            }
        } else {
            Unbonding storage u = _unbonding[account];
            uint256 unbonding_ = u.amount;
            uint256 rest = amount - active; // > 0 in this branch
            uint256 fromUnbonding = rest < unbonding_ ? rest : unbonding_;
            slashed = active + fromUnbonding; // <= active + unbonding < 2^129
            if (active != 0) s.active = 0;
            if (fromUnbonding != 0) u.amount = uint128(unbonding_ - fromUnbonding);
        }
        emit StakeSlashed(account, msg.sender, slashed, evidence);
        if (slashed != 0) _stakeToken.safeTransfer(_treasury, slashed);
    }

    /// @notice Admin: update the role minimums. Tasks already created keep their own contributor minimum.
    /// @param minContributorStake_ new registry-wide contributor minimum.
    /// @param minValidatorStake_ new validator minimum (checked when a task is created and when a result is posted).
    function setMinStakes(uint256 minContributorStake_, uint256 minValidatorStake_)
        external
        onlyRole(DEFAULT_ADMIN_ROLE)
    {
        _minContributorStake = minContributorStake_;
        _minValidatorStake = minValidatorStake_;
        emit MinStakesUpdated(minContributorStake_, minValidatorStake_);
    }

    /// @inheritdoc IStakeRegistry
    function freezeRoles() external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (_rolesFrozen) revert StakeRegistryRolesFrozen();
        _rolesFrozen = true;
        emit RolesFrozen(msg.sender);
    }

    /// @notice Admin, until freezeRoles: grant `role` (SLASHER_ROLE to task managers).
    /// @dev Refused once frozen: otherwise the admin could make itself a slasher and take any stake.
    function grantRole(bytes32 role, address account) public override {
        if (_rolesFrozen) revert StakeRegistryRolesFrozen();
        super.grantRole(role, account);
    }

    /// @notice Admin, until freezeRoles: revoke `role`.
    /// @dev Refused once frozen: a task manager holding locks must keep its role to release them.
    function revokeRole(bytes32 role, address account) public override {
        if (_rolesFrozen) revert StakeRegistryRolesFrozen();
        super.revokeRole(role, account);
    }

    // ─── VIEWS ───
    /// @inheritdoc IStakeRegistry
    function rolesFrozen() external view returns (bool) {
        return _rolesFrozen;
    }

    /// @inheritdoc IStakeRegistry
    function stakeToken() external view returns (address) {
        return address(_stakeToken);
    }

    /// @inheritdoc IStakeRegistry
    function treasury() external view returns (address) {
        return _treasury;
    }

    /// @inheritdoc IStakeRegistry
    function unbondingPeriod() external view returns (uint64) {
        return _unbondingPeriod;
    }

    /// @inheritdoc IStakeRegistry
    function minContributorStake() external view returns (uint256) {
        return _minContributorStake;
    }

    /// @inheritdoc IStakeRegistry
    function minValidatorStake() external view returns (uint256) {
        return _minValidatorStake;
    }

    /// @inheritdoc IStakeRegistry
    function activeStake(address account) external view returns (uint256) {
        return _stakes[account].active;
    }

    /// @inheritdoc IStakeRegistry
    function unbonding(address account) external view returns (uint256 amount, uint64 releaseTime) {
        (amount, releaseTime) = (_unbonding[account].amount, _unbonding[account].releaseTime);
    }

    /// @inheritdoc IStakeRegistry
    function lockedStake(address account) external view returns (uint256) {
        return _stakes[account].locked;
    }

    /// @inheritdoc IStakeRegistry
    function stakeOf(address account) external view returns (uint256 active, uint256 locked) {
        Stake storage s = _stakes[account]; // one read of the slot: submitUpdate calls this
        return (s.active, s.locked);
    }

    // ─── INTERNAL ───
    function _onlySlasher() private view {
        if (!hasRole(SLASHER_ROLE, msg.sender)) revert StakeRegistryUnauthorizedSlasher(msg.sender);
    }
}
