"""The order tools through the node's read side, on a real node (store open, blocks run by its
own execution path) served by hypercorn in-process: a TWAP and an order with a good-til time
and an attached TP/SL in the open-order listing, their events under their transaction, the
WebSocket account stream carrying the TWAP and group lists (their proofs are checked on a
localnet: tests/e2e/test_localnet_order_tools.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from trio_websocket import open_websocket_url

from node.api.app import build_app
from node.node import now_ms
from state_machine.tx import (
    KIND_LIMIT,
    TIF_GTC,
    PlaceOrder,
    PlaceOrderExtended,
    PlaceTwap,
    Transaction,
    sign_transaction,
)
from tests.node.test_api_pieces import ALICE, BOB, GENESIS
from tests.node.test_api_served import execute_block, message, opened_node, send, served, ws_url

BTC_PERP = 2
ALICE_ADDRESS = ALICE.public_key.hex()


def signed(key: Any, nonce: int, *actions: Any) -> Transaction:
    return sign_transaction(key, GENESIS.chain_id, nonce, list(actions))


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["kind"] for e in events]


async def test_twaps_and_tpsl_groups_are_listed_streamed_and_attributed(tmp_path: Path) -> None:
    nonce = now_ms()
    ask = signed(BOB, nonce, PlaceOrder(BTC_PERP, False, KIND_LIMIT, TIF_GTC, 6_000_000, 1_000))
    twap = signed(ALICE, nonce + 1, PlaceTwap(BTC_PERP, True, 100, 5 * 60_000))
    good_til = nonce + 3_600_000
    bid = PlaceOrder(BTC_PERP, True, KIND_LIMIT, TIF_GTC, 5_900_000, 10)
    ext = signed(ALICE, nonce + 2, PlaceOrderExtended(bid, good_til, 6_300_000, 5_700_000))
    with opened_node(tmp_path) as n:
        async with (
            served(build_app(n)) as (base, _),
            httpx.AsyncClient(base_url=base) as http,
            open_websocket_url(ws_url(base)) as ws,
        ):
            await send(ws, op="subscribe", id=1, channel="account", address=ALICE_ADDRESS)
            snapshot = (await message(ws))["data"]
            assert (snapshot["twaps"], snapshot["tpsl_groups"]) == ([], [])

            await execute_block(n, [ask.to_wire(), twap.to_wire(), ext.to_wire()])
            tx = (await http.get(f"/v1/txs/{twap.tx_id().hex()}")).json()
            twap_id = tx["results"][0]["order_id"]
            assert tx["results"][0]["status"] == "running"
            # The first slice (10 lots of 100) is placed in the accepting block.
            assert kinds(tx["events"]) == [
                "twap_accepted",
                "order_accepted",
                "fill",
                "twap_slice",
            ]
            slice_event = tx["events"][-1]
            assert (slice_event["size"], slice_event["twap_filled"]) == ("0.001", "0.001")

            tx = (await http.get(f"/v1/txs/{ext.tx_id().hex()}")).json()
            assert tx["results"][0]["action"] == "place_order_extended"
            order_id = tx["results"][0]["order_id"]
            assert kinds(tx["events"]) == ["order_accepted", "order_rested", "tpsl_accepted"]
            group_id = tx["events"][-1]["group_id"]

            body = (await http.get(f"/v1/accounts/{ALICE_ADDRESS}/orders")).json()
            (order,) = body["orders"]
            assert (order["order_id"], order["good_til_ms"]) == (order_id, good_til)
            (listed_twap,) = body["twaps"]
            assert listed_twap["twap_id"] == twap_id
            assert (listed_twap["size"], listed_twap["filled"]) == ("0.01", "0.001")
            assert (listed_twap["slices_done"], listed_twap["slices_total"]) == (1, 10)
            assert body["tpsl_groups"] == [
                {
                    "group_id": group_id,
                    "market": "BTC-PERP",
                    "position_side": "long",
                    "status": "pending",
                    "parent_order_id": order_id,
                    "take_profit_price": "63000",
                    "stop_loss_price": "57000",
                    "take_profit_order_id": None,
                    "stop_loss_order_id": None,
                }
            ]
            update = (await message(ws))["data"]
            assert {"twap_accepted", "twap_slice", "tpsl_accepted"} <= set(kinds(update["events"]))
            assert update["twaps"] == body["twaps"]
            assert update["tpsl_groups"] == body["tpsl_groups"]
            assert update["orders"] == body["orders"]
