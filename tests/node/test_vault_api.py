"""The liquidation vault in the API (``GET /v1/vault``) and in the metrics, on a real server
with blocks executed by the node's own execution path: a 50x long is taken over by the vault,
then a further fall puts the vault under water and it is closed out in that block."""

from __future__ import annotations

from pathlib import Path

import httpx

from node.api.app import build_app
from node.node import now_ms
from state_machine.genesis import Parameters, default_genesis
from state_machine.tx import (
    KIND_LIMIT,
    TIF_GTC,
    OraclePrice,
    OracleUpdate,
    PlaceOrder,
    SetLeverage,
    sign_transaction,
)
from tests.node.test_api_pieces import ALICE, BOB, VALIDATOR, sample
from tests.node.test_api_served import execute_block, opened_node, served

USDC = 10**6
BTC_PERP = 2
GENESIS = default_genesis(
    "perpbft-test",
    [(VALIDATOR.public_key, 1)],
    [(ALICE.public_key, 0, 10**6 * USDC), (BOB.public_key, 0, 1_000 * USDC)],
    parameters=Parameters(insurance_fund_atoms=10_000 * USDC),
)


def signed(key: object, nonce: int, *actions: object) -> bytes:
    return sign_transaction(key, GENESIS.chain_id, nonce, list(actions)).to_wire()  # type: ignore[arg-type]


def oracle(nonce: int, price_ticks: int) -> bytes:
    return signed(VALIDATOR, nonce, OracleUpdate((OraclePrice(BTC_PERP, price_ticks),)))


async def test_vault_route_and_metrics_follow_a_takeover_and_a_close_out(tmp_path: Path) -> None:
    with opened_node(tmp_path, GENESIS) as n:
        async with (
            served(build_app(n)) as (base, _),
            httpx.AsyncClient(base_url=base) as http,
        ):
            start = (await http.get("/v1/vault")).json()
            assert start["address"] == "00" * 32
            assert start["insurance_fund"] == start["equity"] == "10000"
            assert start["positions"] == [] and start["under_water"] is False
            assert start["exposure_cap_per_market"] == "2000000"
            assert start["loss_limit_ppm"] == 200_000 and start["loss_limit_equity"] == "8000"

            nonce = now_ms()
            await execute_block(n, [signed(BOB, nonce, SetLeverage(BTC_PERP, 50, False))])
            assert sample(n.metrics, "perpbft_vault_equity_usdc") == 10_000
            assert sample(n.metrics, "perpbft_vault_loss_limit_equity_usdc") == 8_000
            sell = PlaceOrder(BTC_PERP, False, KIND_LIMIT, TIF_GTC, 6_000_000, 7_000)
            buy = PlaceOrder(BTC_PERP, True, KIND_LIMIT, TIF_GTC, 6_000_000, 7_000)
            await execute_block(n, [signed(ALICE, nonce + 1, sell)])
            await execute_block(n, [signed(BOB, nonce + 2, buy)])
            await execute_block(n, [oracle(nonce + 3, 5_895_000)])  # BOB: below 2/3 of MM
            held = (await http.get("/v1/vault")).json()
            (pos,) = held["positions"]
            assert (pos["market"], pos["side"], pos["size"]) == ("BTC-PERP", "long", "0.7")
            assert (pos["entry_price"], pos["notional"]) == ("58950", "41265")
            assert held["equity"] == "10206.325"  # the fund and the 0.5 % takeover fee
            assert held["maintenance_margin"] == "412.65" and held["under_water"] is False
            assert held["high_water"] == "10206.325" and held["over_loss_limit"] is False
            exposure = "perpbft_vault_exposure_notional_usdc"
            assert sample(n.metrics, exposure, market="BTC-PERP") == 41_265
            assert sample(n.metrics, "perpbft_vault_maintenance_margin_usdc") == 412.65

            # -15,000 USDC on 0.7 BTC: far below zero; no bids, so the short is ADL'd
            await execute_block(n, [oracle(nonce + 4, 3_700_000)])
            out = (await http.get("/v1/vault")).json()
            assert out["positions"] == [] and out["under_water"] is False
            assert float(out["equity"]) >= 0
            assert sample(n.metrics, exposure, market="BTC-PERP") == 0
            assert sample(n.metrics, "perpbft_vault_under_water") == 0
            assert sample(n.metrics, "perpbft_vault_equity_usdc") >= 0
            ledger = (await http.get(f"/v1/accounts/{ALICE.public_key.hex()}/ledger")).json()
            kinds = [item["kind"] for item in ledger["ledger"]]
            assert "vault_adl" in kinds
