"""The bridge state machine (``state_machine/bridge``) on the real exchange: deposits credited
exactly once by more than two thirds of the power, withdrawals debited under free collateral and
the rate limit, vouchers signed and their status, every refusal with its code and no change,
the optional genesis section, conservation and rebuilding from entries."""

from __future__ import annotations

import dataclasses
import json

import pytest

from state_machine.audit import audit
from state_machine.bridge import codes
from state_machine.bridge.actions import (
    OBSERVED_DISPUTED,
    OBSERVED_FINALISED,
    OBSERVED_SUBMITTED,
    AttestDeposit,
    AttestWithdrawal,
    BridgeWithdraw,
    RegisterBridgeKey,
    SignWithdrawal,
)
from state_machine.bridge.params import BridgeKey, BridgeParams
from state_machine.bridge.records import META_KEY, WINDOW_KEY, deposit_key
from state_machine.codec import DecodeError, encode
from state_machine.exchange import ExchangeState
from state_machine.genesis import (
    FundedBalance,
    Genesis,
    GenesisError,
    genesis_from_json,
    validate_genesis,
)
from state_machine.tx import SetLeverage
from tests.state_machine.helpers import (
    BTC_PERP,
    USDC,
    VALIDATORS,
    Harness,
    acct,
    limit,
    make_genesis,
)

EVM_CHAIN = 31337
CONTRACT = bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3")
ADDRESSES = [bytes([0xB0 + i]) * 20 for i in range(4)]
TX_HASH = bytes(range(32))
ALICE, BOB = acct(1), acct(2)
NEWCOMER = bytes([0x77]) * 32  # never funded, never seen
RECIPIENT = bytes([0xEE]) * 20
SIG = bytes([0x11]) * 65
P = 6_000_000


def bridge_params(**kw: int) -> BridgeParams:
    keys = tuple(BridgeKey(v, a) for v, a in zip(VALIDATORS[:3], ADDRESSES[:3], strict=True))
    fields = {"withdraw_limit_atoms": 1_000 * USDC, "withdraw_period_ms": 10_000, **kw}
    return BridgeParams(EVM_CHAIN, CONTRACT, bridge_keys=keys, **fields)


def bridge_harness(**kw: int) -> Harness:
    return Harness(dataclasses.replace(make_genesis(), bridge=bridge_params(**kw)))


def attest(log_index: int = 0, account: bytes = ALICE, amount: int = 50 * USDC) -> AttestDeposit:
    return AttestDeposit(EVM_CHAIN, TX_HASH, log_index, account, amount)


def refused(h: Harness, signer: bytes, action: object, code: str) -> None:
    """``action`` is refused with ``code`` and changes no state record."""
    before = records(h)
    result = h.one(signer, action)  # type: ignore[arg-type]
    assert result.code == code, result
    assert records(h) == before
    assert h.last is not None
    changed = {k for k, _ in h.last.writes if k[0] in USER_PREFIXES}
    assert changed <= {META_KEY, WINDOW_KEY}


def records(h: Harness) -> list[tuple[bytes, bytes]]:
    """The records an action could change (not the block's meta, markets or nonces)."""
    return [(k, v) for k, v in h.state.entries() if k[0] in USER_PREFIXES]


# balances, positions, orders, asset totals, withdrawals, triggers, the bridge's records
USER_PREFIXES = frozenset({0x01, 0x02, 0x03, 0x09, 0x0A, 0x0B, *range(0x38, 0x40)})


def rebuilt(h: Harness) -> ExchangeState:
    return ExchangeState.from_entries(h.genesis, h.state.entries())


# ---- genesis ----------------------------------------------------------------------------------


def test_genesis_without_bridge_keeps_its_encoding() -> None:
    g = make_genesis()
    assert g.bridge is None and len(g.to_obj()) == len(Genesis.WIRE) - Genesis.OPTIONAL_TAIL
    assert "bridge" not in json.loads(g.to_json())
    with_bridge = dataclasses.replace(g, bridge=bridge_params())
    assert with_bridge.hash() != g.hash()
    assert Genesis.from_wire(with_bridge.to_wire()) == with_bridge
    assert genesis_from_json(with_bridge.to_json()) == with_bridge
    assert genesis_from_json(g.to_json()) == g
    # An absent section is left out, never encoded as nil (one encoding per genesis).
    with pytest.raises(DecodeError, match="left out"):
        Genesis.from_wire(encode([*g.to_obj(), None]))


def test_genesis_bridge_section_defaults_and_errors() -> None:
    data = json.loads(make_genesis().to_json())
    data["bridge"] = {"evm_chain_id": 5, "contract": "0x" + CONTRACT.hex()}
    g = genesis_from_json(json.dumps(data))
    assert g.bridge is not None and g.bridge.confirmations == 12 and g.bridge.bridge_keys == ()
    stranger = (BridgeKey(ALICE, ADDRESSES[0]),)
    twice = (BridgeKey(VALIDATORS[0], ADDRESSES[0]), BridgeKey(VALIDATORS[1], ADDRESSES[0]))
    bad = [
        (dataclasses.replace(bridge_params(), evm_chain_id=0), "bridge.evm_chain_id"),
        (dataclasses.replace(bridge_params(), contract=bytes(20)), "bridge.contract"),
        (dataclasses.replace(bridge_params(), bridge_keys=stranger), "not a genesis validator"),
        (dataclasses.replace(bridge_params(), bridge_keys=twice), "listed twice"),
    ]
    for params, message in bad:
        with pytest.raises(GenesisError, match=message):
            validate_genesis(dataclasses.replace(make_genesis(), bridge=params))


def test_bridge_off_answers_bridge_disabled() -> None:
    h = Harness()
    refused(h, VALIDATORS[0], attest(), codes.BRIDGE_DISABLED)
    refused(h, ALICE, BridgeWithdraw(10 * USDC, RECIPIENT), codes.BRIDGE_DISABLED)
    assert h.state.bridge is None


# ---- deposits ---------------------------------------------------------------------------------


def test_deposit_credited_once_when_more_than_two_thirds_agree() -> None:
    h = bridge_harness()
    start = h.bal(ALICE, 0)[0]
    assert h.one(VALIDATORS[0], attest()).code == "ok"
    assert h.one(VALIDATORS[1], attest()).code == "ok"
    assert h.bal(ALICE, 0)[0] == start  # 2 of 4 equal powers: not more than two thirds
    assert h.one(VALIDATORS[2], attest()).code == "ok"
    assert h.bal(ALICE, 0)[0] == start + 50 * USDC
    assert h.events("deposit_credited")[0]["amount_atoms"] == 50 * USDC
    refused(h, VALIDATORS[3], attest(), codes.DEPOSIT_CREDITED)
    refused(h, VALIDATORS[0], attest(), codes.DEPOSIT_CREDITED)
    assert h.bal(ALICE, 0)[0] == start + 50 * USDC
    dep = h.state.bridge.deposits[deposit_key(EVM_CHAIN, TX_HASH, 0)]  # type: ignore[union-attr]
    assert dep.credited_height == 3 and dep.claims == {}
    audit(h.state)
    assert rebuilt(h).digest() == h.state.digest()


def test_attestations_in_one_block_credit_once() -> None:
    """Four attestations of one deposit in one block: the third credits, the fourth is refused."""
    from tests.state_machine.helpers import tx

    h = bridge_harness()
    start = h.bal(ALICE, 0)[0]
    res = h.block([tx(v, [attest()], h.next_nonce()) for v in VALIDATORS])
    assert [r.actions[0].code for r in res.tx_results] == ["ok", "ok", "ok", "deposit_credited"]
    assert h.bal(ALICE, 0)[0] == start + 50 * USDC
    audit(h.state)


def test_disagreeing_attestations_do_not_add_up() -> None:
    h = bridge_harness()
    assert h.one(VALIDATORS[0], attest(amount=50 * USDC)).code == "ok"
    assert h.one(VALIDATORS[1], attest(amount=60 * USDC)).code == "ok"  # a faulty validator
    assert h.one(VALIDATORS[2], attest(amount=50 * USDC)).code == "ok"
    assert h.events("deposit_credited") == []
    assert h.one(VALIDATORS[3], attest(amount=50 * USDC)).code == "ok"
    assert h.events("deposit_credited")[0]["amount_atoms"] == 50 * USDC
    audit(h.state)


def test_deposit_to_an_unknown_account_credits_it() -> None:
    h = bridge_harness()
    for v in VALIDATORS[:3]:
        assert h.one(v, attest(account=NEWCOMER, amount=7 * USDC)).code == "ok"
    assert h.bal(NEWCOMER, 0) == (7 * USDC, 0)
    audit(h.state)


def test_deposit_refusals_change_nothing() -> None:
    h = bridge_harness(max_pending_deposits=2)
    refused(h, ALICE, attest(), codes.NOT_VALIDATOR)
    refused(h, VALIDATORS[0], dataclasses.replace(attest(), evm_chain_id=1), codes.WRONG_EVM_CHAIN)
    refused(h, VALIDATORS[0], attest(amount=0), codes.INVALID_AMOUNT)
    assert h.one(VALIDATORS[0], attest(0)).code == "ok"
    refused(h, VALIDATORS[0], attest(0), codes.ALREADY_ATTESTED)
    assert h.one(VALIDATORS[0], attest(1)).code == "ok"
    refused(h, VALIDATORS[0], attest(2), codes.TOO_MANY_PENDING)
    # A credit frees the validator's slot; the count survives a rebuild from the entries.
    for v in VALIDATORS[1:3]:
        assert h.one(v, attest(0)).code == "ok"
    assert rebuilt(h).bridge.pending_by_validator[VALIDATORS[0]] == 1  # type: ignore[union-attr]
    assert h.one(VALIDATORS[0], attest(2)).code == "ok"


# ---- withdrawals ------------------------------------------------------------------------------


def test_withdrawal_debits_and_records_the_voucher() -> None:
    h = bridge_harness()
    start = h.bal(ALICE, 0)[0]
    res = h.one(ALICE, BridgeWithdraw(100 * USDC, RECIPIENT))
    assert res.code == "ok" and res.order_id == 1
    assert h.bal(ALICE, 0)[0] == start - 100 * USDC
    w = h.state.bridge.withdrawals[1]  # type: ignore[union-attr]
    assert (w.account, w.amount_atoms, w.recipient, w.status) == (ALICE, 100 * USDC, RECIPIENT, 0)
    assert h.one(BOB, BridgeWithdraw(5 * USDC, RECIPIENT)).order_id == 2
    audit(h.state)
    assert rebuilt(h).digest() == h.state.digest()


def test_withdrawal_refusals_change_nothing() -> None:
    h = bridge_harness(min_withdraw_atoms=2 * USDC)
    refused(h, ALICE, BridgeWithdraw(USDC, RECIPIENT), codes.BELOW_MINIMUM)
    refused(h, ALICE, BridgeWithdraw(10 * USDC, bytes(20)), codes.BAD_BRIDGE_KEY)
    refused(h, NEWCOMER, BridgeWithdraw(10 * USDC, RECIPIENT), "insufficient_balance")


def test_withdrawal_refused_above_free_collateral() -> None:
    a5 = acct(5)
    g = make_genesis()
    g = dataclasses.replace(
        g, balances=(*g.balances, FundedBalance(a5, 0, 1000 * USDC)), bridge=bridge_params()
    )
    h = Harness(g)
    assert h.one(a5, SetLeverage(BTC_PERP, 1, False)).code == "ok"
    assert h.one(a5, limit(BTC_PERP, True, P, 100)).code == "ok"  # 600 USDC of margin
    refused(h, a5, BridgeWithdraw(500 * USDC, RECIPIENT), "insufficient_margin")
    assert h.one(a5, BridgeWithdraw(400 * USDC, RECIPIENT)).code == "ok"
    audit(h.state)


def test_withdrawal_rate_limit_per_period() -> None:
    h = bridge_harness()  # 1,000 USDC per 10 s of block time
    assert h.one(ALICE, BridgeWithdraw(600 * USDC, RECIPIENT)).code == "ok"
    refused(h, BOB, BridgeWithdraw(401 * USDC, RECIPIENT), codes.RATE_LIMITED)
    assert h.one(BOB, BridgeWithdraw(400 * USDC, RECIPIENT)).code == "ok"
    refused(h, BOB, BridgeWithdraw(USDC, RECIPIENT), codes.RATE_LIMITED)
    h.block([], dt_ms=10_000)  # the next period
    assert h.one(BOB, BridgeWithdraw(1_000 * USDC, RECIPIENT)).code == "ok"
    assert rebuilt(h).digest() == h.state.digest()


# ---- vouchers and status ----------------------------------------------------------------------


def test_signatures_recorded_and_signed_at_two_thirds() -> None:
    h = bridge_harness()
    assert h.one(ALICE, BridgeWithdraw(100 * USDC, RECIPIENT)).code == "ok"
    refused(h, ALICE, SignWithdrawal(1, SIG), codes.NOT_VALIDATOR)
    refused(h, VALIDATORS[3], SignWithdrawal(1, SIG), codes.NO_BRIDGE_KEY)  # no key yet
    refused(h, VALIDATORS[0], SignWithdrawal(9, SIG), codes.UNKNOWN_WITHDRAWAL)
    for v in VALIDATORS[:2]:
        assert h.one(v, SignWithdrawal(1, SIG)).code == "ok"
    refused(h, VALIDATORS[0], SignWithdrawal(1, SIG), codes.ALREADY_SIGNED)
    w = h.state.bridge.withdrawals[1]  # type: ignore[union-attr]
    assert w.status == 0
    assert h.one(VALIDATORS[3], RegisterBridgeKey(ADDRESSES[3])).code == "ok"
    assert h.one(VALIDATORS[3], SignWithdrawal(1, SIG)).code == "ok"
    assert w.status == 1 and h.events("withdrawal_status")[0]["status"] == "signed"
    assert w.signatures[VALIDATORS[3]] == (ADDRESSES[3], SIG)
    assert rebuilt(h).digest() == h.state.digest()


def test_register_key_refusals() -> None:
    h = bridge_harness()
    refused(h, ALICE, RegisterBridgeKey(ADDRESSES[3]), codes.NOT_VALIDATOR)
    refused(h, VALIDATORS[3], RegisterBridgeKey(ADDRESSES[0]), codes.BRIDGE_KEY_IN_USE)
    refused(h, VALIDATORS[3], RegisterBridgeKey(bytes(20)), codes.BAD_BRIDGE_KEY)
    # A validator may rotate its own key; the old address is free again.
    assert h.one(VALIDATORS[0], RegisterBridgeKey(ADDRESSES[3])).code == "ok"
    assert h.one(VALIDATORS[1], RegisterBridgeKey(ADDRESSES[0])).code == "ok"
    assert rebuilt(h).digest() == h.state.digest()


def test_status_follows_two_thirds_of_observations_forward_only() -> None:
    h = bridge_harness()
    assert h.one(ALICE, BridgeWithdraw(100 * USDC, RECIPIENT)).code == "ok"
    w = h.state.bridge.withdrawals[1]  # type: ignore[union-attr]
    assert h.one(VALIDATORS[0], AttestWithdrawal(1, OBSERVED_SUBMITTED)).code == "ok"
    assert h.one(VALIDATORS[1], AttestWithdrawal(1, OBSERVED_DISPUTED)).code == "ok"
    assert w.status == 0
    # Disputed implies submitted: three of four saw it on the contract.
    assert h.one(VALIDATORS[2], AttestWithdrawal(1, OBSERVED_DISPUTED)).code == "ok"
    assert w.status == 2
    refused(h, VALIDATORS[3], AttestWithdrawal(1, OBSERVED_SUBMITTED), codes.STATUS_NOT_LATER)
    refused(h, VALIDATORS[2], AttestWithdrawal(1, OBSERVED_DISPUTED), codes.STATUS_NOT_LATER)
    assert h.one(VALIDATORS[3], AttestWithdrawal(1, OBSERVED_DISPUTED)).code == "ok"
    assert w.status == 3
    # Unfrozen without invalidating it: finalised after all.
    for v in VALIDATORS[:3]:
        assert h.one(v, AttestWithdrawal(1, OBSERVED_FINALISED)).code == "ok"
    assert w.status == 4
    refused(h, VALIDATORS[3], AttestWithdrawal(1, OBSERVED_DISPUTED), codes.STATUS_NOT_LATER)
    refused(h, ALICE, AttestWithdrawal(1, OBSERVED_FINALISED), codes.NOT_VALIDATOR)
    refused(h, VALIDATORS[0], AttestWithdrawal(7, OBSERVED_FINALISED), codes.UNKNOWN_WITHDRAWAL)
    assert rebuilt(h).digest() == h.state.digest()


def test_writes_match_entries_after_bridge_blocks() -> None:
    """The storage applies write sets: they must build the same state as ``entries()``."""
    h = bridge_harness()
    stored = dict(h.state.entries())
    for action, signer in [
        (attest(), VALIDATORS[0]),
        (BridgeWithdraw(10 * USDC, RECIPIENT), ALICE),
        (SignWithdrawal(1, SIG), VALIDATORS[1]),
        (attest(), VALIDATORS[1]),
        (attest(), VALIDATORS[2]),
        (AttestWithdrawal(1, OBSERVED_SUBMITTED), VALIDATORS[2]),
    ]:
        assert h.one(signer, action).code == "ok"  # type: ignore[arg-type]
        assert h.last is not None
        for k, v in h.last.writes:
            if v is None:
                stored.pop(k, None)
            else:
                stored[k] = v
        assert sorted(stored.items()) == h.state.entries()
