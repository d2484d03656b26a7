"""Accounts and stakes: `fedchain account …` (keystores, devnet funding) and `fedchain stake …`.

Amounts are typed and shown in FED with its decimals (exact: `--amount 123456.789` stakes exactly that);
`--wei` adds the smallest-unit integers to what is shown.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from fedchain.cli.common import (
    DeploymentsOpt,
    PasswordEnv,
    RpcUrl,
    connect_chain,
    console,
    friendly_errors,
    load_account,
    parse_address,
    parse_amount,
)

account_app = typer.Typer(help="Encrypted keystores for chain accounts; funding them on a devnet.", no_args_is_help=True)
stake_app = typer.Typer(help="Stake in the registry (one stake serves every task).", no_args_is_help=True)
KeystoreOpt = typer.Option(..., "--keystore", help="Encrypted keystore of the account (password from $FEDCHAIN_PASSWORD or a prompt).")
WeiOpt = typer.Option(False, "--wei", help="Also show amounts in the smallest unit (wei).")


def register(app: typer.Typer) -> None:
    app.add_typer(account_app, name="account")
    app.add_typer(stake_app, name="stake")


@account_app.command("create")
@friendly_errors
def account_create(
    out: Path = typer.Option(..., "--out", help="Keystore file to write (mode 0600), e.g. .fedchain/keys/me.json."),
    dev_index: int | None = typer.Option(
        None, "--dev-index", min=0, help="Devnet only: store the development mnemonic's account N (funded by `fedchain devnet`)."
    ),
    password_env: str = PasswordEnv,
) -> None:
    """Create a new account in an encrypted keystore and print its address (never the key)."""
    from fedchain.chain.accounts import create_keystore, resolve_password

    key = None
    if dev_index is not None:
        from fedchain.sim.devnet import dev_account

        key = dev_account(dev_index).key
    address = create_keystore(out, resolve_password(password_env, prompt="New keystore password: "), private_key=key)
    origin = f"development account {dev_index}" if dev_index is not None else "a new key"
    console.print(f"wrote {out} (mode 0600, {origin}, encrypted with the password in ${password_env} or typed)")
    typer.echo(address)


@account_app.command("address")
@friendly_errors
def account_address(keystore: Path = KeystoreOpt) -> None:
    """Print a keystore's address (no password needed: keystores store it in the clear)."""
    from fedchain.chain.accounts import keystore_address

    typer.echo(keystore_address(keystore))


@account_app.command("fund")
@friendly_errors
def account_fund(
    to: str | None = typer.Option(None, "--to", help="Address to fund."),
    keystore: Path | None = typer.Option(None, "--keystore", help="Or: the keystore of the account to fund (no password needed)."),
    eth: str = typer.Option("1", "--eth", help="ETH to send for gas (decimal)."),
    fed: str = typer.Option("1000", "--fed", help="FED to mint (decimal)."),
    rpc_url: str = RpcUrl, deployments: Path = DeploymentsOpt,
) -> None:
    """Devnet only: give an account ETH (for gas) and FED (to stake or fund tasks) from development account 0.

    On a real network an account needs ETH for gas (from an exchange or a faucet) and FED from someone who holds
    it: contributors at least the task's minimum stake, validators the registry's validator minimum, task owners
    the task's budget."""
    from fedchain.chain.units import format_fed
    from fedchain.sim.devnet import fund_account

    address = _address(to, keystore)
    protocol = connect_chain(rpc_url, deployments)
    fund_account(protocol.chain, protocol.deployments, address, eth=parse_amount(eth, "--eth"),
                 fed=parse_amount(fed, "--fed"))
    console.print(f"{address}: {format_fed(protocol.eth_balance(address), symbol='ETH')}, "
                  f"{format_fed(protocol.balance_of(address))}")


def _address(to: str | None, keystore: Path | None, option: str = "--to") -> str:
    from fedchain.chain.accounts import keystore_address
    from fedchain.errors import ConfigError

    if (to is None) == (keystore is None):
        raise ConfigError(f"give either {option} ADDRESS or --keystore FILE")
    return parse_address(to, option) if to is not None else keystore_address(keystore)  # type: ignore[arg-type]


@stake_app.command("add")
@friendly_errors
def stake_add(
    amount: str = typer.Option(..., "--amount", help="FED to add to your active stake (decimal, e.g. 100 or 0.5)."),
    keystore: Path = KeystoreOpt,
    rpc_url: str = RpcUrl, deployments: Path = DeploymentsOpt, password_env: str = PasswordEnv,
) -> None:
    """Stake FED (approve + stake). Contributors need a task's minimum stake, validators the registry's."""
    from fedchain.chain.units import format_fed

    units = parse_amount(amount, "--amount")
    protocol = connect_chain(rpc_url, deployments)
    account = load_account(keystore, password_env)
    balance = protocol.balance_of(account.address)
    if units > balance:
        raise _short(f"{account.address} holds {format_fed(balance)}, less than the {format_fed(units)} to stake")
    protocol.stake(account, units)
    console.print(f"active stake of {account.address}: {format_fed(protocol.active_stake(account.address))}")


@stake_app.command("unstake")
@friendly_errors
def stake_unstake(
    amount: str = typer.Option(..., "--amount", help="FED to move from active to unbonding stake, or 'all'."),
    keystore: Path = KeystoreOpt,
    rpc_url: str = RpcUrl, deployments: Path = DeploymentsOpt, password_env: str = PasswordEnv,
) -> None:
    """Request an unstake: the amount unbonds (still slashable) until the unbonding period is over."""
    from fedchain.chain.units import ALL, format_fed
    from fedchain.views.status import clock_time, describe_time

    units = parse_amount(amount, "--amount", allow_all=True)
    protocol = connect_chain(rpc_url, deployments)
    account = load_account(keystore, password_env)
    active = protocol.active_stake(account.address)
    units = active if units == ALL else units
    if units == 0 or units > active:
        raise _short(f"{account.address} has {format_fed(active)} active stake: cannot unstake {format_fed(units)}")
    protocol.request_unstake(account, units)
    unbonding, release = protocol.unbonding(account.address)
    console.print(f"unbonding {format_fed(unbonding)}, withdrawable from {clock_time(release)} "
                  f"({describe_time(release - time.time())}; the unbonding period is {protocol.unbonding_period()} s, "
                  "and it restarts with each unstake); then `fedchain stake withdraw`")


@stake_app.command("withdraw")
@friendly_errors
def stake_withdraw(
    keystore: Path = KeystoreOpt,
    rpc_url: str = RpcUrl, deployments: Path = DeploymentsOpt, password_env: str = PasswordEnv,
) -> None:
    """Withdraw unbonded stake whose period is over, after releasing the locks of settled rounds. Stake that backs
    a submission whose round has not settled stays locked (and slashable) until it settles."""
    from fedchain.chain.units import format_fed
    from fedchain.views.status import clock_time, describe_time

    protocol = connect_chain(rpc_url, deployments)
    account = load_account(keystore, password_env)
    unbonding, release = protocol.unbonding(account.address)
    if unbonding == 0:
        raise _short(f"{account.address} has nothing unbonding: `fedchain stake unstake` first")
    protocol.chain.sync_clock()
    if release > protocol.chain.timestamp() and release > time.time():
        raise _short(f"{format_fed(unbonding)} unbonds until {clock_time(release)} "
                     f"({describe_time(release - time.time())}): withdraw then")
    released = protocol.release_settled(account)
    if released:
        console.print(f"released {len(released)} settled stake lock(s)")
    before = protocol.balance_of(account.address)
    protocol.withdraw_stake(account)
    after = protocol.balance_of(account.address)
    locked = protocol.locked_stake(account.address)
    console.print(f"withdrew {format_fed(after - before)}; balance of {account.address}: {format_fed(after)}"
                  + (f"; {format_fed(locked)} stays locked until its rounds settle" if locked else ""))


@stake_app.command("show")
@friendly_errors
def stake_show(
    account: str | None = typer.Option(None, "--account", help="Address to show."),
    keystore: Path | None = typer.Option(None, "--keystore", help="Or: the keystore of the account (no password needed)."),
    wei: bool = WeiOpt,
    rpc_url: str = RpcUrl, deployments: Path = DeploymentsOpt,
) -> None:
    """Active, unbonding and locked stake, FED and ETH balance of an address, and the registry's minimum stakes."""
    from fedchain.chain.units import format_wei
    from fedchain.views.status import clock_time

    address = _address(account, keystore, "--account")
    protocol = connect_chain(rpc_url, deployments)
    unbonding, release = protocol.unbonding(address)
    min_contributor, min_validator = protocol.min_stakes()
    release_text = f" (withdrawable from {clock_time(release)})" if unbonding else ""
    console.print(
        f"{address}: active stake {format_wei(protocol.active_stake(address), wei=wei)}, unbonding "
        f"{format_wei(unbonding, wei=wei)}{release_text}, locked {format_wei(protocol.locked_stake(address), wei=wei)}, "
        f"balance {format_wei(protocol.balance_of(address), wei=wei)}, "
        f"{format_wei(protocol.eth_balance(address), wei=wei, symbol='ETH')}\n"
        f"minimum stakes: contributor {format_wei(min_contributor, wei=wei)}, validator "
        f"{format_wei(min_validator, wei=wei)}; unbonding period {protocol.unbonding_period()} s"
    )


def _short(message: str) -> Exception:
    from fedchain.errors import ConfigError

    return ConfigError(message)
