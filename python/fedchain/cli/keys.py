"""`fedchain keys …`: create a validator's sealing key pair and show its public key (never the private key)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

keys_app = typer.Typer(help="Validator sealing keys (X25519) for sealed update envelopes.", no_args_is_help=True)


def _password(password_env: str | None, prompt: bool, confirm: bool) -> str | None:
    if password_env:
        value = os.environ.get(password_env)
        if not value:
            raise typer.BadParameter(f"environment variable {password_env} is empty or unset",
                                     param_hint="--password-env")
        return value
    if prompt:
        return typer.prompt("Key password", hide_input=True, confirmation_prompt=confirm) or None
    return None


@keys_app.command("create")
def create_cmd(
    out: Path = typer.Option(..., "--out", help="private key file to write (mode 0600)"),
    password_env: str | None = typer.Option(None, "--password-env", help="read the password from this variable"),
    prompt: bool = typer.Option(False, "--prompt", help="ask for a password interactively"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing key file"),
) -> None:
    """Create a sealing key pair; print the public key to publish in the task's model spec."""
    from fedchain.core.keys import SealingKeyError, generate_sealing_key, public_key_hex

    try:
        public = generate_sealing_key(out, _password(password_env, prompt, confirm=True), overwrite=force)
    except SealingKeyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"wrote {out} (mode 0600)", err=True)
    typer.echo(public_key_hex(public))


@keys_app.command("public")
def public_cmd(
    key: Path = typer.Option(..., "--key", help="private key file"),
    password_env: str | None = typer.Option(None, "--password-env", help="read the password from this variable"),
    prompt: bool = typer.Option(False, "--prompt", help="ask for the password interactively"),
) -> None:
    """Print the public key (hex) of a sealing key file."""
    from fedchain.core.keys import SealingKeyError, load_sealing_key, public_key_bytes, public_key_hex

    try:
        private = load_sealing_key(key, _password(password_env, prompt, confirm=False))
    except SealingKeyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(public_key_hex(public_key_bytes(private)))


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
