"""The public API of a real 4-validator cluster: orders over HTTP (msgpack and JSON), reads,
WebSocket streams, account proofs checked by the light client, bad input, metrics, health.

One cluster serves the whole module (starting one costs seconds); each test uses its own demo
accounts so they do not see each other's orders. The last test stops a validator.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from trio_websocket import open_websocket_url

from cli.lightclient import verify_account_proof
from consensus.quorum import qc_valid
from consensus.types import BlockHeader, QuorumCert, genesis_block
from consensus.validators import ValidatorSet
from node.config import init_home, load_config
from state_machine.codec import encode
from state_machine.crypto import Keypair
from state_machine.genesis import Genesis, genesis_from_json
from state_machine.tx import (
    KIND_LIMIT,
    TIF_GTC,
    PlaceOrder,
    Transaction,
    Transfer,
    sign_transaction,
)
from state_machine.txroot import leaf_hash, verify_inclusion
from tests.cluster import Cluster

pytestmark = pytest.mark.slow

BTC_PERP = 2
ETH_PERP = 3
VIEW_TIMEOUT_MS = 1_000
_nonce_ms = [0]


def next_nonce() -> int:
    """Fresh, increasing millisecond nonces (one signer may sign twice in a millisecond)."""
    _nonce_ms[0] = max(_nonce_ms[0] + 1, int(time.time() * 1000))
    return _nonce_ms[0]


def short_view_timeouts(cluster: Cluster) -> None:
    """A stopped validator's views time out in about a second instead of two."""
    for home in cluster.layout.homes:
        config = load_config(home)
        consensus = dataclasses.replace(config.consensus, view_timeout_base_ms=VIEW_TIMEOUT_MS)
        init_home(home, force=True, config=dataclasses.replace(config, consensus=consensus))


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("api"))
    try:
        short_view_timeouts(cluster)
        cluster.start_all()
        cluster.wait_height(2)
        yield cluster
    finally:
        cluster.close()


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def genesis_of(cluster: Cluster) -> Genesis:
    return genesis_from_json((cluster.layout.out / "genesis.json").read_text())


def order(
    key: Keypair, chain_id: str, is_buy: bool, price_ticks: int, lots: int, market: int = BTC_PERP
) -> Transaction:
    action = PlaceOrder(market, is_buy, KIND_LIMIT, TIF_GTC, price_ticks, lots)
    return sign_transaction(key, chain_id, next_nonce(), [action])


def json_form(tx: Transaction, price: str, size: str) -> dict[str, Any]:
    """The documented JSON form of a one-order transaction, written out field by field."""
    a = tx.actions[0]
    assert isinstance(a, PlaceOrder)
    return {
        "version": tx.version,
        "chain_id": tx.chain_id,
        "signer": tx.signer.hex(),
        "nonce": str(tx.nonce),
        "expires_at_ms": tx.expires_at_ms,
        "actions": [
            {
                "type": "place_order",
                "market_id": a.market_id,
                "is_buy": a.is_buy,
                "kind": a.kind,
                "tif": a.tif,
                "price": price,
                "size": size,
                "trigger_price_ticks": 0,
                "reduce_only": False,
                "client_id": 0,
                "stp": 0,
            }
        ],
        "signature": tx.signature.hex(),
    }


def post_json(cluster: Cluster, i: int, body: Any, wait: bool = True) -> httpx.Response:
    params = {"wait": "commit"} if wait else {}
    return cluster.http.post(cluster.api(i) + "/v1/txs", json=body, params=params, timeout=40.0)


def committed(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == "committed"
    return body


# ---- orders in, state out ------------------------------------------------------------------


def test_orders_over_http_read_back_everywhere(net: Cluster) -> None:
    maker, taker = net.demo_key(0), net.demo_key(1)
    rest = order(maker, net.chain_id, True, 5_999_000, 10)  # buy 0.001 BTC at 59,990.00
    first = committed(net.submit(0, rest.to_wire()))
    assert first["tx_id"] == rest.tx_id().hex()
    [placed] = first["results"]
    assert (placed["code"], placed["status"], placed["filled"]) == ("ok", "resting", "0")
    maker_oid = placed["order_id"]
    kinds = [e["kind"] for e in first["events"]]
    assert kinds == ["order_accepted", "order_rested"]

    book = net.get(2, "/v1/markets/BTC-PERP/book", depth=5)
    assert ["59990", "0.001", 1] in book["bids"]
    orders = net.get(3, f"/v1/accounts/{maker.public_key.hex()}/orders")["orders"]
    assert [(o["order_id"], o["price"], o["size"]) for o in orders] == [
        (maker_oid, "59990", "0.001")
    ]

    # The crossing sell goes in as JSON with decimal strings; it signs the same wire bytes.
    cross = order(taker, net.chain_id, False, 5_999_000, 4)
    second = committed(post_json(net, 1, json_form(cross, "59990", "0.0004")))
    assert second["tx_id"] == cross.tx_id().hex()
    [taken] = second["results"]
    assert (taken["code"], taken["status"], taken["filled"]) == ("ok", "filled", "0.0004")
    [fill] = [e for e in second["events"] if e["kind"] == "fill"]
    assert (fill["maker_order_id"], fill["price"], fill["size"]) == (maker_oid, "59990", "0.0004")

    net.wait_height(second["height"])
    for i in range(4):  # every node answers the same
        fills = net.get(i, f"/v1/accounts/{maker.public_key.hex()}/fills")["fills"]
        assert [(f["maker_order_id"], f["size"]) for f in fills] == [(maker_oid, "0.0004")]
        account = net.get(i, f"/v1/accounts/{maker.public_key.hex()}")
        [position] = account["positions"]
        assert (position["market"], position["side"], position["size"]) == (
            "BTC-PERP",
            "long",
            "0.0004",
        )
        assert position["entry_price"] == "59990"
        assert position["margin_mode"] == "cross"
        remaining = net.get(i, f"/v1/accounts/{maker.public_key.hex()}/orders")["orders"]
        assert [(o["size"], o["filled"]) for o in remaining] == [("0.0006", "0.0004")]
        taker_fills = net.get(i, f"/v1/accounts/{taker.public_key.hex()}/fills")["fills"]
        assert [f["taker_order_id"] for f in taker_fills] == [taken["order_id"]]
    # The fill is in both ledgers; the funding lists answer (settlements come hourly).
    for who, order_id in ((maker, maker_oid), (taker, taken["order_id"])):
        ledger = net.get(2, f"/v1/accounts/{who.public_key.hex()}/ledger")
        assert ledger["address"] == who.public_key.hex()
        fills = [e for e in ledger["ledger"] if e["kind"] == "fill"]
        assert [(f["height"], f["size"]) for f in fills] == [(second["height"], "0.0004")]
        assert order_id in (fills[0]["maker_order_id"], fills[0]["taker_order_id"])
        funding = net.get(2, f"/v1/accounts/{who.public_key.hex()}/funding")
        assert isinstance(funding["funding"], list) and "next_cursor" in funding
    market_funding = net.get(2, "/v1/markets/BTC-PERP/funding", limit=10)
    assert market_funding["market"] == "BTC-PERP"
    assert all(e["kind"] == "funding" for e in market_funding["funding"])
    trades = net.get(0, "/v1/markets/BTC-PERP/trades", limit=5)["trades"]
    assert (trades[0]["price"], trades[0]["size"], trades[0]["taker_side"]) == (
        "59990",
        "0.0004",
        "sell",
    )
    assert ["59990", "0.0006", 1] in net.get(0, "/v1/markets/BTC-PERP/book")["bids"]

    # GET /v1/txs/{id} says what wait=commit said, and its inclusion proof checks out.
    for answer in (first, second):
        looked_up = net.get(3, f"/v1/txs/{answer['tx_id']}")
        for field in ("height", "index", "code", "results", "events", "block_hash"):
            assert looked_up[field] == answer[field], field
        check_inclusion(net, looked_up)


def check_inclusion(net: Cluster, tx_answer: dict[str, Any]) -> None:
    proof = tx_answer["inclusion_proof"]
    raw = bytes.fromhex(proof["tx"])
    assert Transaction.from_wire(raw).tx_id().hex() == tx_answer["tx_id"]
    block = net.get(0, f"/v1/blocks/{tx_answer['height']}")
    header = BlockHeader.from_wire(bytes.fromhex(block["header"]["wire"]))
    path = [bytes.fromhex(p) for p in proof["path"]]
    assert verify_inclusion(
        leaf_hash(raw), proof["leaf_index"], proof["tree_size"], path, header.payload_root
    )
    qc = QuorumCert.from_wire(bytes.fromhex(block["commit_qc"]["wire"]))
    genesis = genesis_of(net)
    validators = ValidatorSet([(v.pubkey, v.power) for v in genesis.validators])
    genesis_hash = genesis_block(genesis.genesis_time_ms).block_hash()
    assert qc.block_hash == header.block_hash()
    assert qc_valid(qc, genesis.chain_id, validators, genesis_hash)
    assert tx_answer["tx_id"] in block["tx_ids"]


def test_latest_block_and_status(net: Cluster) -> None:
    latest = net.get(0, "/v1/blocks/latest")
    assert latest["height"] >= 1 and latest["header"]["height"] == latest["height"]
    status = net.get(1, "/v1/status")
    assert status["chain_id"] == net.chain_id
    assert len(status["validators"]) == 4 and len(status["peers"]) == 3
    assert status["leader"] in {v["pubkey"] for v in status["validators"]}
    assert status["syncing"] is False and status["ready"] is True
    markets = net.get(0, "/v1/markets")
    perp = next(m for m in markets["markets"] if m["symbol"] == "BTC-PERP")
    for field in ("tick_size", "lot_size", "min_notional", "max_leverage", "margin_tiers"):
        assert perp[field] not in (None, "", [])
    assert (perp["tick_size"], perp["lot_size"]) == ("0.01", "0.0001")


# ---- proofs --------------------------------------------------------------------------------


def test_account_proof_verifies_and_tampering_fails(net: Cluster) -> None:
    genesis = genesis_of(net)
    who = net.demo_key(0).public_key
    answer = net.get(2, f"/v1/proofs/accounts/{who.hex()}")
    check = verify_account_proof(answer, genesis, who)
    assert check.ok, check.failures
    usdc_key = (b"\x01" + who + (0).to_bytes(4, "big")).hex()
    assert check.values[usdc_key] is not None  # funded in genesis

    def tampered(change: Any) -> bool:
        body = copy.deepcopy(answer)
        change(body)
        return verify_account_proof(body, genesis, who).ok

    def flip(text: str, at: int = -2) -> str:
        digit = "0" if text[at] != "0" else "1"
        return text[:at] + digit + text[at + 1 :]

    entry = next(i for i, e in enumerate(answer["entries"]) if e["value"] is not None)
    signatures = answer["certified_by"]["commit_qc"]
    qc = QuorumCert.from_wire(bytes.fromhex(signatures["wire"]))
    weak_qc = dataclasses.replace(qc, signatures=qc.signatures[:2])  # 2 of 4: not > 2/3
    cases = {
        "value": lambda b: b["entries"][entry].update(value=flip(b["entries"][entry]["value"])),
        "proof": lambda b: b["entries"][entry].update(proof=flip(b["entries"][entry]["proof"])),
        "root": lambda b: b.update(state_root=flip(b["state_root"])),
        "dropped entry": lambda b: b["entries"].pop(entry),
        "header": lambda b: b["certified_by"]["header"].update(
            wire=flip(b["certified_by"]["header"]["wire"])
        ),
        "qc signature": lambda b: b["certified_by"]["commit_qc"].update(
            wire=flip(b["certified_by"]["commit_qc"]["wire"])
        ),
        "weak qc": lambda b: b["certified_by"]["commit_qc"].update(wire=weak_qc.to_wire().hex()),
        "height": lambda b: b.update(height=b["height"] - 1),
    }
    for name, change in cases.items():
        assert not tampered(change), f"tampered {name} still verifies"


def test_account_proof_at_a_past_height(net: Cluster) -> None:
    """The state at an earlier height stays provable after the account changed."""
    genesis = genesis_of(net)
    who = net.demo_key(3).public_key
    before = net.get(1, f"/v1/proofs/accounts/{who.hex()}")
    assert verify_account_proof(before, genesis, who).ok
    usdc_key = (b"\x01" + who + (0).to_bytes(4, "big")).hex()
    gift = Transfer(net.demo_key(2).public_key, 0, 1_000_000)
    tx = sign_transaction(net.demo_key(3), net.chain_id, next_nonce(), [gift])
    headers = {"content-type": "application/msgpack"}
    answer = net.http.post(
        net.api(1) + "/v1/txs", content=tx.to_wire(), headers=headers, params={"wait": "commit"}
    )
    assert answer.json()["status"] == "committed", answer.text
    now = net.get(1, f"/v1/proofs/accounts/{who.hex()}")
    assert now["height"] > before["height"]
    then = net.get(1, f"/v1/proofs/accounts/{who.hex()}", height=before["height"])
    check = verify_account_proof(then, genesis, who, expected_height=before["height"])
    assert check.ok, check.failures
    assert then["entries"] == before["entries"] and then["state_root"] == before["state_root"]
    value_then = verify_account_proof(now, genesis, who).values[usdc_key]
    assert value_then != check.values[usdc_key]  # the transfer changed the proven balance
    future = net.http.get(
        net.api(1) + f"/v1/proofs/accounts/{who.hex()}", params={"height": 10**12}
    )
    assert_error(future, 404, "height_not_provable", "future height")


# ---- WebSocket -----------------------------------------------------------------------------


async def receive_json(ws: Any) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await ws.get_message())
    return message


async def test_websocket_snapshot_then_every_update_in_order(net: Cluster) -> None:
    buyer, seller = net.demo_key(2), net.demo_key(3)
    url = net.api(1).replace("http://", "ws://") + "/v1/ws"
    subs: dict[int, dict[str, Any]] = {
        1: {"channel": "book", "market": "ETH-PERP", "depth": 5},
        2: {"channel": "blocks"},
        3: {"channel": "account", "address": buyer.public_key.hex()},
        4: {"channel": "trades", "market": "ETH-PERP"},
    }
    messages: dict[int, list[dict[str, Any]]] = {k: [] for k in subs}
    async with open_websocket_url(url) as ws:
        for sub_id, params in subs.items():
            await ws.send_message(json.dumps({"op": "subscribe", "id": sub_id, **params}))
        await ws.send_message(json.dumps({"op": "ping"}))
        placed = []
        async with httpx.AsyncClient(timeout=40.0) as http:
            for ticks in (299_000, 299_100, 299_200):  # 2990.00, 2991.00, 2992.00
                tx = order(buyer, net.chain_id, True, ticks, 5, ETH_PERP)
                r = await http.post(
                    net.api(0) + "/v1/txs",
                    content=tx.to_wire(),
                    params={"wait": "commit"},
                    headers={"content-type": "application/msgpack"},
                )
                placed.append(committed(r)["results"][0]["order_id"])
            tx = order(seller, net.chain_id, False, 299_200, 5, ETH_PERP)
            r = await http.post(
                net.api(0) + "/v1/txs",
                json=json_form(tx, "2992", "0.005"),
                params={"wait": "commit"},
            )
            last_height = committed(r)["height"]
        got_pong = False
        with trio.fail_after(20):
            while True:
                message = await receive_json(ws)
                if message["type"] == "pong":
                    got_pong = True
                    continue
                assert message["type"] in ("snapshot", "update"), message
                messages[message["id"]].append(message)
                blocks = messages[2]
                if len(blocks) > 1 and blocks[-1]["height"] >= last_height + 1:
                    break
    assert got_pong
    for sub_id, stream in messages.items():
        assert stream[0]["type"] == "snapshot", sub_id
        assert [m["seq"] for m in stream] == list(range(len(stream))), f"gap in {sub_id}"
        heights = [m["height"] for m in stream]
        assert heights == sorted(heights) and len(set(heights[1:])) == len(heights) - 1
    blocks = messages[2]
    heights = [m["height"] for m in blocks]
    assert heights[1:] == list(range(heights[0] + 1, heights[-1] + 1)), "a block was skipped"
    # The book stream, replayed, ends where the HTTP book is at that height.
    book_http = net.get(1, "/v1/markets/ETH-PERP/book", depth=5)
    book_ws = messages[1][-1]["data"]
    if book_http["height"] == messages[2][-1]["height"]:
        assert book_ws["bids"] == book_http["bids"] and book_ws["asks"] == book_http["asks"]
    assert book_ws["bids"][:2] == [["2991", "0.005", 1], ["2990", "0.005", 1]]
    # The account stream saw each of the buyer's orders and the fill.
    events = [e for m in messages[3][1:] for e in m["data"]["events"]]
    accepted = [e["order_id"] for e in events if e["kind"] == "order_accepted"]
    assert accepted == placed
    assert any(e["kind"] == "fill" and e["maker_order_id"] == placed[2] for e in events)
    trades = [t for m in messages[4][1:] for t in m["data"]["trades"]]
    assert [(t["price"], t["size"]) for t in trades] == [("2992", "0.005")]


async def test_websocket_bad_messages_get_errors(net: Cluster) -> None:
    url = net.api(2).replace("http://", "ws://") + "/v1/ws"
    async with open_websocket_url(url) as ws:
        bad = [
            "not json",
            json.dumps([1, 2]),
            json.dumps({"op": "subscribe", "id": 1, "channel": "book", "market": "NOPE"}),
            json.dumps({"op": "subscribe", "id": 2, "channel": "account", "address": "zz"}),
            json.dumps({"op": "subscribe", "id": 3, "channel": "weather"}),
            json.dumps({"op": "dance", "id": 4}),
        ]
        for text in bad:
            await ws.send_message(text)
        codes = []
        with trio.fail_after(10):
            for _ in bad:
                message = await receive_json(ws)
                assert message["type"] == "error" and message["message"]
                codes.append(message["code"])
        assert codes == [
            "malformed_json",
            "malformed",
            "unknown_market",
            "bad_address",
            "unknown_channel",
            "unknown_op",
        ]
        await ws.send_message(json.dumps({"op": "subscribe", "id": 9, "channel": "blocks"}))
        with trio.fail_after(10):
            assert (await receive_json(ws))["type"] == "snapshot"


# ---- bad input -----------------------------------------------------------------------------


def test_bad_input_gets_the_right_4xx_and_the_node_keeps_working(net: Cluster) -> None:
    key = net.demo_key(1)
    base = net.api(3)
    good = order(key, net.chain_id, True, 5_900_000, 2)
    good_json = json_form(good, "59000", "0.0002")
    wire = good.to_wire()
    bad_sig = Transaction.from_obj([*good.to_obj()[:-1], bytes(64)]).to_wire()
    hexaddr = key.public_key.hex()

    def with_action(**fields: Any) -> dict[str, Any]:
        body = copy.deepcopy(good_json)
        body["actions"][0].update(fields)
        return body

    transfer = copy.deepcopy(good_json)
    transfer["actions"] = [
        {"type": "transfer", "to": hexaddr, "asset_id": 0, "amount": "1.0000001"}
    ]
    posts: list[tuple[str, dict[str, Any], int, str]] = [
        (
            "malformed json",
            {"content": b'{"version": 1,', "ct": "application/json"},
            400,
            "malformed_json",
        ),
        ("wrong type", {"json": {**good_json, "nonce": "abc"}}, 400, "malformed"),
        ("not an object", {"json": [1, 2, 3]}, 400, "malformed"),
        ("unknown field", {"json": {**good_json, "colour": "red"}}, 400, "malformed"),
        ("unknown market", {"json": with_action(market_id=99)}, 404, "unknown_market"),
        ("off-tick price", {"json": with_action(price="59000.001")}, 400, "tick_size"),
        ("off-lot size", {"json": with_action(size="0.00001")}, 400, "lot_size"),
        ("too many decimals", {"json": transfer}, 400, "too_many_decimals"),
        ("not a decimal", {"json": with_action(price="5e4")}, 400, "bad_decimal"),
        ("negative", {"json": with_action(size="-1")}, 400, "bad_decimal"),
        (
            "garbage msgpack",
            {"content": b"\xc1\x00garbage", "ct": "application/msgpack"},
            400,
            "malformed",
        ),
        (
            "oversize body",
            {"content": b"x" * 70_000, "ct": "application/msgpack"},
            413,
            "body_too_large",
        ),
        ("bad signature", {"content": bad_sig, "ct": "application/msgpack"}, 400, "bad_signature"),
        ("media type", {"content": wire, "ct": "text/plain"}, 415, "unsupported_media_type"),
        (
            "wait value",
            {"content": wire, "ct": "application/msgpack", "wait": "soon"},
            400,
            "bad_parameter",
        ),
    ]
    for name, spec, status, code in posts:
        params = {"wait": spec["wait"]} if "wait" in spec else {}
        if "json" in spec:
            r = net.http.post(base + "/v1/txs", json=spec["json"], params=params)
        else:
            r = net.http.post(
                base + "/v1/txs",
                content=spec["content"],
                params=params,
                headers={"content-type": spec["ct"]},
            )
        assert_error(r, status, code, name)

    gets: list[tuple[str, dict[str, Any], int, str]] = [
        ("/v1/markets/NOPE", {}, 404, "unknown_market"),
        ("/v1/markets/NOPE/book", {}, 404, "unknown_market"),
        ("/v1/markets/BTC-PERP/book", {"depth": "abc"}, 400, "bad_parameter"),
        ("/v1/markets/BTC-PERP/book", {"depth": "0"}, 400, "bad_parameter"),
        ("/v1/markets/NOPE/trades", {}, 404, "unknown_market"),
        ("/v1/markets/BTC-PERP/trades", {"limit": "-1"}, 400, "bad_parameter"),
        ("/v1/markets/NOPE/funding", {}, 404, "unknown_market"),
        ("/v1/markets/BTC-PERP/funding", {"from": "yesterday"}, 400, "bad_parameter"),
        ("/v1/markets/BTC-PERP/funding", {"cursor": "1-2"}, 400, "bad_cursor"),
        ("/v1/accounts/zzz", {}, 400, "bad_address"),
        ("/v1/accounts/" + "g" * 64, {}, 400, "bad_address"),
        ("/v1/accounts/zzz/orders", {}, 400, "bad_address"),
        ("/v1/accounts/zzz/fills", {}, 400, "bad_address"),
        ("/v1/accounts/" + "ab" * 31 + "/funding", {}, 400, "bad_address"),
        ("/v1/accounts/0x" + "g" * 64 + "/ledger", {}, 400, "bad_address"),
        (f"/v1/accounts/{hexaddr}/fills", {"cursor": "x"}, 400, "bad_cursor"),
        (f"/v1/accounts/{hexaddr}/ledger", {"limit": "100000"}, 400, "bad_parameter"),
        ("/v1/blocks/abc", {}, 400, "bad_height"),
        ("/v1/blocks/99999999", {}, 404, "no_block"),
        ("/v1/txs/xyz", {}, 400, "bad_tx_id"),
        ("/v1/txs/" + "00" * 32, {}, 404, "unknown_tx"),
        ("/v1/proofs/accounts/zzz", {}, 400, "bad_address"),
        (f"/v1/proofs/accounts/{hexaddr}", {"height": "99999999"}, 404, "height_not_provable"),
        (f"/v1/proofs/accounts/{hexaddr}", {"height": "latest"}, 400, "bad_parameter"),
        (f"/v1/proofs/accounts/{hexaddr}", {"height": "-5"}, 400, "bad_parameter"),
        ("/v1/nothing-here", {}, 404, "not_found"),
    ]
    for path, params, status, code in gets:
        assert_error(net.http.get(base + path, params=params), status, code, path)
    assert_error(net.http.delete(base + "/v1/txs"), 405, "method_not_allowed", "DELETE")

    # Still alive: a valid order commits and the chain moves on.
    assert committed(net.submit(3, wire))["results"][0]["code"] == "ok"
    assert_error(
        net.http.post(
            base + "/v1/txs", content=wire, headers={"content-type": "application/msgpack"}
        ),
        400,
        "nonce_used",
        "replay",
    )
    check_batch(net, key)
    height = net.height(3)
    net.wait_height(height + 2, [3])


def check_batch(net: Cluster, key: Keypair) -> None:
    """POST /v1/txs/batch: one verdict per transaction, in order; a bad body is one 4xx."""
    url = net.api(2) + "/v1/txs/batch"
    headers = {"content-type": "application/msgpack"}
    good = order(key, net.chain_id, True, 5_900_000, 2)
    forged = order(key, net.chain_id, True, 5_900_000, 2)
    bad_sig = Transaction.from_obj([*forged.to_obj()[:-1], bytes(64)]).to_wire()
    body = encode([good.to_wire(), b"\x01garbage", bad_sig])
    answer = net.http.post(url, content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    verdicts = answer.json()["results"]
    assert [(v["status"], v.get("code")) for v in verdicts] == [
        ("pending", None),
        ("rejected", "malformed"),
        ("rejected", "bad_signature"),
    ]
    assert verdicts[0]["tx_id"] == good.tx_id().hex()
    assert_error(net.http.post(url, content=b"\xc1", headers=headers), 400, "malformed", "batch")
    assert_error(net.http.post(url, content=encode([]), headers=headers), 400, "malformed", "empty")
    wait_until(
        lambda: (
            net.http.get(net.api(2) + f"/v1/txs/{good.tx_id().hex()}").json().get("status")
            == "committed"
        ),
        "the batched transaction to commit",
    )


def assert_error(response: httpx.Response, status: int, code: str, what: str) -> None:
    assert response.status_code == status, (what, response.status_code, response.text)
    body = response.json()
    assert body["code"] == code, (what, body)
    assert isinstance(body["message"], str) and body["message"], what


# ---- metrics and health --------------------------------------------------------------------


def scrape(net: Cluster, i: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = net.http.get(net.metrics_url(i)).text
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def test_metrics_parse_and_move_with_traffic(net: Cluster) -> None:
    before = scrape(net, 0)
    for _ in range(5):
        net.get(0, "/v1/markets/ETH-PERP/book")
    net.http.get(net.api(0) + "/v1/markets/NOPE")
    tx = order(net.demo_key(0), net.chain_id, True, 5_900_000, 2)
    committed(net.submit(0, tx.to_wire()))
    net.wait_height(net.height(0) + 2, [0])
    after = scrape(net, 0)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("perpbft_api_requests_total", route="book", status="200") == 5
    assert moved("perpbft_api_requests_total", route="market", status="404") == 1
    assert moved("perpbft_api_requests_total", route="submit_tx", status="200") == 1
    assert moved("perpbft_transactions_admitted_total") >= 1
    assert moved("perpbft_commits_total") >= 2
    assert moved("perpbft_votes_sent_total") > 0
    assert moved("perpbft_votes_received_total") > 0
    assert moved("perpbft_p2p_sent_bytes_total") > 0
    assert moved("perpbft_p2p_received_bytes_total") > 0
    assert moved("perpbft_block_interval_seconds_count") >= 1
    assert moved("perpbft_block_execution_seconds_count") >= 2
    assert moved("perpbft_qc_formation_seconds_count", phase="prepare") >= 1
    assert moved("perpbft_qc_formation_seconds_count", phase="commit") >= 1
    assert value(after, "perpbft_height") >= value(before, "perpbft_height") + 2
    assert value(after, "perpbft_p2p_peers") == 3
    assert value(after, "perpbft_mempool_transactions") >= 0


def test_health_and_view_changes_when_a_validator_stops(net: Cluster) -> None:
    for i in range(4):
        assert net.http.get(net.api(i) + "/livez").json() == {"status": "ok"}
        assert net.http.get(net.api(i) + "/readyz").status_code == 200
    timeouts_before = value(scrape(net, 0), "perpbft_view_changes_total", reason="timeout")
    net.kill(3)
    # Views led by the stopped validator time out; the other three still commit.
    wait_until(
        lambda: value(scrape(net, 0), "perpbft_view_changes_total") > timeouts_before,
        "a view change on node 0",
    )
    height = net.height(0)
    net.wait_height(height + 3, [0, 1, 2])
    ready = net.http.get(net.api(0) + "/readyz")
    assert ready.status_code == 200, ready.text
    assert net.get(0, "/v1/status")["peers"] == sorted(net.get(0, "/v1/status")["peers"])
    assert len(net.get(0, "/v1/status")["peers"]) == 2
    # Restarted, it catches up and only then reports ready.
    net.start(3)
    net.wait_height(net.height(0), [3])
    wait_until(lambda: net.http.get(net.api(3) + "/readyz").status_code == 200, "node 3 ready")
