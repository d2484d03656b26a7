"""`fedchain keys …`: create a validator's sealing key pair and show its public key (never the private key)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

keys_app = typer.Typer(help="Validator sealing keys (X25519) for sealed update envelopes.", no_args_is_help=True)


DEFAULT_PASSWORD_ENV = "FEDCHAIN_PASSWORD"


@keys_app.command("create")
def create_cmd(
    out: Path = typer.Option(..., "--out", help="private key file to write (mode 0600), e.g. .fedchain/keys/validator.key"),
    password_env: str | None = typer.Option(
        None, "--password-env", help=f"encrypt with the password in this variable (default: ${DEFAULT_PASSWORD_ENV} if set)"),
    prompt: bool = typer.Option(False, "--prompt", help="ask for a password interactively"),
    no_password: bool = typer.Option(False, "--no-password", help="write the key unencrypted, on purpose"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing key file"),
) -> None:
    """Create a sealing key pair; print the public key to publish in the task's spec.

    The key is encrypted, as keystores are, with the password in $FEDCHAIN_PASSWORD when it is set (or the one
    --password-env names, or one typed with --prompt); otherwise it is written unencrypted and the command says so."""
    from fedchain.core.keys import SealingKeyError, generate_sealing_key, public_key_hex

    try:
        password, how = _new_password(password_env, prompt, no_password)
        public = generate_sealing_key(out, password, overwrite=force)
    except SealingKeyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"wrote {out} (mode 0600, {how})", err=True)
    typer.echo(public_key_hex(public))


def _new_password(password_env: str | None, prompt: bool, no_password: bool) -> tuple[str | None, str]:
    from fedchain.core.keys import SealingKeyError

    if no_password:
        return None, "NOT encrypted (--no-password): keep the file private"
    if prompt:
        return typer.prompt("Key password", hide_input=True, confirmation_prompt=True), "encrypted with the password typed"
    name = password_env or DEFAULT_PASSWORD_ENV
    value = os.environ.get(name)
    if value:
        return value, f"encrypted with the password in ${name}"
    if password_env:
        raise SealingKeyError(f"--password-env {password_env}: the variable is empty or unset")
    return None, (f"NOT encrypted: ${DEFAULT_PASSWORD_ENV} is not set; set it or pass --prompt to encrypt the key, or "
                  "--no-password to say you meant this")


@keys_app.command("public")
def public_cmd(
    key: Path = typer.Option(..., "--key", help="private key file"),
    password_env: str = typer.Option(DEFAULT_PASSWORD_ENV, "--password-env",
                                     help="the variable holding the key's password, if it is encrypted"),
    prompt: bool = typer.Option(False, "--prompt", help="ask for the password interactively"),
) -> None:
    """Print the public key (hex) of a sealing key file."""
    from fedchain.core.keys import SealingKeyError, is_encrypted, load_sealing_key, public_key_bytes, public_key_hex

    password = None
    if is_encrypted(key):
        password = typer.prompt("Key password", hide_input=True) if prompt else os.environ.get(password_env)
    try:
        private = load_sealing_key(key, password, password_hint=f"${password_env}, --password-env or --prompt")
    except SealingKeyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(public_key_hex(public_key_bytes(private)))


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
