"""An index of the contracts' events in SQLite, followed with a saved cursor: one database file per deployment.

    index = EventIndex.open(protocol, Path(".fedchain/state/index"), confirmations=0)
    index.sync()                       # eth_getLogs in block ranges, from the cursor up to head - confirmations
    index.logs(task_id=3, events=("UpdateSubmitted",))

Everything the contracts log (the TaskManager, the StakeRegistry and any other contract of the deployments file but
the token) is stored decoded, with the block it came in. `sync` pages `eth_getLogs` (public RPC providers cap the
range; a refused range is halved), stops `confirmations` blocks below the head, and checks before every page that
the block under its cursor is still the chain's: after a reorg it rolls back to the highest block it stored whose
hash the chain still has, drops what came after and reads it again (a page whose last block changed while it was
read is read again too). Transactions sent to those contracts in the
last `tx_window` blocks are stored from their receipts, reverted ones too (they leave no logs), with their custom
errors decoded. Round reports and specs read from IPFS are kept by digest (content, so no reorg can change them).

The database records the deployment it belongs to (fedchain.state.StateBinding) and refuses another's; its file name
carries that binding, so a devnet started anew gets a new file, and a JSON descriptor beside it lets `fedchain devnet
--fresh` delete the old chain's. Typed read models over this store are in fedchain.views.records.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eth_typing import ChecksumAddress, HexAddress, HexStr
from eth_utils import event_abi_to_log_topic, to_checksum_address
from web3.exceptions import ContractLogicError

from fedchain.chain.protocol import Protocol
from fedchain.errors import FedchainError
from fedchain.state import FILES_KEY, StateBinding, StateMismatchError, write_bound_json

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DEFAULT_PAGE_BLOCKS = 2_000   # blocks per eth_getLogs call (halved while a provider refuses the range)
DEFAULT_TX_WINDOW = 256       # the recent blocks whose transactions (reverted ones too) are stored
DEFAULT_CONFIRMATIONS = 3     # on a public chain: blocks the index stays below the head
DEV_CHAIN_IDS = (31337, 1337)  # Anvil's and Hardhat's: local chains that only reorg when told to
NOT_INDEXED = ("FedToken",)   # its Transfer and Approval logs say nothing about tasks
_RANGE_REFUSALS = ("range", "too many", "limit", "exceed", "10000", "too large", "response size")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (number INTEGER PRIMARY KEY, hash TEXT NOT NULL, timestamp INTEGER);
CREATE TABLE IF NOT EXISTS logs (
    block INTEGER NOT NULL, log_index INTEGER NOT NULL, block_hash TEXT NOT NULL, tx_hash TEXT NOT NULL,
    contract TEXT NOT NULL, event TEXT NOT NULL, task_id INTEGER, round INTEGER, account TEXT, args TEXT NOT NULL,
    PRIMARY KEY (block, log_index));
CREATE INDEX IF NOT EXISTS logs_by_task ON logs (task_id, event, round);
CREATE INDEX IF NOT EXISTS logs_by_event ON logs (event);
CREATE TABLE IF NOT EXISTS transactions (
    hash TEXT PRIMARY KEY, block INTEGER NOT NULL, position INTEGER NOT NULL, sender TEXT NOT NULL,
    contract TEXT NOT NULL, function TEXT NOT NULL, status INTEGER NOT NULL, gas_used INTEGER NOT NULL,
    error TEXT, error_args TEXT, timestamp INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS content (digest TEXT PRIMARY KEY, kind TEXT NOT NULL, body BLOB NOT NULL);
"""
_TABLES_BY_BLOCK = ("logs", "transactions", "blocks")


class _ChainChanged(Exception):
    """A block read for a page is not the one the page's logs came from."""


class EventIndexError(FedchainError):
    """Raised when the chain cannot be indexed (a provider that refuses even one block's logs, a chain that keeps
    reorganising under the indexer)."""


@dataclass(frozen=True)
class IndexedLog:
    block_number: int
    log_index: int
    block_hash: str
    tx_hash: str
    contract: str            # its name in the deployments file: TaskManager, StakeRegistry, …
    event: str
    args: dict[str, Any]     # decoded: addresses checksummed, bytes as 0x-hex, integers exact


@dataclass(frozen=True)
class IndexedTransaction:
    hash: str
    block_number: int
    position: int
    sender: str
    contract: str
    function: str
    status: int              # 1: succeeded; 0: reverted (no logs)
    gas_used: int
    error: str | None        # the custom error a reverted transaction raised, decoded
    error_args: dict[str, Any] | None
    timestamp: int


@dataclass(frozen=True)
class SyncResult:
    cursor: int              # the last block indexed
    head: int
    pages: int
    logs: int
    rolled_back_to: int | None  # where a reorg sent the cursor back to, if one was found


def default_confirmations(chain_id: int) -> int:
    """0 on a local devnet (nothing reorganises it unless told to), DEFAULT_CONFIRMATIONS elsewhere."""
    return 0 if chain_id in DEV_CHAIN_IDS else DEFAULT_CONFIRMATIONS


def index_path(directory: Path, binding: StateBinding) -> Path:
    """The database of one deployment in `directory`: its chain id, TaskManager and deployment block hash in the
    name."""
    name = f"events-{binding.chain_id}-{binding.contract[2:10].lower()}-{binding.block_hash[2:12]}.sqlite"
    return Path(directory) / name


class EventIndex:
    """The deployment's events in SQLite, brought up to date by `sync`. Safe to share between threads (one lock);
    several processes may follow one file (SQLite's WAL, and a cursor re-read inside each write)."""

    def __init__(self, protocol: Protocol, path: Path | None = None, *, confirmations: int = 0,
                 page_blocks: int = DEFAULT_PAGE_BLOCKS, tx_window: int = DEFAULT_TX_WINDOW) -> None:
        if confirmations < 0 or page_blocks < 1 or tx_window < 0:
            raise ValueError("confirmations and tx_window must be >= 0, page_blocks >= 1")
        self.protocol = protocol
        self.path = path
        self.confirmations = confirmations
        self.page_blocks = page_blocks
        self.tx_window = tx_window
        self.binding = protocol.binding()
        self.first_block = protocol.deployments.block  # where a full log scan starts
        self._w3 = protocol.chain.w3
        self._lock = threading.RLock()
        self._contracts = _indexed_contracts(protocol)
        self._by_address = {str(c.address): name for name, c in self._contracts.items()}
        self._addresses = [ChecksumAddress(HexAddress(HexStr(a))) for a in self._by_address]
        self._topics = {
            event_abi_to_log_topic(item): (name, item["name"])
            for name, c in self._contracts.items() for item in c.abi if item.get("type") == "event"
        }
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path) if path else ":memory:", timeout=30, isolation_level=None,
                                   check_same_thread=False)
        self._open_schema()

    @classmethod
    def open(cls, protocol: Protocol, directory: Path, **options: Any) -> EventIndex:
        """The index of `protocol`'s deployment in `directory` (created on first use)."""
        return cls(protocol, index_path(directory, protocol.binding()), **options)

    @classmethod
    def memory(cls, protocol: Protocol, **options: Any) -> EventIndex:
        """A throwaway index in memory, synced: what a full log scan gives."""
        index = cls(protocol, None, **options)
        index.sync()
        return index

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ─── the store ───
    def _open_schema(self) -> None:
        with self._lock:
            if self.path is not None:
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
            stored = self._meta("binding")
            if stored is not None:
                found = StateBinding.from_json(json.loads(stored))
                if found != self.binding:
                    raise StateMismatchError(self.path or Path(":memory:"), found, self.binding)
            if self._meta("schema") not in (None, str(SCHEMA_VERSION)):  # an older layout: a cache, so rebuild it
                self._db.executescript("".join(f"DROP TABLE {t};" for t in (*_TABLES_BY_BLOCK, "content", "meta")))
                self._db.executescript(_SCHEMA)
            self._write_meta({"binding": json.dumps(asdict(self.binding)), "schema": str(SCHEMA_VERSION)})
        if self.path is not None:
            files = [self.path.name, self.path.name + "-wal", self.path.name + "-shm"]
            write_bound_json(self.path.with_suffix(".json"), {"kind": "event-index", FILES_KEY: files}, self.binding)

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _write_meta(self, values: dict[str, str]) -> None:
        self._db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(values.items()))

    @property
    def cursor(self) -> int:
        """The last block indexed (one before the deployments file's block before the first sync)."""
        with self._lock:
            value = self._meta("cursor")
        return self.first_block - 1 if value is None else int(value)

    def block_hash(self, number: int) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT hash FROM blocks WHERE number = ?", (number,)).fetchone()
        return None if row is None else str(row[0])

    def block_timestamp(self, number: int) -> int | None:
        """The stored timestamp of block `number` (kept for the first and last block of every page: the cursor's)."""
        with self._lock:
            row = self._db.execute("SELECT timestamp FROM blocks WHERE number = ?", (number,)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    # ─── following the chain ───
    def sync(self, max_pages: int | None = None) -> SyncResult:
        """Index from the cursor up to head − confirmations (at most `max_pages` pages), first rolling back
        whatever a reorg replaced."""
        head = int(self._w3.eth.block_number)
        rolled_back = self._unwind_reorg(head)
        pages = logs = retries = 0
        while self.cursor < head - self.confirmations and (max_pages is None or pages < max_pages):
            start = self.cursor + 1
            target = head - self.confirmations
            page = self._read_page(start, min(target, start + self.page_blocks - 1), target)
            if page is None:  # the chain changed under the page: roll back what it replaced, then read again
                retries += 1
                if retries > 5:
                    raise EventIndexError(f"{self.protocol.chain.rpc_url} kept reorganising blocks {start}.. while "
                                          "they were read; try again, or wait more confirmations")
                head = int(self._w3.eth.block_number)
                again = self._unwind_reorg(head)
                if again is not None:
                    rolled_back = again if rolled_back is None else min(rolled_back, again)
                continue
            pages += 1
            logs += self._store_page(start, *page)
        return SyncResult(self.cursor, head, pages, logs, rolled_back)

    def _header(self, number: int) -> tuple[str, str, int]:
        """(hash, parent hash, timestamp) of a block of the chain as it is now."""
        block = self._w3.eth.get_block(number)
        return "0x" + bytes(block["hash"]).hex(), "0x" + bytes(block["parentHash"]).hex(), int(block["timestamp"])

    def _read_page(self, start: int, end: int, target: int) -> tuple | None:
        """The decoded logs and transactions of [start, end'] (end' ≤ end where the provider refuses the range)
        with the hashes of the blocks they came in; None if the page does not extend the stored chain or the chain
        changed while it was read (the last block's hash differs before and after)."""
        first_hash, parent, first_time = self._header(start)
        if start - 1 >= self.first_block and self.block_hash(start - 1) not in (None, parent):
            return None  # the block under the cursor is no longer the chain's
        raw, end, before = self._get_logs(start, end)
        last_hash, _, last_time = self._header(end)
        if last_hash != before or any(_hex(r["blockHash"]) != last_hash for r in raw if r["blockNumber"] == end):
            return None
        hashes: dict[int, tuple[str, int | None]] = {start: (first_hash, first_time), end: (last_hash, last_time)}
        for r in raw:
            hashes.setdefault(int(r["blockNumber"]), (_hex(r["blockHash"]), None))
        try:
            txs = self._transactions(max(start, target - self.tx_window + 1), end, hashes)
        except _ChainChanged:
            return None
        return end, [self._decode(r) for r in raw], txs, hashes

    def _get_logs(self, start: int, end: int) -> tuple[list[Any], int, str]:
        """eth_getLogs of every indexed contract over [start, end], halving the range while the provider refuses
        it (and keeping the size that worked). Returns the logs, the end actually read and that block's hash as it
        was just before the read."""
        while True:
            before = self._header(end)[0]
            try:
                raw = self._w3.eth.get_logs({"address": self._addresses, "fromBlock": start, "toBlock": end})
                return sorted(raw, key=lambda r: (int(r["blockNumber"]), int(r["logIndex"]))), end, before
            except (ValueError, OSError) as exc:  # web3's RPC errors are ValueErrors
                message = str(exc).lower()
                if end == start or not any(word in message for word in _RANGE_REFUSALS):
                    raise EventIndexError(f"eth_getLogs of blocks {start}-{end} failed: {exc}") from exc
                end = start + (end - start + 1) // 2 - 1
                self.page_blocks = end - start + 1
                log.info("the provider refused the block range; reading %d blocks per page", self.page_blocks)

    def _decode(self, raw: Any) -> IndexedLog:
        topic = bytes(raw["topics"][0]) if raw["topics"] else b""
        contract_name, event = self._topics.get(topic, (self._by_address.get(raw["address"], "?"), "Unknown"))
        args: dict[str, Any]
        if event == "Unknown":
            args = {"topics": [_hex(t) for t in raw["topics"]], "data": _hex(raw["data"])}
        else:
            decoded = getattr(self._contracts[contract_name].events, event)().process_log(raw)
            args = {k: _plain(v) for k, v in decoded["args"].items()}
        return IndexedLog(int(raw["blockNumber"]), int(raw["logIndex"]), _hex(raw["blockHash"]),
                          _hex(raw["transactionHash"]), contract_name, event, args)

    def _transactions(self, start: int, end: int, hashes: dict[int, tuple[str, int | None]]) -> list[IndexedTransaction]:
        """Transactions to the indexed contracts in [start, end], from their receipts (reverted ones included)."""
        found: list[IndexedTransaction] = []
        for number in range(start, end + 1):
            block = self._w3.eth.get_block(number, full_transactions=True)
            if number in hashes and hashes[number][0] != _hex(block["hash"]):
                raise _ChainChanged(number)
            hashes[number] = (_hex(block["hash"]), int(block["timestamp"]))
            transactions: list[Any] = list(block["transactions"])
            for tx in transactions:
                name = self._by_address.get(str(tx["to"])) if tx.get("to") else None
                if name is not None:
                    found.append(self._transaction(tx, name, int(block["timestamp"])))
        return found

    def _transaction(self, tx: Any, contract_name: str, timestamp: int) -> IndexedTransaction:
        receipt = self._w3.eth.get_transaction_receipt(tx["hash"])
        try:
            function = self._contracts[contract_name].decode_function_input(tx["input"])[0].fn_name
        except ValueError:
            function = "?"
        error, error_args = None, None
        if receipt["status"] != 1:
            error, error_args = self._revert_reason(tx, int(receipt["blockNumber"]))
        return IndexedTransaction(_hex(tx["hash"]), int(receipt["blockNumber"]), int(receipt["transactionIndex"]),
                                  str(tx["from"]), contract_name, function, int(receipt["status"]),
                                  int(receipt["gasUsed"]), error, error_args, timestamp)

    def _revert_reason(self, tx: Any, block: int) -> tuple[str, dict[str, Any]]:
        """Replay a reverted transaction at its block to recover the custom error it raised."""
        call = {"from": tx["from"], "to": tx["to"], "data": tx["input"], "value": tx["value"], "gas": tx["gas"]}
        try:
            self._w3.eth.call(call, block_identifier=block)  # type: ignore[arg-type]
        except ContractLogicError as exc:
            data = exc.data if isinstance(exc.data, str) else None
            if data:
                name, args = self.protocol.chain.decoder.decode(data)
                return name, {k: _plain(v) for k, v in args.items()}
            return "Reverted", {"message": str(exc.message or exc)}
        except (ValueError, OSError) as exc:
            return "Reverted", {"message": str(exc)}
        return "Reverted", {"message": "the replay did not revert (out of gas, or state changed in the block)"}

    def _store_page(self, start: int, end: int, logs: list[IndexedLog], txs: list[IndexedTransaction],
                    hashes: dict[int, tuple[str, int | None]]) -> int:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if self.cursor != start - 1:  # another process indexed this page meanwhile
                    self._db.execute("ROLLBACK")
                    return 0
                self._db.executemany(
                    "INSERT OR REPLACE INTO blocks (number, hash, timestamp) VALUES (?, ?, COALESCE(?, "
                    "(SELECT timestamp FROM blocks WHERE number = ?)))",
                    [(n, h, t, n) for n, (h, t) in hashes.items()])
                self._db.executemany(
                    "INSERT OR REPLACE INTO logs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(e.block_number, e.log_index, e.block_hash, e.tx_hash, e.contract, e.event, *_keys(e.args),
                      json.dumps(e.args)) for e in logs])
                self._db.executemany(
                    "INSERT OR REPLACE INTO transactions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(t.hash, t.block_number, t.position, t.sender, t.contract, t.function, t.status, t.gas_used,
                      t.error, None if t.error_args is None else json.dumps(t.error_args), t.timestamp) for t in txs])
                self._write_meta({"cursor": str(end)})
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return len(logs)

    def _unwind_reorg(self, head: int) -> int | None:
        """If the block under the cursor is no longer the chain's, roll back to the highest stored block the chain
        still has (every block below a block it still has is its too) and return it; None if nothing changed."""
        cursor = self.cursor
        if cursor < self.first_block:
            return None
        stored = self.block_hash(cursor)
        if stored is not None and cursor <= head and self._header(cursor)[0] == stored:
            return None
        with self._lock:
            rows = self._db.execute("SELECT number, hash FROM blocks WHERE number < ? ORDER BY number DESC",
                                    (cursor,)).fetchall()
        ancestor = self.first_block - 1
        for number, block_hash in rows:
            if number <= head and self._header(number)[0] == block_hash:
                ancestor = number
                break
        else:
            self._check_deployment()
        log.warning("chain reorganisation: blocks after %d were replaced; re-reading them", ancestor)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            for table in _TABLES_BY_BLOCK:
                column = "number" if table == "blocks" else "block"
                self._db.execute(f"DELETE FROM {table} WHERE {column} > ?", (ancestor,))
            self._write_meta({"cursor": str(ancestor)})
            self._db.execute("COMMIT")
        return ancestor

    def _check_deployment(self) -> None:
        """A reorg below every stored block: the deployment itself must still be there."""
        number = self.binding.block
        if number > int(self._w3.eth.block_number) or self._header(number)[0] != self.binding.block_hash:
            raise EventIndexError(
                f"block {number} of {self.protocol.chain.rpc_url} is no longer the one the contracts were deployed in "
                f"({self.binding.block_hash[:14]}…): the chain was reset; this index ({self.path}) belongs to the old one")

    # ─── reading ───
    def logs(self, *, task_id: int | None = None, events: Sequence[str] = (), round_index: int | None = None,
             account: str | None = None, contract: str | None = None) -> list[IndexedLog]:
        """Stored logs in chain order, filtered by task, event names, round, account and contract."""
        where, params = ["1"], []
        for column, value in (("task_id", task_id), ("round", round_index), ("contract", contract),
                              ("account", None if account is None else to_checksum_address(account))):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if events:
            where.append(f"event IN ({', '.join('?' * len(events))})")
            params += list(events)
        with self._lock:
            rows = self._db.execute(
                "SELECT block, log_index, block_hash, tx_hash, contract, event, args FROM logs WHERE "
                f"{' AND '.join(where)} ORDER BY block, log_index", params).fetchall()
        return [IndexedLog(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows]

    def transactions(self, limit: int = 50) -> list[IndexedTransaction]:
        """The latest stored transactions to the indexed contracts, newest first."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM transactions ORDER BY block DESC, position DESC LIMIT ?",
                                    (limit,)).fetchall()
        return [IndexedTransaction(hash=r[0], block_number=r[1], position=r[2], sender=r[3], contract=r[4], function=r[5],
                                   status=r[6], gas_used=r[7], error=r[8],
                                   error_args=None if r[9] is None else json.loads(r[9]), timestamp=r[10])
                for r in rows]

    def content(self, digest: bytes, kind: str, fetch: Callable[[], bytes]) -> bytes:
        """Bytes stored under a content digest (a report, a spec), fetched once and kept."""
        key = "0x" + digest.hex()
        with self._lock:
            row = self._db.execute("SELECT body FROM content WHERE digest = ?", (key,)).fetchone()
        if row is not None:
            return bytes(row[0])
        body = fetch()
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO content (digest, kind, body) VALUES (?, ?, ?)", (key, kind, body))
        return body

    def knows_digest(self, digest: bytes) -> bool:
        """Whether any indexed event names this content digest (a spec, model, update or report)."""
        needle = f'"0x{digest.hex()}"'
        with self._lock:
            row = self._db.execute("SELECT 1 FROM logs WHERE instr(args, ?) > 0 LIMIT 1", (needle,)).fetchone()
        return row is not None


def _indexed_contracts(protocol: Protocol) -> dict[str, Any]:
    """The deployment's contracts whose events are indexed: the TaskManager, the StakeRegistry and any other the
    deployments file names (a committee manager, later) except the token."""
    contracts = {"TaskManager": protocol.manager, "StakeRegistry": protocol.registry}
    for name, address in sorted(protocol.deployments.contracts.items()):
        if name in contracts or name in NOT_INDEXED:
            continue
        try:
            contracts[name] = protocol.chain.contract(name, address)
        except FedchainError as exc:  # no compiled artifact of that name: nothing to decode its logs with
            log.info("not indexing %s: %s", name, exc)
    return contracts


def _keys(args: dict[str, Any]) -> tuple[int | None, int | None, str | None]:
    """The columns logs are filtered on: task id, round and the account an event is about."""
    def small(value: Any) -> int | None:
        return value if isinstance(value, int) and 0 <= value < 2**63 else None

    account = next((args[k] for k in ("contributor", "account", "owner", "member") if isinstance(args.get(k), str)), None)
    return small(args.get("taskId")), small(args.get("round")), account


def _hex(value: Any) -> str:
    if isinstance(value, str):
        return value if value.startswith("0x") else "0x" + value
    return "0x" + bytes(value).hex()


def _plain(value: Any) -> Any:
    """A decoded ABI value as JSON: bytes as 0x-hex, tuples as lists, everything else as it is."""
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
