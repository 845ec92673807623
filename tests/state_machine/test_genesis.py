"""Genesis: JSON round trip, canonical hash, strict validation naming the field."""

from __future__ import annotations

import dataclasses
import json

import pytest

from state_machine.genesis import (
    GenesisError,
    MarginTier,
    Parameters,
    default_genesis,
    genesis_from_json,
    genesis_from_wire,
)
from tests.state_machine.helpers import make_genesis


def test_default_genesis_round_trips_through_json_and_wire() -> None:
    g = make_genesis()
    text = g.to_json()
    assert genesis_from_json(text) == g
    assert genesis_from_wire(g.to_wire()) == g
    assert genesis_from_json(text).hash() == g.hash()
    data = json.loads(text)
    assert data["markets"][2]["symbol"] == "BTC-PERP" and data["markets"][2]["kind"] == "perp"
    assert [m["symbol"] for m in data["markets"]] == [
        "BTC/USDC",
        "ETH/USDC",
        "BTC-PERP",
        "ETH-PERP",
    ]
    assert data["assets"][0] == {"asset_id": 0, "symbol": "USDC", "decimals": 6}


def test_hash_covers_every_field() -> None:
    g = make_genesis()
    g2 = dataclasses.replace(g, genesis_time_ms=g.genesis_time_ms + 1)
    m = dataclasses.replace(g.markets[0], taker_fee_ppm=451)
    g3 = dataclasses.replace(g, markets=(m, *g.markets[1:]))
    assert len({g.hash(), g2.hash(), g3.hash()}) == 3
    assert len(g.hash()) == 32


def test_parameters_may_be_omitted() -> None:
    data = json.loads(make_genesis().to_json())
    del data["parameters"]["mark_ema_ms"]
    g = genesis_from_json(json.dumps(data))
    assert g.parameters.mark_ema_ms == Parameters().mark_ema_ms


def _mutated(fn) -> str:
    data = json.loads(make_genesis().to_json())
    fn(data)
    return json.dumps(data)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["markets"][0].update(foo=1), "markets[0].foo: unknown field"),
        (lambda d: d["markets"][1].pop("tick_lot_atoms"), "markets[1].tick_lot_atoms: missing"),
        (lambda d: d["markets"][0].update(lot_base_atoms="7"), "markets[0].lot_base_atoms"),
        (lambda d: d["markets"][0].update(lot_base_atoms=1.5), "markets[0].lot_base_atoms"),
        (lambda d: d["markets"][0].update(lot_base_atoms=True), "markets[0].lot_base_atoms"),
        (lambda d: d["markets"][0].update(kind="future"), "markets[0].kind"),
        (lambda d: d["validators"][0].update(pubkey="abcd"), "validators[0].pubkey"),
        (lambda d: d["validators"][0].update(pubkey="zz" * 32), "validators[0].pubkey"),
        (lambda d: d["markets"][1].update(market_id=0), "markets[1].market_id: duplicate"),
        (lambda d: d["markets"][2].update(quote_asset_id=2), "markets[2].quote_asset_id"),
        (lambda d: d["markets"][2]["margin_tiers"][1].update(mmr_ppm=1), "margin_tiers[1].mmr"),
        (
            lambda d: d["markets"][2]["margin_tiers"][0].update(mmr_ppm=20_000),
            "markets[2].margin_tiers[0].mmr_ppm",
        ),
        (lambda d: d["markets"][0].update(max_order_lots=2**40), "markets[0].max_order_lots"),
        (lambda d: d["markets"][0].update(maker_fee_ppm=10_000), "markets[0].maker_fee_ppm"),
        (lambda d: d["assets"][0].update(decimals=8), "assets"),
        (lambda d: d.update(validators=[]), "validators"),
        (lambda d: d["balances"].append(dict(d["balances"][0])), "balances[12]"),
        (lambda d: d["balances"][0].update(asset_id=9), "balances[0].asset_id"),
        (lambda d: d.update(chain_id="Bad Chain"), "chain_id"),
        (lambda d: d["parameters"].update(funding_interval_ms=0), "parameters.funding_interval"),
        (lambda d: d["parameters"].update(vault_loss_limit_ppm=0), "parameters.vault_loss_limit"),
        (
            lambda d: d["parameters"].update(vault_loss_limit_ppm=1_000_001),
            "parameters.vault_loss_limit_ppm",
        ),
        (
            lambda d: d["parameters"].update(vault_market_notional_max_atoms=2**60 + 1),
            "parameters.vault_market_notional_max_atoms",
        ),
    ],
)
def test_invalid_genesis_names_the_field(mutate, field) -> None:
    with pytest.raises(GenesisError) as info:
        genesis_from_json(_mutated(mutate))
    assert field in str(info.value)


def test_invalid_json_is_a_genesis_error() -> None:
    with pytest.raises(GenesisError, match="invalid JSON"):
        genesis_from_json("{")


def test_default_genesis_explicit_balances_and_tiers() -> None:
    g = default_genesis("c", [(b"\x01" * 32, 5)], [(b"\x02" * 32, 0, 7)])
    assert [(b.account, b.asset_id, b.amount_atoms) for b in g.balances] == [(b"\x02" * 32, 0, 7)]
    btc_perp = g.markets[2]
    # Tier 0 maintenance rate is half the initial rate at max leverage (1/50 / 2 = 1 %).
    assert btc_perp.margin_tiers[0] == MarginTier(0, 10_000)
    assert btc_perp.is_perp and not g.markets[0].is_perp
