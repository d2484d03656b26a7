"""A small transaction layer over web3.py: connection checks, nonces, gas, retries, receipts, decoded reverts."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, cast

import requests
from eth_abi import decode as abi_decode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError, ContractLogicError, TimeExhausted, Web3RPCError
from web3.providers.rpc.utils import ExceptionRetryConfiguration
from web3.types import RPCEndpoint, TxReceipt

from fedchain.chain.artifacts import load_artifact
from fedchain.chain.errors import ChainError, RpcUnreachableError, TransactionRevertedError

log = logging.getLogger(__name__)

RPC_RETRIES = 6  # attempts per JSON-RPC request on a dropped connection or a 5xx (backoff 0.1 s, doubling)
GAS_MARGIN = 1.2  # estimates can undershoot when state changes between estimate and mining
TRANSIENT_ERRORS = (requests.ConnectionError, requests.Timeout, TimeExhausted)


@dataclass(frozen=True)
class TxResult:
    tx_hash: str
    block_number: int
    gas_used: int
    receipt: TxReceipt


def _abi_type(param: dict) -> str:
    """Canonical ABI type of a parameter, expanding tuples (structs)."""
    kind = param["type"]
    if kind.startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in param["components"])
        return f"({inner}){kind[len('tuple'):]}"
    return kind


class ErrorDecoder:
    """Maps a revert's 4-byte selector to the custom error of the ABIs it was built from."""

    def __init__(self, abis: list[list[dict]]) -> None:
        self._errors: dict[bytes, tuple[str, list[str], list[str]]] = {}
        for abi in abis:
            for item in abi:
                if item.get("type") != "error":
                    continue
                types = [_abi_type(p) for p in item["inputs"]]
                selector = keccak(text=f"{item['name']}({','.join(types)})")[:4]
                names = [p.get("name") or f"arg{i}" for i, p in enumerate(item["inputs"])]
                self._errors[selector] = (item["name"], names, types)
        # Solidity's built-ins
        self._errors[keccak(text="Error(string)")[:4]] = ("Error", ["message"], ["string"])
        self._errors[keccak(text="Panic(uint256)")[:4]] = ("Panic", ["code"], ["uint256"])

    def decode(self, data: str | bytes | None) -> tuple[str, dict[str, Any]]:
        raw = bytes.fromhex(data[2:] if data.startswith("0x") else data) if isinstance(data, str) else (data or b"")
        if len(raw) < 4:
            return "UnknownRevert", {"data": "0x" + raw.hex()}
        entry = self._errors.get(raw[:4])
        if entry is None:
            return "UnknownRevert", {"data": "0x" + raw.hex()}
        name, names, types = entry
        values = abi_decode(types, raw[4:]) if types else ()
        return name, {n: (to_checksum_address(v) if t == "address" else v) for n, t, v in zip(names, types, values)}


class Chain:
    """A connection to one chain plus the accounts that send through it.

    Nonces are tracked locally per sender (under a lock) so that several transactions can be built back to back;
    on a nonce error the local counter is resynchronised from the chain and the send retried.
    """

    def __init__(self, rpc_url: str, *, timeout: float = 30.0, receipt_timeout: float = 120.0, retries: int = 3) -> None:
        if not rpc_url.lower().startswith(("http://", "https://")):
            raise ChainError(f"the JSON-RPC endpoint {rpc_url!r} is not an http(s) URL: give one such as "
                             "http://127.0.0.1:8545 (--rpc-url or $FEDCHAIN_RPC_URL)")
        self.rpc_url = rpc_url
        # web3 retries idempotent requests on the builtin ConnectionError only; requests raises its own (a dropped
        # connection, a provider's 5xx): retry those too. A resent raw transaction is safe (see _send_raw).
        retry = ExceptionRetryConfiguration(errors=(requests.ConnectionError, requests.HTTPError, requests.Timeout),
                                            retries=RPC_RETRIES, backoff_factor=0.1)
        self.w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout},
                                         exception_retry_configuration=retry))
        self.receipt_timeout = receipt_timeout
        self.retries = retries
        self._nonces: dict[str, int] = {}
        self._lock = threading.Lock()
        try:
            self.chain_id = self.w3.eth.chain_id
        except TRANSIENT_ERRORS as exc:
            raise RpcUnreachableError(rpc_url, type(exc).__name__) from exc
        except Exception as exc:  # web3 wraps some connection failures in its own types
            raise RpcUnreachableError(rpc_url, str(exc)) from exc
        self._decoder: ErrorDecoder | None = None
        self._decoder_abis: list[list[dict]] = []

    # ─── contracts ───
    def contract(self, name: str, address: str) -> Contract:
        artifact = load_artifact(name)
        self._register_errors(artifact.abi)
        return self.w3.eth.contract(address=to_checksum_address(address), abi=artifact.abi)

    def _register_errors(self, abi: list[dict]) -> None:
        self._decoder_abis.append(abi)
        self._decoder = None

    @property
    def decoder(self) -> ErrorDecoder:
        if self._decoder is None:
            self._decoder = ErrorDecoder(self._decoder_abis)
        return self._decoder

    def deploy(self, name: str, account: LocalAccount, *args: Any) -> tuple[Contract, TxResult]:
        artifact = load_artifact(name)
        self._register_errors(artifact.abi)
        factory = self.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        result = self.send(factory.constructor(*args), account, action=f"deploy {name}")
        address = result.receipt["contractAddress"]
        contract = cast(Contract, self.w3.eth.contract(address=address, abi=artifact.abi))
        return contract, result

    # ─── transactions ───
    def send(self, call: Any, account: LocalAccount, *, action: str = "", value: int = 0) -> TxResult:
        """Estimate, sign, send and wait for `call` (a web3 contract function or constructor); raise on revert."""
        action = action or getattr(call, "fn_name", "transaction")
        last_error: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                return self._send_once(call, account, action, value)
            except TRANSIENT_ERRORS as exc:
                last_error = exc
                log.warning("%s: transient error %s (attempt %d)", action, type(exc).__name__, attempt + 1)
            except (Web3RPCError, ValueError) as exc:  # JSON-RPC error responses
                if "nonce" not in str(exc).lower():
                    raise ChainError(f"{action} failed: {exc}") from exc
                # Another process (or Chain object) sent from this account: re-read the nonce and retry.
                last_error = exc
                self._resync_nonce(account.address)
            time.sleep(min(2.0, 0.2 * 2**attempt))
        if isinstance(last_error, TRANSIENT_ERRORS):
            raise RpcUnreachableError(self.rpc_url, f"{action}: {last_error}") from last_error
        raise ChainError(f"{action} failed after {self.retries + 1} attempts: {last_error}")

    def transfer_eth(self, account: LocalAccount, to: str, value: int) -> TxResult:
        """Send `value` wei from `account` to `to` (a plain transfer; devnet funding)."""
        with self._lock:
            nonce = self._next_nonce(account.address)
            tx = {
                "to": to_checksum_address(to), "value": value, "nonce": nonce, "gas": 21_000, "chainId": self.chain_id,
                "maxFeePerGas": self.w3.eth.gas_price * 2 + 1, "maxPriorityFeePerGas": 1,
            }
            signed = account.sign_transaction(tx)  # type: ignore[arg-type]
            tx_hash = self._send_raw(signed.raw_transaction, signed.hash)
            self._nonces[account.address] = nonce + 1
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self.receipt_timeout, poll_latency=0.05)
        return TxResult(tx_hash.hex(), receipt["blockNumber"], receipt["gasUsed"], receipt)

    def _send_once(self, call: Any, account: LocalAccount, action: str, value: int) -> TxResult:
        sender = account.address
        tx_fields: dict[str, Any] = {"from": sender, "value": value, "chainId": self.chain_id}
        try:
            gas = call.estimate_gas(tx_fields)
        except (ContractCustomError, ContractLogicError) as exc:
            self._raise_revert(action, exc)
        with self._lock:
            nonce = self._next_nonce(sender)
            tx = call.build_transaction({**tx_fields, "gas": int(gas * GAS_MARGIN), "nonce": nonce})
            signed = account.sign_transaction(tx)
            tx_hash = self._send_raw(signed.raw_transaction, signed.hash)
            self._nonces[sender] = nonce + 1
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self.receipt_timeout, poll_latency=0.05)
        if receipt["status"] != 1:
            self._explain_failed_receipt(call, tx_fields, action, receipt)
        return TxResult(tx_hash.hex(), receipt["blockNumber"], receipt["gasUsed"], receipt)

    def _send_raw(self, raw: bytes, tx_hash: bytes) -> Any:
        """Send a signed transaction. When a resend (after an answer lost on the way back) is refused because the
        first copy already reached the node ("nonce too low", "already known"), that copy is the transaction: its
        hash is returned instead of sending the call again, which would act twice or revert."""
        try:
            return self.w3.eth.send_raw_transaction(raw)
        except (Web3RPCError, ValueError):
            try:
                known = self.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
            except Exception:  # noqa: BLE001 - not known: the refusal stands
                known = None
            if known is None:
                raise
            log.info("transaction %s reached the node before its answer was lost; following it", tx_hash.hex())
            return tx_hash

    def _next_nonce(self, sender: str) -> int:
        if sender not in self._nonces:
            self._nonces[sender] = self.w3.eth.get_transaction_count(to_checksum_address(sender), "pending")
        return self._nonces[sender]

    def _resync_nonce(self, sender: str) -> None:
        with self._lock:
            self._nonces.pop(sender, None)

    def _raise_revert(self, action: str, exc: ContractLogicError) -> None:
        data = exc.data if isinstance(exc.data, str) else None
        name, args = self.decoder.decode(data) if data else ("Revert", {"message": exc.message or str(exc)})
        args = dict[str, object](args)
        raise TransactionRevertedError(action, name, args, raw=data or "") from exc

    def _explain_failed_receipt(self, call: Any, fields: dict, action: str, receipt: TxReceipt) -> None:
        # Replay the call at the block it failed in to recover the revert data.
        try:
            call.call(fields, block_identifier=receipt["blockNumber"])
        except (ContractCustomError, ContractLogicError) as exc:
            self._raise_revert(action, exc)
        raise TransactionRevertedError(action, "UnknownRevert", {"tx": receipt["transactionHash"].hex()})

    # ─── reads ───
    def is_dev_chain(self) -> bool:
        if not hasattr(self, "_is_dev"):
            try:
                version = self.w3.client_version.lower()
                # Anvil and Hardhat Network: development chains that mine on demand (evm_mine) and fund test accounts.
                self._is_dev = "anvil" in version or "hardhatnetwork" in version
            except Exception:  # a node that does not answer web3_clientVersion is not a development chain
                self._is_dev = False
        return self._is_dev

    def sync_clock(self, lag: float = 1.0) -> None:
        """On Anvil, mine an empty block when the last one is older than `lag` seconds.

        Anvil mines only when a transaction arrives, so its `block.timestamp` (what views and gas estimates see)
        can lag the wall clock indefinitely; a deadline that has passed in reality would still look open.
        Real chains produce blocks on their own and need nothing.
        """
        if self.is_dev_chain() and self.timestamp() < time.time() - lag:
            self.w3.provider.make_request(RPCEndpoint("evm_mine"), [])

    def mine_if_dev(self) -> None:
        """On Anvil or Hardhat, mine an empty block: blocks come only with transactions there, so a wait for a
        confirmations depth would never end. Real chains produce blocks on their own: nothing is sent."""
        if self.is_dev_chain():
            self.w3.provider.make_request(RPCEndpoint("evm_mine"), [])

    def block_number(self) -> int:
        return self.w3.eth.block_number

    def timestamp(self, block: int | str = "latest") -> int:
        return int(self.w3.eth.get_block(block)["timestamp"])  # type: ignore[arg-type]
