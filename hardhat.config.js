// Hardhat Network: the second EVM implementation the end-to-end suite runs on besides Anvil
// (tests/python/test_hardhat_e2e.py: `npx hardhat node --hostname 127.0.0.1`, then `ape run deploy --network URL` and
// the demo against it). Hardhat compiles nothing here: ape compiles the contracts with solc 0.8.30.
// Nothing dials out: run it with HARDHAT_DISABLE_TELEMETRY_PROMPT=true and CI=true (no telemetry prompt, no analytics,
// no banner or version check), as fedchain.sim.hardhat does.
module.exports = {
  solidity: "0.8.30",
  paths: {
    sources: "./.cache/hardhat/no-sources",
    cache: "./.cache/hardhat/cache",
    artifacts: "./.cache/hardhat/artifacts",
  },
  networks: {
    hardhat: {
      chainId: 31337,
      hardfork: "prague",
      // Anvil's development mnemonic: the same funded test accounts on both chains (never for real funds).
      accounts: { mnemonic: "test test test test test test test test test test test junk", count: 30 },
    },
  },
};
