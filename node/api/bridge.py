"""The bridge's read routes (docs/BRIDGE.md, docs/API.md "Bridge"): its parameters and keys,
a deposit by its EVM id, a withdrawal with its voucher and the validators' signatures, an
account's withdrawals. Amounts are USDC decimal strings, keys and hashes hex (addresses with
``0x``, as EVM tools write them).

A relayer takes a withdrawal's voucher and signatures from here (or, with a proof against a
QC-signed root, from ``/v1/proofs/records/bridge_withdrawal``) and submits them to the
contract, which verifies every signature; ``perpbft withdraw`` checks each signature against
the registered key before it pays gas for a submission.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypedDict

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from node.api.params import INT_MAX, InputError, parse_uint
from node.api.units import atoms_to_decimal
from node.keys import parse_address
from state_machine.bridge.records import (
    STATUS_NAMES,
    BridgeState,
    Deposit,
    Withdrawal,
    deposit_key,
)
from state_machine.genesis import USDC_DECIMALS

if TYPE_CHECKING:
    from node.api.queries import Queries

WITHDRAWALS_PER_PAGE_MAX = 100


class BridgeInfo(TypedDict):
    evm_chain_id: int
    contract: str
    confirmations: int
    withdraw_limit: str
    withdraw_period_ms: int
    withdrawn_this_period: str
    min_withdraw: str
    deposited: str
    withdrawn: str
    next_withdrawal_id: int
    keys: list[dict[str, Any]]


class BridgeDeposit(TypedDict):
    evm_chain_id: int
    tx_hash: str
    log_index: int
    status: str
    credited_height: int
    account: str | None
    amount: str | None
    attestations: list[dict[str, Any]]


class BridgeWithdrawal(TypedDict):
    withdrawal_id: int
    account: str
    recipient: str
    amount: str
    amount_atoms: int
    requested_height: int
    status: str
    domain: dict[str, Any]
    signatures: list[dict[str, Any]]
    signed_power: int
    total_power: int
    observations: list[dict[str, Any]]


class BridgeWithdrawals(TypedDict):
    account: str
    withdrawals: list[BridgeWithdrawal]


def usdc(atoms: int) -> str:
    return atoms_to_decimal(atoms, USDC_DECIMALS)


def evm_hex(data: bytes) -> str:
    return "0x" + data.hex()


def _parse_hash(text: str) -> bytes:
    body = text[2:] if text.startswith(("0x", "0X")) else text
    try:
        raw = bytes.fromhex(body) if len(body) == 64 else b""
    except ValueError:
        raw = b""
    if not raw:
        raise InputError(400, "bad_tx_hash", "the EVM transaction hash must be 64 hex characters")
    return raw


class BridgeRoutes:
    """The handlers; they read the committed in-memory state between blocks."""

    def __init__(self, queries: Queries) -> None:
        self.queries = queries

    def bridge(self) -> tuple[Any, BridgeState]:
        st = self.queries.state
        if st.bridge is None:
            raise InputError(404, "bridge_disabled", "this chain has no bridge")
        return st, st.bridge

    async def info(self, request: Request) -> Response:
        st, br = self.bridge()
        p = br.params
        period = st.timestamp_ms // p.withdraw_period_ms
        used = br.window_withdrawn_atoms if period == br.window_period else 0
        keys = [{"validator": v.hex(), "address": evm_hex(a),
                 "power": st.validator_power.get(v, 0)} for v, a in br.keys.items()]  # fmt: skip
        body: BridgeInfo = {
            "evm_chain_id": p.evm_chain_id,
            "contract": evm_hex(p.contract),
            "confirmations": p.confirmations,
            "withdraw_limit": usdc(p.withdraw_limit_atoms),
            "withdraw_period_ms": p.withdraw_period_ms,
            "withdrawn_this_period": usdc(used),
            "min_withdraw": usdc(p.min_withdraw_atoms),
            "deposited": usdc(br.deposited_atoms),
            "withdrawn": usdc(br.withdrawn_atoms),
            "next_withdrawal_id": br.next_withdrawal_id,
            "keys": keys,
        }
        return JSONResponse(body)

    async def deposit(self, request: Request) -> Response:
        st, br = self.bridge()
        tx_hash = _parse_hash(request.path_params["tx_hash"])
        log_index = parse_uint(request.path_params["log_index"], "log_index", 0, 2**32 - 1)
        dep = br.deposits.get(deposit_key(br.params.evm_chain_id, tx_hash, log_index))
        if dep is None:
            raise InputError(404, "unknown_deposit", "no validator has attested this deposit")
        return JSONResponse(deposit_json(br, dep, tx_hash, log_index, st.validator_power))

    async def withdrawal(self, request: Request) -> Response:
        st, br = self.bridge()
        wid = parse_uint(request.path_params["withdrawal_id"], "withdrawal_id", 0, INT_MAX)
        w = br.withdrawals.get(wid)
        if w is None:
            raise InputError(404, "unknown_withdrawal", f"no bridge withdrawal {wid}")
        return JSONResponse(withdrawal_json(br, w, st.validator_power))

    async def account_withdrawals(self, request: Request) -> Response:
        st, br = self.bridge()
        try:
            account = parse_address(request.path_params["address"])
        except ValueError as exc:
            raise InputError(400, "bad_address", str(exc)) from None
        ids = br.by_account.get(account, [])[-WITHDRAWALS_PER_PAGE_MAX:]
        items = [withdrawal_json(br, br.withdrawals[i], st.validator_power) for i in reversed(ids)]
        body: BridgeWithdrawals = {"account": account.hex(), "withdrawals": items}
        return JSONResponse(body)


def deposit_json(
    br: BridgeState, dep: Deposit, tx_hash: bytes, log_index: int, power: dict[bytes, int]
) -> BridgeDeposit:
    credited = dep.credited_height > 0
    return {
        "evm_chain_id": br.params.evm_chain_id,
        "tx_hash": evm_hex(tx_hash),
        "log_index": log_index,
        "status": "credited" if credited else "pending",
        "credited_height": dep.credited_height,
        "account": dep.account.hex() if credited else None,
        "amount": usdc(dep.amount_atoms) if credited else None,
        "attestations": [
            {"validator": v.hex(), "account": a.hex(), "amount": usdc(n), "power": power.get(v, 0)}
            for v, (a, n) in dep.claims.items()
        ],
    }


def withdrawal_json(br: BridgeState, w: Withdrawal, power: dict[bytes, int]) -> BridgeWithdrawal:
    return {
        "withdrawal_id": w.withdrawal_id,
        "account": w.account.hex(),
        "recipient": evm_hex(w.recipient),
        "amount": usdc(w.amount_atoms),
        "amount_atoms": w.amount_atoms,
        "requested_height": w.requested_height,
        "status": STATUS_NAMES[w.status],
        "domain": {"chain_id": br.params.evm_chain_id, "contract": evm_hex(br.params.contract)},
        "signatures": [
            {
                "validator": v.hex(),
                "address": evm_hex(a),
                "signature": evm_hex(sig),
                "power": power.get(v, 0),
            }
            for v, (a, sig) in w.signatures.items()
        ],
        "signed_power": sum(power.get(v, 0) for v in w.signatures),
        "total_power": sum(power.values()),
        "observations": [
            {"validator": v.hex(), "status": STATUS_NAMES[s]} for v, s in w.observations.items()
        ],
    }
