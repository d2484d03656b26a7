"""Chain access at run time: web3.py and eth-account (ape is used for deployment scripts and contract tests)."""

from fedchain.chain.errors import ChainError, RpcUnreachableError, TransactionRevertedError

__all__ = ["ChainError", "RpcUnreachableError", "TransactionRevertedError"]
