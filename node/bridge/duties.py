"""What a validator still owes the bridge, decided from the committed state (pure functions).

Every duty is idempotent against the state: a deposit already credited or already attested by
this validator, a voucher it already signed, an observation it already reported, yields no
action. So the service can run them every poll, after a restart, or twice, and the state
machine's refusals (``already_attested``, ``already_signed``, ``status_not_later``) are the
only cost of a race with a transaction still in the mempool.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence

from state_machine.bridge.actions import (
    OBSERVED_DISPUTED,
    OBSERVED_FINALISED,
    OBSERVED_SUBMITTED,
    AttestDeposit,
    AttestWithdrawal,
    RegisterBridgeKey,
    SignWithdrawal,
)
from state_machine.bridge.records import FINALISED, BridgeState, Withdrawal, deposit_key


@dataclasses.dataclass(frozen=True, slots=True)
class SeenDeposit:
    """A confirmed ``Deposit`` event as the watcher read it from the EVM chain."""

    evm_chain_id: int
    tx_hash: bytes
    log_index: int
    account: bytes
    amount_atoms: int


@dataclasses.dataclass(frozen=True, slots=True)
class SeenWithdrawal:
    """A withdrawal's state on the contract: ``status`` is none, pending, finalised or
    invalidated (the contract's names); ``frozen`` whether the bridge is frozen; what it pays
    to whom (``recipient`` 20 bytes; empty and 0 when the contract holds no such id)."""

    withdrawal_id: int
    status: str
    frozen: bool
    recipient: bytes = b""
    amount_atoms: int = 0


def key_duty(br: BridgeState, me: bytes, address: bytes) -> RegisterBridgeKey | None:
    """Register (or rotate to) the configured bridge key if the state holds another one."""
    return None if br.keys.get(me) == address else RegisterBridgeKey(address)


def deposit_duties(br: BridgeState, me: bytes, seen: Iterable[SeenDeposit]) -> list[AttestDeposit]:
    out = []
    for d in seen:
        if d.amount_atoms <= 0 or d.evm_chain_id != br.params.evm_chain_id:
            continue  # the state machine would refuse it; nothing to attest
        record = br.deposits.get(deposit_key(d.evm_chain_id, d.tx_hash, d.log_index))
        if record is not None and (record.credited_height or me in record.claims):
            continue
        out.append(AttestDeposit(d.evm_chain_id, d.tx_hash, d.log_index, d.account,
                                 d.amount_atoms))  # fmt: skip
    return out


def open_withdrawals(br: BridgeState, limit: int) -> list[Withdrawal]:
    """Withdrawals not yet finalised, oldest first, at most ``limit``."""
    out = []
    for w in br.withdrawals.values():  # insertion order = id order
        if w.status < FINALISED:
            out.append(w)
            if len(out) >= limit:
                break
    return out


def signature_duties(
    br: BridgeState,
    me: bytes,
    sign: Callable[[Withdrawal], bytes],
    withdrawals: Sequence[Withdrawal],
) -> list[SignWithdrawal]:
    """Sign every open voucher this validator has not signed (with its registered key only:
    a signature under a key the state does not hold would be wasted on the contract)."""
    if me not in br.keys:
        return []
    return [SignWithdrawal(w.withdrawal_id, sign(w)) for w in withdrawals if me not in w.signatures]


def observed_status(seen: SeenWithdrawal) -> int | None:
    """The chain-side status a contract state stands for (None: nothing to report yet)."""
    if seen.status == "finalised":
        return OBSERVED_FINALISED
    if seen.status == "invalidated" or (seen.status == "pending" and seen.frozen):
        return OBSERVED_DISPUTED
    if seen.status == "pending":
        return OBSERVED_SUBMITTED
    return None


def observation_duties(
    br: BridgeState, me: bytes, seen: Iterable[SeenWithdrawal]
) -> list[AttestWithdrawal]:
    out = []
    for s in seen:
        w = br.withdrawals.get(s.withdrawal_id)
        status = observed_status(s)
        if w is None or status is None:
            continue
        if status > max(w.status, w.observations.get(me, 0)):
            out.append(AttestWithdrawal(s.withdrawal_id, status))
    return out


def forged_withdrawal(br: BridgeState, seen: Iterable[SeenWithdrawal]) -> str | None:
    """Why the contract holds a withdrawal the chain never made (None if it does not): an id
    the chain has not issued, or another recipient or amount than the chain's voucher. Only
    keys of more than two thirds of the contract's power can make one, so this is the
    dispute the dispute period is for: the validator freezes the bridge at once."""
    for s in seen:
        if s.status not in ("pending", "finalised"):
            continue
        w = br.withdrawals.get(s.withdrawal_id)
        if w is None:
            return f"withdrawal {s.withdrawal_id} is on the contract but the chain never made it"
        if (s.recipient, s.amount_atoms) != (w.recipient, w.amount_atoms):
            return f"withdrawal {s.withdrawal_id} pays another recipient or amount than the chain's"
    return None
