"""Accounts from encrypted keystores (eth-account's scrypt JSON). Keys are never printed or logged."""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from fedchain.errors import FedchainError

PASSWORD_ENV = "FEDCHAIN_PASSWORD"
# eth-account's default scrypt cost (n = 2**18, about 1 s per decryption) protects real keys; throwaway demo
# keystores use n = 2**10 so that a demo with many processes starts quickly.
LIGHT_SCRYPT_N = 2**10
MAX_KEYSTORE_BYTES = 64 << 10  # a keystore is about 500 bytes


class KeystoreError(FedchainError):
    """Raised when a keystore cannot be created, read or decrypted."""


class WrongPasswordError(KeystoreError, PermissionError):
    """Raised when the password does not decrypt the keystore."""


def create_keystore(path: Path, password: str, *, light: bool = False, private_key: bytes | None = None) -> str:
    """Write a new encrypted keystore (mode 0600) and return its address. Refuses to overwrite."""
    path = Path(path)
    if path.exists():
        raise KeystoreError(f"{path} already exists; choose another path or delete it first")
    account = Account.from_key(private_key) if private_key is not None else Account.create()
    keystore = (
        Account.encrypt(account.key, password, kdf="scrypt", iterations=LIGHT_SCRYPT_N)
        if light else Account.encrypt(account.key, password)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(keystore, handle)
    return account.address


def read_keystore(path: Path) -> dict:
    """The keystore's JSON, checked to be an Ethereum keystore (version 3); KeystoreError saying what it is if not."""
    path = Path(path)
    hint = "give the file `fedchain account create --out FILE` wrote (or another Ethereum keystore)"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise KeystoreError(f"no keystore at {path}: create one with `fedchain account create --out {path}`") from None
    except IsADirectoryError:
        raise KeystoreError(f"{path} is a directory, not a keystore file: {hint}") from None
    except OSError as exc:
        raise KeystoreError(f"cannot read the keystore {path}: {exc.strerror}") from None
    if len(raw) > MAX_KEYSTORE_BYTES:
        raise KeystoreError(f"{path} is {len(raw)} bytes, far larger than a keystore: is it the right file?")
    try:
        keystore = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise KeystoreError(f"{path} is a binary file, not a keystore (JSON): {hint}") from None
    except json.JSONDecodeError:
        raise KeystoreError(f"{path} is not a keystore (invalid JSON): {hint}") from None
    crypto = keystore.get("crypto", keystore.get("Crypto")) if isinstance(keystore, dict) else None
    fields = ("ciphertext", "cipherparams", "kdf", "kdfparams", "mac")
    if not isinstance(crypto, dict) or any(f not in crypto for f in fields) or keystore.get("version") != 3:
        raise KeystoreError(
            f"{path} is JSON but not an Ethereum keystore (version 3, with crypto.{', crypto.'.join(fields)}): {hint}"
        )
    return keystore


def keystore_address(path: Path) -> str:
    """The address a keystore holds the key of, read without the password (keystores store it in the clear)."""
    from eth_utils import is_hex_address, to_checksum_address

    address = read_keystore(path).get("address", "")
    address = address if str(address).startswith("0x") else f"0x{address}"
    if not is_hex_address(address):
        raise KeystoreError(f"{path} does not name its address; decrypt it (any command with --keystore shows it)")
    return to_checksum_address(address)


def load_keystore(path: Path, password: str) -> LocalAccount:
    path = Path(path)
    keystore = read_keystore(path)
    try:
        key = Account.decrypt(keystore, password)
    except ValueError as exc:
        if "mac mismatch" not in str(exc).lower():
            raise KeystoreError(f"{path} cannot be decrypted: {exc}") from None
        raise WrongPasswordError(f"the password does not decrypt {path} (check ${PASSWORD_ENV})") from exc
    except (KeyError, TypeError) as exc:
        raise KeystoreError(f"{path} is not a complete keystore (missing {exc})") from None
    return Account.from_key(key)


def resolve_password(env_var: str = PASSWORD_ENV, *, prompt: str = "Keystore password: ") -> str:
    """The password from `env_var`, else an interactive prompt; a clear error when neither is possible."""
    if (value := os.environ.get(env_var)) is not None:
        return value
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    raise KeystoreError(f"no password: set ${env_var} or run in a terminal to be prompted")
