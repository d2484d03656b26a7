// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title MockReentrantToken
/// @notice Test-only: once armed, a transfer out of `target` calls `target` again with `payload` (e.g. claim or
///         withdraw) before moving the tokens, and bubbles up any revert of that call.
contract MockReentrantToken is ERC20 {
    /// @notice The contract a transfer out of it calls back.
    address public target;
    /// @notice The calldata of that call.
    bytes public payload;
    /// @notice Whether the next transfer out of `target` makes the call.
    bool public armed;

    constructor() ERC20("Reentrant Token", "REE") {}

    /// @notice Mint `amount` to `to` (anyone; tests only).
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice Call `target_` with `payload_` on the next transfer out of `target_`.
    function arm(address target_, bytes calldata payload_) external {
        target = target_;
        payload = payload_;
        armed = true;
    }

    function _update(address from, address to, uint256 value) internal override {
        if (armed && from == target) {
            armed = false;
            // Test-only: a raw call, and assembly to bubble up the target's revert data (tests assert on its error).
            // solhint-disable-next-line avoid-low-level-calls
            (bool ok, bytes memory ret) = target.call(payload);
            if (!ok) {
                // solhint-disable-next-line no-inline-assembly
                assembly ("memory-safe") {
                    revert(add(ret, 32), mload(ret))
                }
            }
        }
        super._update(from, to, value);
    }
}
