"""Fault injection on a real devnet: `harness` (parties killed and restarted, the outcome compared with the
undisturbed run) and `rpc_proxy` (a JSON-RPC proxy that drops, fails and delays requests). See docs/FAULTS.md."""
