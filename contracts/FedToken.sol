// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";

/// @title FedToken
/// @notice The network's ERC20, used for stakes and as the default reward token. Mintable by its owner on devnets.
contract FedToken is ERC20, Ownable2Step {
    constructor(address initialOwner) ERC20("Fedchain Token", "FED") Ownable(initialOwner) {}

    /// @notice Mint `amount` tokens to `to`. Only the owner (devnets, faucets).
    function mint(address to, uint256 amount) external onlyOwner {
        _mint(to, amount);
    }
}
