"""How the exchange runs the bridge: one dispatch entry per bridge action, the bridge's
records in the exchange's entries and write set, and its deposits in the conservation audit.
This file is the whole interface."""

from __future__ import annotations

from state_machine.accounts.records import Account
from state_machine.bridge import codes, engine
from state_machine.bridge.actions import (
    AttestDeposit,
    AttestWithdrawal,
    BridgeAction,
    BridgeWithdraw,
    RegisterBridgeKey,
    SignWithdrawal,
)
from state_machine.bridge.records import BRIDGE_KEY_PREFIXES, BridgeState
from state_machine.codec import decode_raw
from state_machine.invariants import check
from state_machine.results import ActionResult
from state_machine.state import ExchangeCore


def is_bridge_key(key: bytes) -> bool:
    return key[0] in BRIDGE_KEY_PREFIXES


def bridge_from_entries(st: ExchangeCore, entries: list[tuple[bytes, bytes]]) -> None:
    params = st.genesis.bridge
    if params is None:
        check(not entries, "bridge entries but the genesis has no bridge")
        return
    st.bridge = BridgeState.from_entries(params, [(k, decode_raw(v)) for k, v in entries])


def process_bridge(st: ExchangeCore, acct: Account, a: BridgeAction) -> ActionResult:
    """Run one bridge action of a transaction signed by ``acct``'s key."""
    br = st.bridge
    if br is None:
        return ActionResult(codes.BRIDGE_DISABLED, "this chain has no bridge")
    signer = acct.pubkey
    if isinstance(a, AttestDeposit):
        return engine.process_attest_deposit(st, br, signer, a)
    if isinstance(a, BridgeWithdraw):
        return engine.process_withdraw(st, br, acct, a)
    if isinstance(a, SignWithdrawal):
        return engine.process_sign_withdrawal(st, br, signer, a)
    if isinstance(a, AttestWithdrawal):
        return engine.process_attest_withdrawal(st, br, signer, a)
    if isinstance(a, RegisterBridgeKey):
        return engine.process_register_key(st, br, signer, a)
    raise TypeError(f"not a bridge action: {type(a).__name__}")
