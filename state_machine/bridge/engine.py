"""The bridge state machine: bridge keys, deposit attestations, withdrawals and their vouchers.

Theory of operation
-------------------
The EVM chain is outside; it enters only as validators' signed transactions (DESIGN section
13). Each validator's node watches the bridge contract and, once a ``Deposit`` event is
``confirmations`` blocks deep, sends :class:`AttestDeposit` naming the deposit id (EVM chain id,
transaction hash, log index) and what it saw (account, amount). A deposit is credited when the
validators that saw the same (account, amount) hold more than two thirds of the current
power, in the block whose attestation crosses the threshold. Its key then stays in the state
with ``credited_height`` set, so every later attestation of that id is refused and the credit
happens exactly once, whatever the order or repetition of attestations. A reorg shallower than
the confirmation count cannot change what an honest validator attests; a deeper one is out of
scope (docs/ARCHITECTURE.md).

A withdrawal (:class:`BridgeWithdraw`) debits the account at once through the accounts module
(refused above free collateral, below the minimum, or above the chain-wide limit of the current
rate-limit period of block time) and records a voucher: withdrawal id (a sequence, the
contract's replay key), recipient, amount. Each validator's node signs the voucher's EIP-712
digest with its secp256k1 bridge key and records the signature (:class:`SignWithdrawal`). The
state machine does not verify secp256k1 signatures: the pure core has no secp256k1 or keccak
(pynacl is its only signature library, DESIGN section 3). A signature is accepted only from
the validator itself (the transaction's Ed25519 signature), so a bad one is that validator's
fault and costs only its own weight; the contract verifies every signature it is given and the
API reports which recorded signatures recover to the registered key. Status: ``requested`` ->
``signed`` (signatures recorded by more than two thirds of the power) -> ``submitted`` ->
``finalised``, or ``disputed``; the last three are what more than two thirds of the power saw
on the contract (:class:`AttestWithdrawal`), and a status only moves forward.

Limits: a validator has at most ``max_pending_deposits`` uncredited attestations, a withdrawal
at most one signature and one observation per validator. Every refusal is a result code and
changes nothing.
"""

from __future__ import annotations

from state_machine.accounts.records import Account
from state_machine.accounts.transfers import credit_external, debit_external
from state_machine.bridge import codes
from state_machine.bridge.actions import (
    AttestDeposit,
    AttestWithdrawal,
    BridgeWithdraw,
    RegisterBridgeKey,
    SignWithdrawal,
)
from state_machine.bridge.params import BRIDGE_ASSET_ID
from state_machine.bridge.records import (
    DISPUTED,
    FINALISED,
    SIGNED,
    STATUS_NAMES,
    SUBMITTED,
    BridgeState,
    Deposit,
    Withdrawal,
    deposit_key,
)
from state_machine.invariants import check
from state_machine.results import ActionResult
from state_machine.state import ExchangeCore


def _ok(message: str = "ok", order_id: int = 0) -> ActionResult:
    return ActionResult(codes.OK, message, order_id=order_id)


def supermajority(power: dict[bytes, int], voters: list[bytes]) -> bool:
    """More than two thirds of the current power among ``voters`` (those no longer in the set
    weigh nothing)."""
    total = sum(power.values())
    voted = sum(power.get(v, 0) for v in voters)
    return total > 0 and 3 * voted > 2 * total


def _not_validator(st: ExchangeCore, signer: bytes) -> ActionResult | None:
    if signer not in st.validator_power:
        return ActionResult(codes.NOT_VALIDATOR, "accepted only from a current validator")
    return None


# ---- bridge keys ------------------------------------------------------------------------------


def process_register_key(
    st: ExchangeCore, br: BridgeState, signer: bytes, a: RegisterBridgeKey
) -> ActionResult:
    refused = _not_validator(st, signer)
    if refused is not None:
        return refused
    if a.address == bytes(20):
        return ActionResult(codes.BAD_BRIDGE_KEY, "the zero address cannot sign")
    owner = br.by_address.get(a.address)
    if owner is not None and owner != signer:
        return ActionResult(codes.BRIDGE_KEY_IN_USE, "address registered by another validator")
    br.set_key(signer, a.address)
    st.events.append(("bridge_key", signer, a.address))
    return _ok()


# ---- deposits ---------------------------------------------------------------------------------


def _deposit_refusal(
    st: ExchangeCore, br: BridgeState, signer: bytes, a: AttestDeposit
) -> ActionResult | None:
    refused = _not_validator(st, signer)
    if refused is not None:
        return refused
    if a.evm_chain_id != br.params.evm_chain_id:
        wanted = br.params.evm_chain_id
        return ActionResult(codes.WRONG_EVM_CHAIN, f"chain {a.evm_chain_id}, the bridge's {wanted}")
    if a.amount_atoms == 0:
        return ActionResult(codes.INVALID_AMOUNT, "a deposit of zero")
    dep = br.deposits.get(deposit_key(a.evm_chain_id, a.tx_hash, a.log_index))
    if dep is not None and dep.credited_height:
        return ActionResult(codes.DEPOSIT_CREDITED, f"credited at height {dep.credited_height}")
    if dep is not None and signer in dep.claims:
        return ActionResult(codes.ALREADY_ATTESTED, "this validator attested this deposit")
    if br.pending_by_validator.get(signer, 0) >= br.params.max_pending_deposits:
        return ActionResult(codes.TOO_MANY_PENDING, "too many uncredited attestations")
    return None


def process_attest_deposit(
    st: ExchangeCore, br: BridgeState, signer: bytes, a: AttestDeposit
) -> ActionResult:
    refused = _deposit_refusal(st, br, signer, a)
    if refused is not None:
        return refused
    key = deposit_key(a.evm_chain_id, a.tx_hash, a.log_index)
    dep = br.deposits.get(key)
    if dep is None:
        dep = Deposit(key)
        br.deposits[key] = dep
    claim = (a.account, a.amount_atoms)
    dep.claims[signer] = claim
    br.pending_by_validator[signer] = br.pending_by_validator.get(signer, 0) + 1
    st.events.append(("deposit_attested", a.evm_chain_id, a.tx_hash, a.log_index, signer,
                      a.account, a.amount_atoms))  # fmt: skip
    agreeing = [v for v, c in dep.claims.items() if c == claim]
    if supermajority(st.validator_power, agreeing):
        _credit_deposit(st, br, dep, a)
    br.touch(dep)
    return _ok()


def _credit_deposit(st: ExchangeCore, br: BridgeState, dep: Deposit, a: AttestDeposit) -> None:
    """Credit once: the record keeps its key with ``credited_height`` set and no claims."""
    check(dep.credited_height == 0, "a deposit credited twice")
    br.count_pending(dep, -1)
    dep.credited_height = st.height
    dep.account, dep.amount_atoms = a.account, a.amount_atoms
    dep.claims = {}
    credit_external(st, a.account, BRIDGE_ASSET_ID, a.amount_atoms)
    br.deposited_atoms += a.amount_atoms
    st.events.append(("deposit_credited", a.evm_chain_id, a.tx_hash, a.log_index, a.account,
                      a.amount_atoms))  # fmt: skip


# ---- withdrawals ------------------------------------------------------------------------------


def _rate_limit_refusal(
    st: ExchangeCore, br: BridgeState, amount_atoms: int
) -> ActionResult | None:
    period = st.timestamp_ms // br.params.withdraw_period_ms
    used = br.window_withdrawn_atoms if period == br.window_period else 0
    if used + amount_atoms > br.params.withdraw_limit_atoms:
        left = max(0, br.params.withdraw_limit_atoms - used)
        return ActionResult(codes.RATE_LIMITED, f"{left} atoms left in this period")
    return None


def process_withdraw(
    st: ExchangeCore, br: BridgeState, acct: Account, a: BridgeWithdraw
) -> ActionResult:
    if a.amount_atoms < br.params.min_withdraw_atoms:
        return ActionResult(codes.BELOW_MINIMUM, f"minimum {br.params.min_withdraw_atoms} atoms")
    if a.recipient == bytes(20):
        return ActionResult(codes.BAD_BRIDGE_KEY, "the zero address cannot receive")
    refused = _rate_limit_refusal(st, br, a.amount_atoms)
    if refused is not None:
        return refused
    debited = debit_external(st, acct, BRIDGE_ASSET_ID, a.amount_atoms)
    if not debited.ok:
        return debited
    period = st.timestamp_ms // br.params.withdraw_period_ms
    if period != br.window_period:
        br.window_period, br.window_withdrawn_atoms = period, 0
    br.window_withdrawn_atoms += a.amount_atoms
    wid = br.next_withdrawal_id
    br.next_withdrawal_id = wid + 1
    br.withdrawn_atoms += a.amount_atoms
    w = Withdrawal(wid, acct.pubkey, a.amount_atoms, a.recipient, st.height)
    br.withdrawals[wid] = w
    br.by_account.setdefault(acct.pubkey, []).append(wid)
    br.touch(w)
    st.events.append(("bridge_withdrawal", wid, acct.pubkey, a.amount_atoms, a.recipient))
    return _ok(order_id=wid)


def process_sign_withdrawal(
    st: ExchangeCore, br: BridgeState, signer: bytes, a: SignWithdrawal
) -> ActionResult:
    refused = _not_validator(st, signer)
    if refused is not None:
        return refused
    address = br.keys.get(signer)
    if address is None:
        return ActionResult(codes.NO_BRIDGE_KEY, "register a bridge key first")
    w = br.withdrawals.get(a.withdrawal_id)
    if w is None:
        return ActionResult(codes.UNKNOWN_WITHDRAWAL, f"no withdrawal {a.withdrawal_id}")
    if signer in w.signatures:
        return ActionResult(codes.ALREADY_SIGNED, "this validator signed this withdrawal")
    w.signatures[signer] = (address, a.signature)
    st.events.append(("withdrawal_signature", w.withdrawal_id, signer, address))
    if w.status < SIGNED and supermajority(st.validator_power, list(w.signatures)):
        _set_status(st, w, SIGNED)
    br.touch(w)
    return _ok()


def process_attest_withdrawal(
    st: ExchangeCore, br: BridgeState, signer: bytes, a: AttestWithdrawal
) -> ActionResult:
    refused = _not_validator(st, signer)
    if refused is not None:
        return refused
    w = br.withdrawals.get(a.withdrawal_id)
    if w is None:
        return ActionResult(codes.UNKNOWN_WITHDRAWAL, f"no withdrawal {a.withdrawal_id}")
    if a.status <= max(w.status, w.observations.get(signer, 0)):
        return ActionResult(codes.STATUS_NOT_LATER, f"status is {STATUS_NAMES[w.status]}")
    w.observations[signer] = a.status
    for status in (FINALISED, DISPUTED, SUBMITTED):  # the latest status that has a quorum
        if status > w.status and supermajority(st.validator_power, _observers(w, status)):
            _set_status(st, w, status)
            break
    br.touch(w)
    return _ok()


def _observers(w: Withdrawal, status: int) -> list[bytes]:
    """Validators whose latest observation supports ``status``: a validator that saw the
    withdrawal disputed or finalised saw it submitted first, but disputed and finalised are
    separate outcomes (finalised can follow disputed once the bridge is unfrozen)."""
    if status == SUBMITTED:
        return [v for v, s in w.observations.items() if s >= SUBMITTED]
    return [v for v, s in w.observations.items() if s == status]


def _set_status(st: ExchangeCore, w: Withdrawal, status: int) -> None:
    check(status > w.status, "a withdrawal status moved backwards")
    w.status = status
    st.events.append(("withdrawal_status", w.withdrawal_id, STATUS_NAMES[status]))
