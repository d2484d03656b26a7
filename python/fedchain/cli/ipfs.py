"""`fedchain ipfs …`: run the embedded node, add, cat and hash content."""

from __future__ import annotations

from pathlib import Path

import typer

from fedchain.cli.common import friendly_errors

ipfs_app = typer.Typer(help="Content-addressed storage: the embedded IPFS node and a Kubo RPC client.",
                       no_args_is_help=True)

_API_HELP = "RPC API of an IPFS node: http URL, HOST:PORT or multiaddr (/ip4/127.0.0.1/tcp/5001)"


@ipfs_app.command("serve")
@friendly_errors
def serve_cmd(
    api: str = typer.Option("127.0.0.1:5001", "--api", help="listen address, HOST:PORT or /ip4/HOST/tcp/PORT"),
    repo: Path = typer.Option(Path(".fedchain/ipfs"), "--repo", help="repo directory (blocks and pins)"),
    log_level: str = typer.Option("WARNING", "--log-level"),
) -> None:
    """Run the embedded IPFS node (Kubo RPC API subset) until interrupted."""
    import logging

    from fedchain.content.node import parse_listen, serve

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        host, port = parse_listen(api)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--api") from None
    serve(host, port, repo)


@ipfs_app.command("add")
@friendly_errors
def add_cmd(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True),
    api: str = typer.Option("http://127.0.0.1:5001", "--api", envvar="FEDCHAIN_IPFS_API", help=_API_HELP),
    cid_version: int = typer.Option(0, "--cid-version", min=0, max=1),
    pin: bool = typer.Option(True, "--pin/--no-pin"),
) -> None:
    """Add a file (pinned, 256 KiB chunks, balanced DAG) and print its CID."""
    from fedchain.content.client import IpfsClient
    from fedchain.content.unixfs import AddOptions

    with IpfsClient(api) as client:
        typer.echo(client.add_file(path, pin=pin, options=AddOptions(cid_version=cid_version)))


@ipfs_app.command("cat")
@friendly_errors
def cat_cmd(
    cid: str = typer.Argument(...),
    out: Path = typer.Option(..., "--out", "-o", help="file to write (only once verified)"),
    api: str = typer.Option("http://127.0.0.1:5001", "--api", envvar="FEDCHAIN_IPFS_API", help=_API_HELP),
    max_size: int = typer.Option(512 << 20, "--max-size", help="refuse content larger than this many bytes"),
) -> None:
    """Fetch content, verify it against its CID, and write it to --out."""
    from fedchain.content.client import IpfsClient

    with IpfsClient(api) as client:
        size = client.cat_to_file(cid, out, max_size=max_size)
    typer.echo(f"{out}: {size} bytes, verified against {cid}")


@ipfs_app.command("cid")
@friendly_errors
def cid_cmd(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True),
    cid_version: int = typer.Option(0, "--cid-version", min=0, max=1),
    digest: bool = typer.Option(False, "--digest", help="also print the 32-byte on-chain digest (CIDv0)"),
) -> None:
    """Print the CID `ipfs add` would give a file, without any node."""
    from fedchain.content.unixfs import compute_cid
    from fedchain.core.cid import cid_to_digest

    with path.open("rb") as fh:
        cid = compute_cid(fh, cid_version=cid_version)
    typer.echo(cid)
    if digest:
        typer.echo("0x" + cid_to_digest(cid).hex())


def register(app: typer.Typer) -> None:
    app.add_typer(ipfs_app, name="ipfs")
