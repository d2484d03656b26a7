"""Entry point of the `fedchain` console script.

Subcommand groups register here; each lives in its own module so the groups stay independent.
Heavy imports (torch, web3) happen inside the commands, so `fedchain ipfs serve` starts fast.
"""

import typer

from fedchain import __version__

app = typer.Typer(
    name="fedchain",
    help="Decentralized, incentivized federated learning on Ethereum.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # never print locals: they may hold keys or passwords
)


@app.callback()
def _root() -> None:
    """fedchain command-line interface."""


@app.command()
def version() -> None:
    """Print the fedchain version."""
    typer.echo(__version__)


def _register_groups() -> None:
    # Each module exposes `app` (a typer.Typer) or `register(app)`; missing ones are skipped while the
    # project grows, so that a partial checkout still runs.
    import importlib

    for module_name in ("ipfs", "keys", "chain_cmds", "task_cmds", "account_cmds", "demo_cmds", "dashboard_cmds"):
        try:
            module = importlib.import_module(f"fedchain.cli.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"fedchain.cli.{module_name}":
                continue
            raise
        module.register(app)


_register_groups()

if __name__ == "__main__":
    app()
