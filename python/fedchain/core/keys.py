"""Validator sealing keys: X25519 key pairs in PKCS#8 PEM files (mode 0600, optionally password-encrypted).

The public key (32 raw bytes, shown as 64 hex characters) goes into the task's model spec document so that
contributors can seal their updates to the validator; the private key never leaves the file, and is never
printed or logged.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fedchain.errors import FedchainError

log = logging.getLogger(__name__)


class SealingKeyError(FedchainError):
    """Raised when a sealing key file cannot be created, read or decrypted."""


class KeyFileExistsError(SealingKeyError, FileExistsError):
    """Raised when creating a key would overwrite an existing file (pass overwrite=True / --force)."""


class KeyFileNotFoundError(SealingKeyError, FileNotFoundError):
    """Raised when the key file does not exist."""


class KeyPasswordError(SealingKeyError):
    """Raised when the key's password is missing, wrong, or given for a key that has none."""


def public_key_bytes(private_key: X25519PrivateKey) -> bytes:
    """The 32 raw bytes of the public key."""
    return private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_hex(public_key: bytes) -> str:
    """64 lower-case hex characters (no 0x), as published in a model spec."""
    if len(public_key) != 32:
        raise SealingKeyError(f"an X25519 public key has 32 bytes, got {len(public_key)}")
    return public_key.hex()


def public_key_from_hex(text: str) -> bytes:
    """Parse a public key written as 64 hex characters (an optional 0x prefix is accepted)."""
    body = text.strip().removeprefix("0x").removeprefix("0X")
    try:
        raw = bytes.fromhex(body)
    except ValueError:
        raise SealingKeyError(f"not a hex public key: {text!r:.80}") from None
    if len(raw) != 32:
        raise SealingKeyError(f"an X25519 public key has 32 bytes (64 hex characters), got {len(raw)} bytes")
    return raw


def generate_sealing_key(path: str | os.PathLike[str], password: str | None = None, overwrite: bool = False) -> bytes:
    """Create a key pair, write the private key to `path` (mode 0600); return the raw public key.

    Raises:
        KeyFileExistsError: if `path` exists and overwrite is False.
    """
    target = Path(path)
    key = X25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_to = target.with_name(f".{target.name}.{os.getpid()}.tmp") if overwrite else target
    try:
        fd = os.open(write_to, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileExistsError(f"{target} already exists: refusing to overwrite a key (use --force)") from None
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    if overwrite:
        os.replace(write_to, target)
    return public_key_bytes(key)


def is_encrypted(path: str | os.PathLike[str]) -> bool:
    """Whether the key file is password-protected (False if it cannot be read: loading it says why)."""
    try:
        with open(path, "rb") as fh:
            return b"ENCRYPTED PRIVATE KEY" in fh.read(4096)
    except OSError:
        return False


def load_sealing_key(path: str | os.PathLike[str], password: str | None = None, *,
                     password_hint: str = "--password-env VAR") -> X25519PrivateKey:
    """Read a private sealing key. `password_hint` names the option that gives the password, for the messages.

    Raises:
        KeyFileNotFoundError, KeyPasswordError (needed, wrong, or not expected), SealingKeyError (not a key).
    """
    source = Path(path)
    try:
        data = source.read_bytes()
        mode = source.stat().st_mode
    except FileNotFoundError:
        raise KeyFileNotFoundError(f"no sealing key at {source}: create one with `fedchain keys create`") from None
    except IsADirectoryError:
        raise SealingKeyError(f"{source} is a directory, not a sealing key file") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("sealing key %s is readable by others (mode %o): chmod 600 it", source, mode & 0o777)
    try:
        key = serialization.load_pem_private_key(data, password.encode() if password else None)
    except TypeError as exc:
        if "not encrypted" in str(exc):
            raise KeyPasswordError(f"{source} is not password-protected: give no password") from None
        raise KeyPasswordError(f"{source} is password-protected: give its password ({password_hint})") from None
    except ValueError:
        if password and b"ENCRYPTED" in data:
            raise KeyPasswordError(f"wrong password for {source} ({password_hint})") from None
        raise SealingKeyError(f"{source} is not a PEM private key: give the file `fedchain keys create` wrote") from None
    if not isinstance(key, X25519PrivateKey):
        raise SealingKeyError(f"{source} holds a {type(key).__name__}, not an X25519 sealing key")
    return key
