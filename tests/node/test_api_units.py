"""Decimal strings at the edge, and the JSON form of transactions."""

from __future__ import annotations

import json
from fractions import Fraction
from typing import Any

import pytest

from node.api.txjson import TxJsonError, transaction_from_json, transaction_to_json
from node.api.units import (
    MarketUnits,
    UnitError,
    atoms_to_decimal,
    decimal_to_atoms,
    format_fraction,
    parse_decimal,
)
from state_machine.crypto import Keypair
from state_machine.genesis import default_genesis
from state_machine.tx import (
    KIND_LIMIT,
    TIF_GTC,
    Action,
    CancelAll,
    OraclePrice,
    OracleUpdate,
    PlaceOrder,
    Transaction,
    Transfer,
    sign_transaction,
)

KEY = Keypair(b"\x05" * 32)
GENESIS = default_genesis("perpbft-test", [(KEY.public_key, 1)])
UNITS = {m.market_id: MarketUnits(GENESIS, m) for m in GENESIS.markets}
BTC_PERP = UNITS[2]


def test_parse_decimal_exact_and_strict() -> None:
    assert parse_decimal("60000.25", "p") == Fraction(6000025, 100)
    assert parse_decimal("0", "p") == 0
    for bad in ["", "1e5", "-1", "+1", " 1", "1.", ".5", "01", "1,5", "NaN", "1" * 40, 1.5]:
        with pytest.raises(UnitError) as info:
            parse_decimal(bad, "p")
        assert info.value.code == "bad_decimal"


def test_btc_market_units() -> None:
    assert BTC_PERP.tick_text() == "0.01" and BTC_PERP.lot_text() == "0.0001"
    assert BTC_PERP.price_to_ticks("60000.25") == 6_000_025
    assert BTC_PERP.size_to_lots("0.0123") == 123
    assert BTC_PERP.ticks_to_price(6_000_025) == "60000.25"
    assert BTC_PERP.lots_to_size(123) == "0.0123"
    with pytest.raises(UnitError) as info:
        BTC_PERP.price_to_ticks("60000.255")
    assert info.value.code == "tick_size"
    with pytest.raises(UnitError) as info:
        BTC_PERP.size_to_lots("0.00001")
    assert info.value.code == "lot_size"
    with pytest.raises(UnitError) as info:
        BTC_PERP.price_to_ticks("999999999999")
    assert info.value.code == "price_too_high"


def test_atoms() -> None:
    assert atoms_to_decimal(1_500_000, 6) == "1.5"
    assert decimal_to_atoms("1.000001", 6) == 1_000_001
    with pytest.raises(UnitError) as info:
        decimal_to_atoms("1.0000001", 6)
    assert info.value.code == "too_many_decimals"
    assert format_fraction(Fraction(1, 3), 4) == "0.3333"


def signed(actions: list[Action]) -> Transaction:
    return sign_transaction(KEY, "perpbft-test", 1_800_000_000_000, actions)


def test_json_roundtrip_every_action_kind() -> None:
    actions: list[Action] = [
        PlaceOrder(2, True, KIND_LIMIT, TIF_GTC, 6_000_025, 123, client_id=7),
        CancelAll(None),
        CancelAll(3),
        Transfer(b"\x09" * 32, 0, 10**6),
        OracleUpdate((OraclePrice(2, 6_000_000), OraclePrice(3, 300_000))),
    ]
    tx = signed(actions)
    text = json.dumps(transaction_to_json(tx))
    back = transaction_from_json(json.loads(text), UNITS.get)
    assert back == tx and back.signature_valid()


def test_json_decimal_aliases_convert_exactly() -> None:
    tx = signed([PlaceOrder(2, False, KIND_LIMIT, TIF_GTC, 6_000_025, 123)])
    body = transaction_to_json(tx)
    order = body["actions"][0]
    del order["price_ticks"], order["size_lots"]
    order["price"], order["size"] = "60000.25", "0.0123"
    body["nonce"] = str(body["nonce"])
    assert transaction_from_json(body, UNITS.get) == tx


@pytest.mark.parametrize(
    ("mutate", "code", "text"),
    [
        (lambda b: b["actions"][0].update(price="60000.255"), "tick_size", "multiple of the tick"),
        (lambda b: b["actions"][0].update(size="0.00001"), "lot_size", "multiple of the lot"),
        (lambda b: b["actions"][0].update(market_id=99), "unknown_market", "unknown market"),
        (lambda b: b["actions"][0].update(type="launch_rocket"), "malformed", "type"),
        (lambda b: b["actions"][0].update(is_buy="yes"), "malformed", "is_buy"),
        (lambda b: b["actions"][0].update(extra=1), "malformed", "unknown field"),
        (lambda b: b.update(signer="zz"), "malformed", "not valid hex"),
        (lambda b: b.update(signature="00"), "malformed", "expected 64 bytes"),
        (lambda b: b.update(nonce=-5), "malformed", "nonce"),
        (lambda b: b.update(actions="all"), "malformed", "actions"),
        (lambda b: b.pop("chain_id"), "malformed", "missing field"),
    ],
)
def test_json_rejections_are_specific(mutate: Any, code: str, text: str) -> None:
    tx = signed([PlaceOrder(2, False, KIND_LIMIT, TIF_GTC, 6_000_025, 123)])
    body = transaction_to_json(tx)
    order = body["actions"][0]
    del order["price_ticks"], order["size_lots"]
    order["price"], order["size"] = "60000.25", "0.0123"
    mutate(body)
    with pytest.raises(TxJsonError) as info:
        transaction_from_json(body, UNITS.get)
    assert info.value.code == code
    assert text in info.value.message
