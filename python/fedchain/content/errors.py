"""Errors of the content layer: one root, `ContentError`, and one subclass per thing a user can act on."""

from __future__ import annotations

from fedchain.core.cid import InvalidCidError  # noqa: F401 - re-exported: CIDs belong to the protocol core
from fedchain.errors import FedchainError


class ContentError(FedchainError):
    """Raised for any failure of the content-addressed storage layer."""


class NodeRefusedCidError(ContentError, InvalidCidError):
    """Raised when the node refuses a CID or path as invalid (both a content error and an invalid CID)."""


class NodeUnreachableError(ContentError, ConnectionError):
    """Raised when no IPFS RPC API answers at the address tried."""


class ContentNotFoundError(ContentError, LookupError):
    """Raised when the content (or one of its blocks) cannot be found, or not within the timeout."""


class ContentTooLargeError(ContentError):
    """Raised when content exceeds the size cap of a fetch or an add."""


class CidMismatchError(ContentError):
    """Raised when received bytes do not rebuild to the CID that was asked for (or that the node reported)."""


class NodeRpcError(ContentError):
    """Raised when the node answers with an error this layer has no more specific class for."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class UnsupportedOptionError(ContentError, ValueError):
    """Raised for an add option this implementation does not support (another chunker, hash or layout)."""


class BlockstoreError(ContentError):
    """Raised when the on-disk block store is damaged or cannot be written."""
