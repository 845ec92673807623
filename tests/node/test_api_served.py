"""The API of a node whose store is open, on a real hypercorn server in-process, without a
cluster: WebSocket slow consumers and the connection cap, health answers, the block and
mempool metrics, and the market fields. Blocks are executed by the node's own execution path
(``Node._execute``: apply, LMDB write, metrics, subscribers), with a test-made commit QC."""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    open_websocket_url,
    wrap_client_stream,
)

from consensus.events import Execute
from consensus.types import COMMIT, Block, BlockHeader, QuorumCert, payload_root
from node.api.app import LIVENESS_SILENCE_S, build_app, build_metrics_app
from node.api.queries import READY_BLOCK_AGE_S
from node.api.server import serve_api
from node.api.ws import OUTBOUND_QUEUE_MAX
from node.config import ApiSettings, Config
from node.node import Node, now_ms
from state_machine.crypto import Keypair
from state_machine.genesis import Genesis, default_genesis
from state_machine.tx import KIND_LIMIT, TIF_GTC, PlaceOrder, sign_transaction
from tests.node.test_api_pieces import (
    ALICE,
    BOB,
    GENESIS,
    VALIDATOR,
    local_server_config,
    sample,
)

DECIMAL = re.compile(r"^(0|[1-9][0-9]*)(\.[0-9]*[1-9])?$")  # the API's decimal strings


@contextmanager
def opened_node(home: Path, genesis: Genesis = GENESIS, **api: Any) -> Iterator[Node]:
    """A node whose store is open (as after start-up), without consensus or p2p running;
    ``api`` overrides ``[api]`` settings."""
    n = Node(Config(home=home, api=ApiSettings(**api)), genesis, VALIDATOR)
    n.chain = n.open_chain()
    n.ready.set()
    try:
        yield n
    finally:
        n.sigpool.close()
        n.chain.close()


@asynccontextmanager
async def served(app: Any) -> AsyncIterator[tuple[str, trio.Nursery]]:
    """``app`` on a free loopback port: (base URL, the nursery it runs in)."""
    async with trio.open_nursery() as nursery:
        base = (await nursery.start(serve_api, app, local_server_config()))[0]
        yield base, nursery
        nursery.cancel_scope.cancel()


async def execute_block(n: Node, payload: list[bytes]) -> None:
    """Commit and execute the next block holding ``payload``, as the consensus loop does."""
    assert n.chain is not None
    height = n.chain.height + 1
    header = BlockHeader(
        height,
        height,
        b"\x00" * 32,
        now_ms(),
        VALIDATOR.public_key,
        payload_root(payload),
        n.chain.state_root,
    )
    block = Block(header, tuple(payload))
    qc = QuorumCert(COMMIT, height, height, block.block_hash(), ())
    await n._execute(Execute(block, qc))


def order(key: Keypair, nonce: int, buy: bool, price_ticks: int, lots: int) -> bytes:
    """A GTC limit order on BTC-PERP (market 2)."""
    action = PlaceOrder(2, buy, KIND_LIMIT, TIF_GTC, price_ticks, lots)
    return sign_transaction(key, GENESIS.chain_id, nonce, [action]).to_wire()


async def message(ws: WebSocketConnection) -> dict[str, Any]:
    with trio.fail_after(5):
        answer: dict[str, Any] = json.loads(await ws.get_message())
        return answer


async def send(ws: WebSocketConnection, **body: Any) -> None:
    await ws.send_message(json.dumps(body))


async def until(condition: Callable[[], bool], what: str) -> None:
    with trio.move_on_after(5):
        while not condition():
            await trio.sleep(0.01)
    assert condition(), what


@asynccontextmanager
async def unread_client(base: str) -> AsyncIterator[WebSocketConnection]:
    """A WebSocket client that reads nothing until asked: its library holds one message and
    then stops reading the socket, whose receive buffer is small, so the node's sends block
    after a few KiB."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect((host, int(port)))
    async with trio.open_nursery() as nursery:
        ws = await wrap_client_stream(nursery, trio.SocketStream(sock), host, "/v1/ws")
        try:
            yield ws
        finally:
            await ws.aclose()


def close_of(closed: ConnectionClosed) -> tuple[int, str]:
    """The close code and reason the client received."""
    assert closed.reason is not None
    return closed.reason.code, closed.reason.reason or ""


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://") + "/v1/ws"


# ---- WebSocket ---------------------------------------------------------------------------------


async def test_a_consumer_that_does_not_read_is_closed_with_1008_and_others_are_served(
    tmp_path: Path,
) -> None:
    with opened_node(tmp_path) as n:
        app = build_app(n)
        hub = app.state.hub
        metrics = n.metrics

        def gauge(name: str) -> float:
            return sample(metrics, f"perpbft_websocket_{name}")

        def slow_disconnects() -> float:
            return sample(metrics, "perpbft_websocket_disconnects_total", reason="slow_consumer")

        async with served(app) as (base, nursery):
            url = ws_url(base)
            # The healthy client: two subscriptions, the gauge follows them.
            async with open_websocket_url(url) as good:
                await send(good, op="subscribe", id=1, channel="blocks")
                assert (await message(good))["type"] == "snapshot"
                await send(good, op="subscribe", id="b", channel="book", market="BTC-PERP")
                assert (await message(good))["type"] == "snapshot"
                assert (gauge("subscribers"), gauge("connections")) == (2, 1)
                await send(good, op="unsubscribe", id="b")
                assert await message(good) == {"type": "unsubscribed", "id": "b", "found": True}
                assert gauge("subscribers") == 1
                updates: list[tuple[int, int]] = []  # (seq, height) as the good client reads

                async def read_good() -> None:
                    with suppress(ConnectionClosed):  # when the test closes it
                        while True:
                            body = json.loads(await good.get_message())
                            if body["type"] == "update":
                                updates.append((body["seq"], body["height"]))

                # The slow client asks for 32 block streams and does not read.
                async with unread_client(base) as slow:
                    for sub_id in range(32):
                        await send(slow, op="subscribe", id=sub_id, channel="blocks")
                    await until(lambda: gauge("subscribers") == 33, "the slow client subscribed")
                    slow_conn = next(c for c in hub.connections if len(c.subs) == 32)
                    nursery.start_soon(read_good)
                    blocks = 0
                    while slow_disconnects() == 0:  # until the kernel's buffers and the queue
                        assert blocks < 500, "the node never found the consumer too slow"
                        await execute_block(n, [])
                        blocks += 1
                    assert slow_conn.too_slow and slow_conn in hub.connections
                    # A message from it while its close waits for the socket.
                    await send(slow, op="ping")
                    # It was cut when its queue was full, and nothing is queued past the bound
                    # (its writer takes at most the message after the one in flight).
                    await execute_block(n, [])
                    blocks += 1
                    used = slow_conn.send_channel.statistics().current_buffer_used
                    assert OUTBOUND_QUEUE_MAX - 1 <= used <= OUTBOUND_QUEUE_MAX

                    # The node kept serving the other client: every update, in order; and HTTP.
                    await until(lambda: len(updates) == blocks, "the good client's updates")
                    assert updates == [(h, h) for h in range(1, blocks + 1)]
                    async with httpx.AsyncClient(base_url=base) as http:
                        assert (await http.get("/v1/status")).status_code == 200

                    # Reading now, the slow client gets what was in flight, then the close
                    # frame: far fewer messages than the node produced for it.
                    received = 0
                    with pytest.raises(ConnectionClosed) as closed, trio.fail_after(10):
                        while True:
                            await slow.get_message()
                            received += 1
                    code, reason = close_of(closed.value)
                    assert code == 1008 and "too slow" in reason
                    assert received < 32 * blocks

                await until(lambda: slow_conn not in hub.connections, "the slow connection is gone")
                assert (gauge("connections"), gauge("subscribers")) == (1, 1)
                assert slow_disconnects() == 1
                await execute_block(n, [])
                await until(lambda: len(updates) == blocks + 1, "the good client is served")
            # Closing a connection drops its subscriptions from the gauge.
            await until(lambda: not hub.connections, "the good connection is gone")
            assert (gauge("connections"), gauge("subscribers")) == (0, 0)


async def test_connections_over_the_cap_are_closed_with_1013(tmp_path: Path) -> None:
    with opened_node(tmp_path, websocket_connections_max=1) as n:
        app = build_app(n)
        async with served(app) as (base, _):
            url = ws_url(base)
            async with open_websocket_url(url) as first:
                await send(first, op="ping")
                assert await message(first) == {"type": "pong"}
                async with open_websocket_url(url) as second:
                    with pytest.raises(ConnectionClosed) as closed, trio.fail_after(5):
                        await second.get_message()
                code, reason = close_of(closed.value)
                assert code == 1013 and "too many" in reason
                reason = "too_many_connections"
                assert sample(n.metrics, "perpbft_websocket_disconnects_total", reason=reason) == 1
                assert sample(n.metrics, "perpbft_websocket_connections") == 1
                await send(first, op="ping")
                assert await message(first) == {"type": "pong"}
            await until(lambda: not app.state.hub.connections, "the first connection is gone")
            async with open_websocket_url(url) as third:  # the slot is free again
                await send(third, op="ping")
                assert await message(third) == {"type": "pong"}


async def test_a_client_that_never_reads_is_disconnected_within_the_write_timeout(
    tmp_path: Path,
) -> None:
    """Its close frame cannot be sent either (the send in flight never completes), so the
    node aborts the socket: gone within about 1.5 write timeouts, without reading a byte."""
    with opened_node(tmp_path, websocket_write_timeout_ms=300) as n:
        app = build_app(n)
        hub = app.state.hub

        def disconnects(reason: str) -> float:
            return sample(n.metrics, "perpbft_websocket_disconnects_total", reason=reason)

        async with served(app) as (base, _), unread_client(base) as never_reads:
            for sub_id in range(32):
                await send(never_reads, op="subscribe", id=sub_id, channel="blocks")
            await until(lambda: len(hub.connections) == 1, "connected")
            conn = next(iter(hub.connections))
            await until(lambda: len(conn.subs) == 32, "subscribed")
            blocks = 0
            while conn.send_started_s is None or trio.current_time() - conn.send_started_s < 0.3:
                assert blocks < 500, "the node's sends to it never blocked"
                await execute_block(n, [])
                blocks += 1
                await trio.sleep(0.005)
            stuck_at = trio.current_time()
            await until(lambda: conn not in hub.connections, "the connection is gone")
            assert trio.current_time() - stuck_at < 2.0
            assert disconnects("write_timeout") == 1
            # The node still serves others.
            async with open_websocket_url(ws_url(base)) as other:
                await send(other, op="ping")
                assert await message(other) == {"type": "pong"}


async def test_connections_from_one_address_are_capped(tmp_path: Path) -> None:
    with opened_node(tmp_path, websocket_connections_per_client_max=2) as n:
        app = build_app(n)
        async with served(app) as (base, _):
            url = ws_url(base)
            async with open_websocket_url(url) as first, open_websocket_url(url) as second:
                for ws in (first, second):
                    await send(ws, op="ping")
                    assert await message(ws) == {"type": "pong"}
                async with open_websocket_url(url) as third:
                    with pytest.raises(ConnectionClosed) as closed, trio.fail_after(5):
                        await third.get_message()
                code, reason = close_of(closed.value)
                assert code == 1013 and "from this address" in reason
            reason = "too_many_client_connections"
            assert sample(n.metrics, "perpbft_websocket_disconnects_total", reason=reason) == 1
            await until(lambda: not app.state.hub.connections, "both closed")
            async with open_websocket_url(url) as again:  # the address's slots are free again
                await send(again, op="ping")
                assert await message(again) == {"type": "pong"}


async def test_a_client_sending_too_fast_gets_rate_limited_then_closed(tmp_path: Path) -> None:
    with opened_node(tmp_path, websocket_messages_per_s=1, websocket_message_burst=3) as n:
        async with served(build_app(n)) as (base, _), open_websocket_url(ws_url(base)) as ws:
            for _ in range(4):
                await send(ws, op="ping")
            answers = [await message(ws) for _ in range(4)]
            assert answers[:3] == [{"type": "pong"}] * 3
            assert answers[3]["code"] == "rate_limited"
            with pytest.raises(ConnectionClosed) as closed, trio.fail_after(5):
                await ws.get_message()
            code, reason = close_of(closed.value)
            assert code == 1008 and "too many messages" in reason
    assert sample(n.metrics, "perpbft_websocket_disconnects_total", reason="rate_limited") == 1


async def test_binary_frames_and_deep_json_are_malformed_and_the_connection_stays(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with opened_node(tmp_path) as n:
        async with served(build_app(n)) as (base, _), open_websocket_url(ws_url(base)) as ws:
            await ws.send_message(b'{"op": "ping"}')
            binary = await message(ws)
            assert (binary["type"], binary["code"]) == ("error", "malformed")
            assert "binary" in binary["message"]
            await ws.send_message("[" * 2000 + "]" * 2000)
            deep = await message(ws)
            assert (deep["code"], deep["message"]) == (
                "malformed",
                "JSON nested deeper than 32 levels",
            )
            await ws.send_message('{"op": "ping", "x": ' + "[" * 2000)
            assert (await message(ws))["code"] == "malformed"
            await ws.send_message('{"op": "ping"')
            assert (await message(ws))["code"] == "malformed_json"
            await send(ws, op="ping")
            assert await message(ws) == {"type": "pong"}
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


# ---- health ------------------------------------------------------------------------------------

OTHER = Keypair(b"\x09" * 32)


class Peers:
    """Stands in for the peer manager: the peers the node is connected to."""

    def __init__(self, connected: list[bytes]) -> None:
        self.connected = connected

    def connected_peers(self) -> list[bytes]:
        return self.connected


async def test_livez_and_readyz_answer_503_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two validators of equal power: neither alone is a quorum.
    genesis = default_genesis(
        "perpbft-test",
        [(VALIDATOR.public_key, 1), (OTHER.public_key, 1)],
        [ALICE.public_key, BOB.public_key],
    )
    with opened_node(tmp_path, genesis) as n:
        async with served(build_app(n)) as (base, _), httpx.AsyncClient(base_url=base) as http:

            async def answer(path: str) -> tuple[int, dict[str, Any]]:
                response = await http.get(path)
                return response.status_code, response.json()

            # Liveness: the clock task's heartbeat, older than the limit, is a stalled loop.
            assert await answer("/livez") == (200, {"status": "ok"})
            n.loop_heartbeat_s = time.monotonic() - LIVENESS_SILENCE_S - 1
            status, body = await answer("/livez")
            assert (status, body["code"]) == (503, "event_loop_stalled")
            assert "silent" in body["message"]
            n.loop_heartbeat_s = time.monotonic()
            assert await answer("/livez") == (200, {"status": "ok"})

            # Readiness: alone, the node is not connected to a quorum.
            def not_ready(reason: str) -> tuple[int, dict[str, Any]]:
                return 503, {"code": "not_ready", "message": reason}

            quorum = "not connected to a quorum of validators"
            assert await answer("/readyz") == not_ready(quorum)
            status, body = await answer("/v1/status")
            assert (body["ready"], body["not_ready_reason"], body["syncing"]) == (
                False,
                quorum,
                True,
            )
            # Connected to the other validator, but no block executed yet.
            monkeypatch.setattr(n, "peers", Peers([OTHER.public_key]))
            stale = "no recent committed block"
            assert await answer("/readyz") == not_ready(stale)
            # A fresh block: ready.
            await execute_block(n, [])
            assert await answer("/readyz") == (200, {"status": "ready", "height": 1})
            status, body = await answer("/v1/status")
            assert (body["ready"], body["not_ready_reason"], body["syncing"]) == (True, "", False)
            # The last block grows old (a halted chain, or catching up on old blocks).
            n.last_block_time_ms = now_ms() - int(READY_BLOCK_AGE_S * 1000) - 1000
            assert await answer("/readyz") == not_ready(stale)
            # The quorum is lost again while blocks are fresh.
            n.last_block_time_ms = now_ms()
            assert (await answer("/readyz"))[0] == 200
            monkeypatch.setattr(n, "peers", Peers([]))
            assert await answer("/readyz") == not_ready(quorum)
    requests = "perpbft_api_requests_total"
    assert sample(n.metrics, requests, route="livez", status="503") == 1
    assert sample(n.metrics, requests, route="readyz", status="503") == 4
    assert sample(n.metrics, requests, route="readyz", status="200") == 2


# ---- block and mempool metrics -------------------------------------------------------------


async def test_block_and_mempool_metrics_move_with_a_submitted_and_executed_tx(
    tmp_path: Path,
) -> None:
    with opened_node(tmp_path) as n:
        async with (
            served(build_app(n)) as (base, nursery),
            served(build_metrics_app(n)) as (metrics_base, _),
            httpx.AsyncClient(base_url=base) as http,
            httpx.AsyncClient(base_url=metrics_base) as scraper,
        ):
            nursery.start_soon(n._admission_loop)

            async def scrape() -> dict[str, float]:
                text = (await scraper.get("/metrics")).text
                return {
                    s.name: s.value
                    for family in text_string_to_metric_families(text)
                    for s in family.samples
                    if set(s.labels) <= {"le"} and s.labels.get("le", "+Inf") == "+Inf"
                }

            before = await scrape()
            assert before["perpbft_mempool_bytes"] == 0
            assert before["perpbft_block_transactions_count"] == 0
            assert before["perpbft_block_persist_seconds_count"] == 0

            raw = order(ALICE, now_ms(), True, 6_000_000, 10)
            submitted = await http.post(
                "/v1/txs", content=raw, headers={"content-type": "application/msgpack"}
            )
            assert submitted.status_code == 202, submitted.text
            pending = await scrape()
            assert pending["perpbft_mempool_transactions"] == 1
            assert pending["perpbft_mempool_bytes"] == n.mempool.size_bytes >= len(raw)

            await execute_block(n, [raw])
            await execute_block(n, [])
            after = await scrape()
            assert after["perpbft_height"] == 2
            assert after["perpbft_mempool_transactions"] == 0
            assert after["perpbft_mempool_bytes"] == 0
            assert after["perpbft_block_transactions_count"] == 2
            assert after["perpbft_block_transactions_sum"] == 1
            assert after["perpbft_block_transactions_bucket"] == 2  # le="+Inf"
            assert after["perpbft_block_persist_seconds_count"] == 2
            assert after["perpbft_block_persist_seconds_sum"] > 0
            assert after["perpbft_block_execution_seconds_count"] == 2


# ---- market fields ---------------------------------------------------------------------------


def without_stats(market: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in market.items() if k != "stats_24h"}


async def test_market_answers_fees_oracle_mark_funding_and_open_interest(tmp_path: Path) -> None:
    with opened_node(tmp_path) as n:
        base_nonce = now_ms()
        # ALICE rests a bid of 0.001 at 60000; BOB sells 0.0004 into it.
        await execute_block(
            n,
            [
                order(ALICE, base_nonce, True, 6_000_000, 10),
                order(BOB, base_nonce + 1, False, 6_000_000, 4),
            ],
        )
        genesis_market = GENESIS.market(2)
        assert genesis_market is not None
        async with served(build_app(n)) as (base, _), httpx.AsyncClient(base_url=base) as http:
            answer = await http.get("/v1/markets/btc-perp")
            assert answer.status_code == 200, answer.text
            market = answer.json()
            listed = (await http.get("/v1/markets")).json()
            spot = (await http.get("/v1/markets/0")).json()

    # The list holds the same answer (but the 24 h statistics, which the in-process indexer
    # may have filled in between the two requests).
    assert without_stats(listed["markets"][2]) == without_stats(market)
    assert (market["market_id"], market["symbol"], market["kind"]) == (2, "BTC-PERP", "perp")
    # Fees: integers in ppm, the genesis values.
    assert market["maker_fee_ppm"] == genesis_market.maker_fee_ppm
    assert market["taker_fee_ppm"] == genesis_market.taker_fee_ppm
    assert all(type(market[k]) is int for k in ("maker_fee_ppm", "taker_fee_ppm"))
    # Prices and sizes: decimal strings.
    assert (market["oracle_price"], market["oracle_time_ms"]) == ("60000", 0)  # genesis price
    for key in ("oracle_price", "mark_price", "open_interest", "volume", "last_trade_price"):
        assert isinstance(market[key], str) and DECIMAL.match(market[key]), (key, market[key])
    assert Fraction(market["mark_price"]) % Fraction(market["tick_size"]) == 0
    assert (market["open_interest"], market["volume"]) == ("0.0004", "0.0004")
    assert (market["last_trade_price"], market["best_bid"], market["best_ask"]) == (
        "60000",
        "60000",
        None,
    )
    # Funding: integer rates, the ppm one also as an exact decimal string.
    for key in ("funding_rate_8h_ppb", "premium_ppb", "last_funding_rate_ppb"):
        assert type(market[key]) is int, key
    ppm = market["funding_rate_8h_ppm"]
    assert isinstance(ppm, str) and re.match(r"^-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?$", ppm)
    assert Fraction(ppm) == Fraction(market["funding_rate_8h_ppb"], 1000)
    assert market["funding_interval_ms"] == GENESIS.parameters.funding_interval_ms
    assert market["next_funding_ms"] is None or type(market["next_funding_ms"]) is int
    # A spot market has no funding.
    assert spot["kind"] == "spot"
    assert all(spot[k] is None for k in ("funding_rate_8h_ppb", "funding_rate_8h_ppm"))
    assert spot["open_interest"] == "0"
