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
/// @dev Invariant: stakeToken.balanceOf(this) == sum over accounts of (active + unbonding). Slashed tokens leave
///      for the treasury in the same transaction. Reentrancy: the transient guard (EIP-1153) costs ~200 gas instead
///      of two storage writes; the stake token is fixed at deployment, but the guard keeps a hostile one harmless.
contract StakeRegistry is IStakeRegistry, AccessControl, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using SafeCast for uint256;

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
    /// @notice `caller` does not hold SLASHER_ROLE.
    error StakeRegistryUnauthorizedSlasher(address caller);
    /// @notice A constructor argument was the zero address (`what` names it).
    error StakeRegistryZeroAddress(string what);

    // ─── STORAGE ───
    /// @notice Holders may call `slash` (granted to task managers by the deploy script).
    bytes32 public constant SLASHER_ROLE = keccak256("SLASHER_ROLE");

    /// @dev active and unbonding in one slot: the hot read (activeStake) and slashing touch one slot.
    struct Account {
        uint128 active;
        uint128 unbonding;
    }

    IERC20 private immutable _stakeToken;
    address private immutable _treasury;
    uint64 private immutable _unbondingPeriod;
    uint256 private _minContributorStake;
    uint256 private _minValidatorStake;
    mapping(address account => Account) private _accounts;
    mapping(address account => uint64) private _releaseTime;

    /// @param stakeToken_ token staked (FedToken); must not take a fee on transfer.
    /// @param treasury_ receives every slashed token.
    /// @param unbondingPeriod_ seconds between an unstake request and the withdrawal.
    /// @param minContributorStake_ registry-wide minimum a task may ask of contributors.
    /// @param minValidatorStake_ active stake a task's validator needs when the task is created.
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
        _stakeToken = stakeToken_;
        _treasury = treasury_;
        _unbondingPeriod = unbondingPeriod_;
        _minContributorStake = minContributorStake_;
        _minValidatorStake = minValidatorStake_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        emit MinStakesUpdated(minContributorStake_, minValidatorStake_);
    }

    // ─── LOGIC ───
    /// @inheritdoc IStakeRegistry
    function stake(uint256 amount) external nonReentrant {
        if (amount == 0) revert StakeRegistryZeroAmount();
        Account storage acct = _accounts[msg.sender];
        // Pull first and measure: the credit must equal what arrived, or the balance invariant breaks.
        uint256 before = _stakeToken.balanceOf(address(this));
        _stakeToken.safeTransferFrom(msg.sender, address(this), amount);
        uint256 received = _stakeToken.balanceOf(address(this)) - before;
        if (received != amount) revert StakeRegistryFeeOnTransfer(amount, received);
        uint256 active = acct.active + amount;
        acct.active = active.toUint128();
        emit Staked(msg.sender, amount, active);
    }

    /// @inheritdoc IStakeRegistry
    function requestUnstake(uint256 amount) external {
        if (amount == 0) revert StakeRegistryZeroAmount();
        Account storage acct = _accounts[msg.sender];
        uint256 active = acct.active;
        if (amount > active) revert StakeRegistryInsufficientStake(msg.sender, active, amount);
        uint256 unbonding_ = acct.unbonding + amount;
        uint64 release = uint64(block.timestamp) + _unbondingPeriod;
        // amount <= active <= type(uint128).max, and unbonding + active never exceeds the staked total (uint128).
        acct.active = uint128(active - amount);
        acct.unbonding = unbonding_.toUint128();
        _releaseTime[msg.sender] = release;
        emit UnstakeRequested(msg.sender, amount, unbonding_, release);
    }

    /// @inheritdoc IStakeRegistry
    function withdraw() external nonReentrant returns (uint256 amount) {
        Account storage acct = _accounts[msg.sender];
        amount = acct.unbonding;
        if (amount == 0) revert StakeRegistryNothingToWithdraw(msg.sender);
        uint64 release = _releaseTime[msg.sender];
        if (block.timestamp < release) {
            revert StakeRegistryStillUnbonding(msg.sender, release, uint64(block.timestamp));
        }
        acct.unbonding = 0; // effects before the transfer
        delete _releaseTime[msg.sender];
        emit Withdrawn(msg.sender, amount);
        _stakeToken.safeTransfer(msg.sender, amount);
    }

    /// @inheritdoc IStakeRegistry
    /// @dev Returns the amount actually taken (possibly 0). Emits StakeSlashed even for 0 so that the
    ///      attempt is on record; moves tokens only when something was taken.
    function slash(address account, uint256 amount, bytes32 evidence)
        external
        nonReentrant
        returns (uint256 slashed)
    {
        if (!hasRole(SLASHER_ROLE, msg.sender)) revert StakeRegistryUnauthorizedSlasher(msg.sender);
        Account storage acct = _accounts[account];
        uint256 active = acct.active;
        uint256 unbonding_ = acct.unbonding;
        // Active stake first, then unbonding, capped at what the account holds.
        uint256 fromActive = amount < active ? amount : active;
        uint256 rest = amount - fromActive;
        uint256 fromUnbonding = rest < unbonding_ ? rest : unbonding_;
        slashed = fromActive + fromUnbonding;
        // Both differences are non-negative by the min() above and fit uint128 because the operands do.
        acct.active = uint128(active - fromActive);
        if (fromUnbonding != 0) acct.unbonding = uint128(unbonding_ - fromUnbonding);
        emit StakeSlashed(account, msg.sender, slashed, evidence);
        if (slashed != 0) _stakeToken.safeTransfer(_treasury, slashed);
    }

    /// @notice Admin: update the role minimums. Tasks already created keep their own contributor minimum.
    /// @param minContributorStake_ new registry-wide contributor minimum.
    /// @param minValidatorStake_ new validator minimum (checked when a task is created).
    function setMinStakes(uint256 minContributorStake_, uint256 minValidatorStake_)
        external
        onlyRole(DEFAULT_ADMIN_ROLE)
    {
        _minContributorStake = minContributorStake_;
        _minValidatorStake = minValidatorStake_;
        emit MinStakesUpdated(minContributorStake_, minValidatorStake_);
    }

    // ─── VIEWS ───
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
        return _accounts[account].active;
    }

    /// @inheritdoc IStakeRegistry
    function unbonding(address account) external view returns (uint256 amount, uint64 releaseTime) {
        return (_accounts[account].unbonding, _releaseTime[account]);
    }
}
