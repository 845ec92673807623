"""Waiting stop / take-profit orders through the node's read side: the open-order listing, the
account's counts, a transaction's events, the account WebSocket stream and the trader CLI's
tables, on a real node (store open, blocks run by its own execution path) served by hypercorn
in-process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from cli.main import main as cli_main
from node.api.app import build_app
from node.api.txevents import ORDER_EVENTS
from node.keys import write_key_file
from node.node import now_ms
from state_machine.results import EVENT_FIELDS
from state_machine.tx import (
    KIND_LIMIT,
    KIND_STOP_MARKET,
    KIND_TAKE_PROFIT_LIMIT,
    TIF_GTC,
    TIF_IOC,
    CancelAll,
    PlaceOrder,
    Transaction,
    sign_transaction,
)
from tests.node.test_api_pieces import ALICE, BOB, GENESIS
from tests.node.test_api_served import (
    execute_block,
    message,
    opened_node,
    send,
    served,
    ws_url,
)

BTC_PERP = 2
ALICE_ADDRESS = ALICE.public_key.hex()


def signed(key: Any, nonce: int, *actions: Any) -> Transaction:
    return sign_transaction(key, GENESIS.chain_id, nonce, list(actions))


def stop_sell(trigger_ticks: int, lots: int) -> PlaceOrder:
    return PlaceOrder(BTC_PERP, False, KIND_STOP_MARKET, TIF_GTC, 0, lots, trigger_ticks)


async def cli(*argv: str) -> int:
    """The trader CLI in a worker thread (its HTTP client blocks; the server runs here)."""
    code: int = await trio.to_thread.run_sync(cli_main, list(argv))
    return code


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["kind"] for e in events]


async def test_waiting_triggers_are_open_orders_and_their_events_are_served(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nonce = now_ms()
    waiting = signed(
        ALICE,
        nonce,
        stop_sell(5_900_000, 10),
        PlaceOrder(
            BTC_PERP, False, KIND_TAKE_PROFIT_LIMIT, TIF_GTC, 6_290_000, 20, 6_300_000,
            client_id=7,
        ),
    )  # fmt: skip
    with opened_node(tmp_path) as n:
        async with (
            served(build_app(n)) as (base, _),
            httpx.AsyncClient(base_url=base) as http,
            open_websocket_url(ws_url(base)) as ws,
        ):
            await send(ws, op="subscribe", id=1, channel="account", address=ALICE_ADDRESS)
            assert (await message(ws))["data"]["orders"] == []

            # 1. Two triggers start waiting (the mark is at the genesis 60000).
            await execute_block(n, [waiting.to_wire()])
            tx = (await http.get(f"/v1/txs/{waiting.tx_id().hex()}")).json()
            assert [r["status"] for r in tx["results"]] == ["waiting", "waiting"]
            stop_id, take_id = (r["order_id"] for r in tx["results"])
            assert kinds(tx["events"]) == ["trigger_accepted", "trigger_accepted"]
            stop_event = tx["events"][0]
            assert stop_event["order_id"] == stop_id and stop_event["order_kind"] == 2
            assert (stop_event["trigger_price"], stop_event["price"]) == ("59000", "0")
            assert (stop_event["size"], stop_event["reduce_only"]) == ("0.001", False)
            assert (tx["events"][1]["client_id"], tx["events"][1]["price"]) == (7, "62900")

            orders = (await http.get(f"/v1/accounts/{ALICE_ADDRESS}/orders")).json()["orders"]
            assert orders == [
                {
                    "order_id": stop_id,
                    "client_id": 0,
                    "market": "BTC-PERP",
                    "side": "sell",
                    "price": None,
                    "size": "0.001",
                    "filled": "0",
                    "original_size": "0.001",
                    "tif": TIF_IOC,
                    "kind": KIND_STOP_MARKET,
                    "reduce_only": False,
                    "timestamp_ms": orders[0]["timestamp_ms"],
                    "status": "waiting",
                    "trigger_kind": "stop",
                    "trigger_price": "59000",
                    "trigger_condition": "mark_at_or_below",
                    "good_til_ms": None,
                },
                {
                    "order_id": take_id,
                    "client_id": 7,
                    "market": "BTC-PERP",
                    "side": "sell",
                    "price": "62900",
                    "size": "0.002",
                    "filled": "0",
                    "original_size": "0.002",
                    "tif": TIF_GTC,
                    "kind": KIND_TAKE_PROFIT_LIMIT,
                    "reduce_only": False,
                    "timestamp_ms": orders[1]["timestamp_ms"],
                    "status": "waiting",
                    "trigger_kind": "take_profit",
                    "trigger_price": "63000",
                    "trigger_condition": "mark_at_or_above",
                    "good_til_ms": None,
                },
            ]
            account = (await http.get(f"/v1/accounts/{ALICE_ADDRESS}")).json()
            assert (account["open_orders"], account["waiting_triggers"]) == (2, 2)
            update = await message(ws)
            assert kinds(update["data"]["events"]) == ["trigger_accepted", "trigger_accepted"]
            assert update["data"]["orders"] == orders
            assert update["data"]["account"]["open_orders"] == 2

            # The CLI's tables show them, and amend refuses one with a reason.
            capsys.readouterr()
            assert await cli("order", "list", ALICE_ADDRESS, "--node", base) == 0
            table = capsys.readouterr().out
            assert "waiting" in table and "mark <= 59000" in table and "mark >= 63000" in table
            assert "stop market" in table and "take-profit limit" in table
            assert await cli("account", ALICE_ADDRESS, "--node", base) == 0
            assert "of which waiting triggers" in capsys.readouterr().out
            key_file = tmp_path / "alice.json"
            write_key_file(key_file, ALICE)
            amend = ("order", "amend", "BTC-PERP", str(stop_id), "--size", "0.002")
            assert await cli(*amend, "--key", str(key_file), "--node", base) == 1
            assert "waiting stop order" in capsys.readouterr().err

            # 2. A stop placed through the mark fires in its own block: the transaction shows
            # the trigger, the order it placed and its fill.
            ask = signed(
                BOB, nonce + 1, PlaceOrder(BTC_PERP, False, KIND_LIMIT, TIF_GTC, 6_000_000, 10)
            )
            through = signed(
                ALICE,
                nonce + 2,
                PlaceOrder(BTC_PERP, True, KIND_STOP_MARKET, TIF_GTC, 0, 10, 5_950_000),
            )
            await execute_block(n, [ask.to_wire(), through.to_wire()])
            tx = (await http.get(f"/v1/txs/{through.tx_id().hex()}")).json()
            assert kinds(tx["events"]) == [
                "trigger_accepted",
                "order_accepted",
                "fill",
                "trigger_fired",
            ]
            fired = tx["events"][-1]
            assert fired["trigger_id"] == tx["results"][0]["order_id"] and fired["code"] == "ok"
            assert fired["order_id"] == tx["events"][1]["order_id"] and fired["filled"] == "0.001"
            update = await message(ws)
            assert "trigger_fired" in kinds(update["data"]["events"])
            assert [o["order_id"] for o in update["data"]["orders"]] == [stop_id, take_id]

            # 3. Cancel-all takes both waiting triggers, and says so in its events.
            cancel = signed(ALICE, nonce + 3, CancelAll(None))
            await execute_block(n, [cancel.to_wire()])
            tx = (await http.get(f"/v1/txs/{cancel.tx_id().hex()}")).json()
            assert tx["results"][0]["count"] == 2
            assert [(e["kind"], e["order_id"], e["reason"]) for e in tx["events"]] == [
                ("trigger_cancelled", stop_id, "user"),
                ("trigger_cancelled", take_id, "user"),
            ]
            assert (await http.get(f"/v1/accounts/{ALICE_ADDRESS}/orders")).json()["orders"] == []
            account = (await http.get(f"/v1/accounts/{ALICE_ADDRESS}")).json()
            assert (account["open_orders"], account["waiting_triggers"]) == (0, 0)
            update = await message(ws)
            assert kinds(update["data"]["events"]) == ["trigger_cancelled", "trigger_cancelled"]
            assert update["data"]["orders"] == []


def test_event_fields_keep_their_names_in_the_json_form() -> None:
    """An event's JSON form puts ``kind``, ``height``, ``timestamp_ms``, ``cursor`` and
    ``market`` next to its fields and drops the ``_ticks``/``_lots``/``_atoms`` suffixes: no
    field may collide with those or with another field (``trigger_accepted`` once named its
    order kind ``kind``, and its JSON then said ``"kind": 2``)."""
    reserved = {"kind", "height", "timestamp_ms", "cursor", "market"}
    for kind, names in EVENT_FIELDS.items():
        shown = [
            n.removesuffix("_ticks").removesuffix("_lots").removesuffix("_atoms") for n in names
        ]
        assert len(set(shown)) == len(shown), kind
        assert not reserved & set(shown), kind
    assert {"trigger_accepted", "trigger_cancelled"} <= set(ORDER_EVENTS)
