"""JSON-RPC calls to the EVM chain that holds the bridge: deploy, deposit, read deposits,
submit and finalise withdrawals (web3.py).

Every function here BLOCKS on the network: a trio task calls them through
``trio.to_thread.run_sync``. Transactions are signed locally with the caller's secp256k1 key
(never an unlocked node account), so the same code drives anvil, Hardhat, a public chain and
the in-process eth-tester chain of the tests.

A refused call (the contract reverts) raises ``CallRefused`` with the contract's reason, found
when the transaction's gas is estimated, before anything is sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_utils.address import to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractConstructor, ContractFunction
from web3.exceptions import ContractLogicError
from web3.types import TxParams

from evm.artifacts import load
from evm.voucher import Domain, Voucher, order_signatures, split_signature, voucher_digest

RECEIPT_TIMEOUT_S = 120.0
# Providers cap eth_getLogs ranges; deposits are read in windows of this many blocks.
LOG_WINDOW_BLOCKS = 2_000
GAS_MARGIN_PERCENT = 20
STATUS_NAMES = ("none", "pending", "finalised", "invalidated")

# How a node reports a reverted call: JSON-RPC nodes through web3's ContractLogicError; the
# in-process eth-tester chain (a test dependency, absent from production installs) with its own.
_REVERTS: tuple[type[Exception], ...] = (ContractLogicError,)
try:
    from eth_tester.exceptions import TransactionFailed
except ImportError:  # pragma: no cover - production install without the test extras
    pass
else:
    _REVERTS = (ContractLogicError, TransactionFailed)


class CallRefused(Exception):
    """The contract refused a call; ``reason`` is its revert message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class TxResult:
    tx_hash: bytes
    gas_used: int
    block_number: int


@dataclass(frozen=True)
class Deposit:
    """One ``Deposit`` event; (chain_id, tx_hash, log_index) identifies it for ever."""

    chain_id: int
    tx_hash: bytes
    log_index: int
    block_number: int
    depositor: str
    account: bytes
    amount_atoms: int


@dataclass(frozen=True)
class OnChainWithdrawal:
    status: str  # one of STATUS_NAMES
    recipient: str
    amount_atoms: int
    requested_at_s: int
    finalizable_at_s: int
    frozen: bool


def connect(rpc_url: str, timeout_s: float = 10.0) -> Web3:
    return Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout_s}))


def bridge_contract(w3: Web3, bridge: str) -> Contract:
    return w3.eth.contract(address=to_checksum_address(bridge), abi=load("bridge").abi)


def token_contract(w3: Web3, token: str) -> Contract:
    return w3.eth.contract(address=to_checksum_address(token), abi=load("token").abi)


def bridge_domain(w3: Web3, bridge: str) -> Domain:
    return Domain(chain_id=w3.eth.chain_id, contract=to_checksum_address(bridge))


# ---- sending transactions ----

def _sign_and_send(w3: Web3, key: bytes, tx: TxParams) -> TxResult:
    signed = Account.sign_transaction(tx, key)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT_S)
    if receipt["status"] != 1:
        raise CallRefused(f"transaction {tx_hash.hex()} reverted")
    return TxResult(bytes(tx_hash), int(receipt["gasUsed"]), int(receipt["blockNumber"]))


def _base_params(w3: Web3, key: bytes) -> TxParams:
    sender = Account.from_key(key).address
    return {
        "from": sender,
        "nonce": w3.eth.get_transaction_count(sender, "pending"),
        "chainId": w3.eth.chain_id,
        "gasPrice": w3.eth.gas_price,
    }


def _with_gas(w3: Web3, tx: TxParams) -> TxParams:
    try:
        estimate = w3.eth.estimate_gas(tx)
    except _REVERTS as exc:
        raise CallRefused(_reason(exc)) from exc
    out = dict(tx)
    out["gas"] = estimate * (100 + GAS_MARGIN_PERCENT) // 100
    return out  # type: ignore[return-value]  # TxParams is a TypedDict; dict() widened it


def _reason(exc: Exception) -> str:
    text = str(getattr(exc, "message", None) or exc)
    return text.removeprefix("execution reverted: ").removeprefix("execution reverted")


def _call(w3: Web3, key: bytes, fn: ContractFunction | ContractConstructor) -> TxResult:
    try:
        tx = fn.build_transaction(_base_params(w3, key))
    except _REVERTS as exc:
        raise CallRefused(_reason(exc)) from exc
    return _sign_and_send(w3, key, _with_gas(w3, tx))


def _deploy(w3: Web3, key: bytes, name: str, *args: Any) -> str:
    artifact = load(name)
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    result = _call(w3, key, factory.constructor(*args))
    receipt = w3.eth.get_transaction_receipt(HexBytes(result.tx_hash))
    address = receipt["contractAddress"]
    if address is None:
        raise CallRefused(f"deployment of {name} created no contract")
    return to_checksum_address(address)


def fund_eth(w3: Web3, from_key: bytes, to: str, wei: int) -> TxResult:
    tx = _base_params(w3, from_key)
    tx["to"] = to_checksum_address(to)
    tx["value"] = wei  # type: ignore[typeddict-item]  # Wei is an int NewType
    return _sign_and_send(w3, from_key, _with_gas(w3, tx))


# ---- deployment (tests, localnet, a new bridge) ----

def deploy_token(
    w3: Web3, deployer_key: bytes, name: str = "Test USD", symbol: str = "tUSD", decimals: int = 6
) -> str:
    return _deploy(w3, deployer_key, "token", name, symbol, decimals)


def deploy_bridge(
    w3: Web3, deployer_key: bytes, token: str, validators: Sequence[str], powers: Sequence[int],
    dispute_period_s: int,
) -> str:
    """Deploy a bridge for ``token`` with the initial set (sorted here, as the contract wants)."""
    members = sorted(zip((to_checksum_address(v) for v in validators), powers, strict=True),
                     key=lambda m: int(m[0], 16))
    return _deploy(w3, deployer_key, "bridge", to_checksum_address(token),
                   [m[0] for m in members], [m[1] for m in members], dispute_period_s)


def mint(w3: Web3, key: bytes, token: str, to: str, amount_atoms: int) -> TxResult:
    """Mint test tokens (the test token's deployer only)."""
    return _call(w3, key, token_contract(w3, token).functions.mint(to_checksum_address(to),
                                                                   amount_atoms))


# ---- deposits ----

def deposit(
    w3: Web3, key: bytes, token: str, bridge: str, account: bytes, amount_atoms: int
) -> TxResult:
    """Approve and deposit ``amount_atoms`` for the perpbft ``account`` (32-byte public key)."""
    if len(account) != 32:
        raise ValueError("a perpbft account is a 32-byte public key")
    bridge_address = to_checksum_address(bridge)
    _call(w3, key, token_contract(w3, token).functions.approve(bridge_address, amount_atoms))
    return _call(w3, key, bridge_contract(w3, bridge).functions.deposit(amount_atoms, account))


def confirmed_head(w3: Web3, confirmations: int) -> int:
    """The newest block with ``confirmations`` blocks on top of it (-1 when there is none)."""
    if confirmations < 0:
        raise ValueError("confirmations must be >= 0")
    return int(w3.eth.block_number) - confirmations


def read_deposits(w3: Web3, bridge: str, from_block: int, to_block: int) -> list[Deposit]:
    """Deposit events in blocks ``from_block..to_block`` (inclusive), in chain order."""
    if from_block < 0 or to_block < from_block:
        return []
    contract = bridge_contract(w3, bridge)
    chain_id = int(w3.eth.chain_id)
    out: list[Deposit] = []
    for start in range(from_block, to_block + 1, LOG_WINDOW_BLOCKS):
        end = min(to_block, start + LOG_WINDOW_BLOCKS - 1)
        logs = contract.events.Deposit.get_logs(from_block=start, to_block=end)
        out.extend(_deposit_of(chain_id, log) for log in logs)
    out.sort(key=lambda d: (d.block_number, d.log_index))
    return out


def _deposit_of(chain_id: int, log: Any) -> Deposit:
    args = log["args"]
    return Deposit(
        chain_id=chain_id, tx_hash=bytes(log["transactionHash"]), log_index=int(log["logIndex"]),
        block_number=int(log["blockNumber"]), depositor=to_checksum_address(args["sender"]),
        account=bytes(args["account"]), amount_atoms=int(args["amount"]),
    )


# ---- withdrawals ----

def signature_tuples(digest: bytes, signatures: Sequence[bytes]) -> list[tuple[int, int, int]]:
    """The contract's ``Signature(v, r, s)`` structs, in the signer order it requires."""
    return [split_signature(sig) for sig in order_signatures(digest, signatures)]


def submit_withdrawal(
    w3: Web3, sender_key: bytes, bridge: str, voucher: Voucher, signatures: Sequence[bytes]
) -> TxResult:
    """Submit a signed voucher (anyone may: the user or a relayer pays the gas)."""
    digest = voucher_digest(bridge_domain(w3, bridge), voucher)
    fn = bridge_contract(w3, bridge).functions.withdraw(
        voucher.withdrawal_id, to_checksum_address(voucher.recipient), voucher.amount_atoms,
        signature_tuples(digest, signatures),
    )
    return _call(w3, sender_key, fn)


def finalize_withdrawal(w3: Web3, sender_key: bytes, bridge: str, withdrawal_id: int) -> TxResult:
    return _call(w3, sender_key, bridge_contract(w3, bridge).functions.finalize(withdrawal_id))


def withdrawal_state(w3: Web3, bridge: str, withdrawal_id: int) -> OnChainWithdrawal:
    contract = bridge_contract(w3, bridge)
    recipient, amount, requested_at_s, status = contract.functions.withdrawal(withdrawal_id).call()
    dispute_period_s = int(contract.functions.dispute_period_s().call())
    return OnChainWithdrawal(
        status=STATUS_NAMES[int(status)], recipient=to_checksum_address(recipient),
        amount_atoms=int(amount), requested_at_s=int(requested_at_s),
        finalizable_at_s=int(requested_at_s) + dispute_period_s if status else 0,
        frozen=bool(contract.functions.frozen().call()),
    )


@dataclass(frozen=True)
class BridgeEvent:
    """A withdrawal's or the bridge's change seen on the EVM chain."""

    kind: str  # one of WITHDRAWAL_EVENTS
    withdrawal_id: int | None  # None for Frozen and Unfrozen
    block_number: int
    log_index: int
    tx_hash: bytes


# Event name -> kind; a watcher maps them to the chain's withdrawal status.
WITHDRAWAL_EVENTS = {
    "WithdrawalRequested": "submitted",
    "WithdrawalFinalized": "finalised",
    "WithdrawalInvalidated": "invalidated",
    "Frozen": "frozen",
    "Unfrozen": "unfrozen",
}


def read_bridge_events(w3: Web3, bridge: str, from_block: int, to_block: int) -> list[BridgeEvent]:
    """Withdrawal submissions, payouts and cancellations, freezes and unfreezes in blocks
    ``from_block..to_block`` (inclusive), in chain order."""
    if from_block < 0 or to_block < from_block:
        return []
    contract = bridge_contract(w3, bridge)
    out: list[BridgeEvent] = []
    for start in range(from_block, to_block + 1, LOG_WINDOW_BLOCKS):
        end = min(to_block, start + LOG_WINDOW_BLOCKS - 1)
        for name, kind in WITHDRAWAL_EVENTS.items():
            for log in contract.events[name].get_logs(from_block=start, to_block=end):
                wid = log["args"].get("withdrawal_id")
                out.append(BridgeEvent(kind, None if wid is None else int(wid),
                                       int(log["blockNumber"]), int(log["logIndex"]),
                                       bytes(log["transactionHash"])))
    out.sort(key=lambda e: (e.block_number, e.log_index))
    return out


def freeze(w3: Web3, validator_key: bytes, bridge: str) -> TxResult:
    return _call(w3, validator_key, bridge_contract(w3, bridge).functions.freeze())


def unfreeze(
    w3: Web3, sender_key: bytes, bridge: str, invalidated_ids: Sequence[int],
    digest: bytes, signatures: Sequence[bytes],
) -> TxResult:
    fn = bridge_contract(w3, bridge).functions.unfreeze(
        list(invalidated_ids), signature_tuples(digest, signatures))
    return _call(w3, sender_key, fn)


def update_validators(
    w3: Web3, sender_key: bytes, bridge: str, validators: Sequence[str], powers: Sequence[int],
    signatures: Sequence[bytes], digest: bytes,
) -> TxResult:
    """Propose the next set (``validators`` in ascending address order); it takes over after
    the dispute period, through ``finalize_validators``."""
    fn = bridge_contract(w3, bridge).functions.update_validators(
        [to_checksum_address(v) for v in validators], list(powers),
        signature_tuples(digest, signatures))
    return _call(w3, sender_key, fn)


def finalize_validators(w3: Web3, sender_key: bytes, bridge: str) -> TxResult:
    return _call(w3, sender_key, bridge_contract(w3, bridge).functions.finalize_validators())
