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


def load_keystore(path: Path, password: str) -> LocalAccount:
    path = Path(path)
    try:
        keystore = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise KeystoreError(f"no keystore at {path}; create one with `fedchain account create --out {path}`") from exc
    except json.JSONDecodeError as exc:
        raise KeystoreError(f"{path} is not a keystore (invalid JSON)") from exc
    try:
        key = Account.decrypt(keystore, password)
    except ValueError as exc:
        raise WrongPasswordError(f"the password does not decrypt {path} (check ${PASSWORD_ENV})") from exc
    return Account.from_key(key)


def resolve_password(env_var: str = PASSWORD_ENV, *, prompt: str = "Keystore password: ") -> str:
    """The password from `env_var`, else an interactive prompt; a clear error when neither is possible."""
    if (value := os.environ.get(env_var)) is not None:
        return value
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    raise KeystoreError(f"no password: set ${env_var} or run in a terminal to be prompted")
