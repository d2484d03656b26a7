"""`fedchain dashboard`: the live web dashboard of a deployment (every task), served on loopback by default."""

from __future__ import annotations

from pathlib import Path

import typer

from fedchain.cli.common import (
    Confirmations,
    DeploymentsOpt,
    IndexDir,
    IpfsApi,
    RpcUrl,
    connect_chain,
    console,
    friendly_errors,
)


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard)


def require_web() -> None:
    """A clear error when the dashboard's web stack is not installed."""
    import importlib.util

    from fedchain.errors import ConfigError

    missing = [name for name in ("starlette", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"the dashboard needs {' and '.join(missing)}: pip install 'fedchain[dashboard]' "
                          "(`make setup` installs them)")


@friendly_errors
def dashboard(
    host: str = typer.Option("127.0.0.1", help="Address to serve on. Anything but loopback exposes the page to the "
                             "network: name the host names it may be reached by with --allow-host."),
    port: int = typer.Option(8700, min=0, max=65535, help="Port (0: any free one)."),
    allow_host: list[str] = typer.Option([], "--allow-host", help="A host name the page may be reached by besides "
                                         "127.0.0.1 and localhost (requests naming any other Host are refused). "
                                         "Repeatable."),
    interval: float = typer.Option(1.0, min=0.1, help="Seconds between reads of new blocks."),
    index_dir: Path = IndexDir, confirmations: int | None = Confirmations,
    rpc_url: str = RpcUrl, ipfs_api: str = IpfsApi, deployments: Path = DeploymentsOpt,
) -> None:
    """Serve a live web page of every task: budgets, the current round's phase and countdown, who submitted, each
    update's status, score, reward and slash, claims, the accuracy and loss curve, CIDs, recent transactions.

    Read-only: it reads public chain and IPFS data through the event index and holds no keys. Ctrl-C stops it."""
    require_web()
    from fedchain.web.server import DashboardServer

    protocol = connect_chain(rpc_url, deployments)
    server = DashboardServer(protocol, ipfs_api, index_dir, host=host, port=port, confirmations=confirmations,
                             allowed_hosts=allow_host, interval=interval)
    console.print(f"dashboard of chain {protocol.chain.chain_id} (TaskManager {protocol.manager.address}): "
                  f"[bold]{server.url}[/] — open it in a browser; Ctrl-C stops it", highlight=False)
    server.serve_forever()
    console.print("dashboard stopped")
