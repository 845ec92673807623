"""WebSocket streams at ``/v1/ws``: book, trades, blocks and account subscriptions.

Protocol (JSON text frames):

* client: ``{"op": "subscribe", "id": 1, "channel": "book", "market": "BTC-PERP",
  "depth": 10}``; channels ``book`` (market, depth), ``trades`` (market), ``blocks``,
  ``account`` (address), ``candles`` (market, interval; from the history database, updated
  when the indexer has written a block), ``markets`` (every market's trading state; updates
  carry the block's ``market_state``, ``market_listed``, ``market_changed``,
  ``market_controls`` and ``market_delisted`` events); ``{"op": "unsubscribe", "id": 1}``;
  ``{"op": "ping"}``.
* server: ``{"type": "snapshot", "id": 1, "channel": ..., "seq": 0, "height": H, "data": ...}``
  once, then ``{"type": "update", "id": 1, "seq": n, "height": H, "data": ...}`` after every
  block that changes the subscription, with ``seq`` increasing by exactly one per message of
  that subscription, so a client detects a gap and resubscribes. ``{"type": "pong"}``,
  ``{"type": "error", "code": ..., "message": ...}``.

Each connection has a bounded outbound queue. A consumer too slow to keep up is disconnected
with close code 1008 and a reason, instead of letting the queue grow. The close frame waits
behind the send in flight, and a send to a client that stopped reading never completes (the
server shields socket writes from cancellation), so a watchdog per connection aborts the
socket itself (``node.api.server.ABORT_KEY``) when one send has taken longer than the write
timeout: a client that never reads is gone within about 1.5 write timeouts.

Limits: connections in all and per client address (over either: accepted, then closed with
1013), client messages per connection (a token bucket; over it: the ``rate_limited`` error,
then close 1008), message size, subscriptions. Client input that is not a JSON text object
(a binary frame, bad JSON, nesting deeper than ``JSON_DEPTH_MAX``) is answered with an error
message and the connection stays open; nothing a client sends closes it with 1011.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio
from starlette.websockets import WebSocket, WebSocketDisconnect

from node.api.history import HistoryIndex, HistoryItem, event_body
from node.api.overload import LoopLag
from node.api.params import InputError, parse_json
from node.api.queries import Queries, QueryError
from node.api.ratelimit import RateLimiter
from node.api.server import ABORT_KEY
from node.indexer.db import Candle
from node.indexer.reads import HistoryReads, interval_ms
from node.logs import fields, get_logger

if TYPE_CHECKING:
    from node.chain import Executed
    from node.config import ApiSettings
    from node.node import Node

log = get_logger("api")

OUTBOUND_QUEUE_MAX = 256
SUBSCRIPTIONS_PER_CONNECTION_MAX = 32
MESSAGE_BYTES_MAX = 4096
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN_LATER = 1013


def open_lists(q: Any, sub: Any) -> dict[str, Any]:
    """The account channel's open orders, running TWAPs and TP/SL groups (the orders route's
    lists)."""
    body = q.open_orders(sub.address)
    return {"orders": body["orders"], "twaps": body["twaps"], "tpsl_groups": body["tpsl_groups"]}


class Subscription:
    __slots__ = (
        "address", "channel", "depth", "height", "interval_ms", "last", "market", "seq", "sub_id",
    )  # fmt: skip

    def __init__(self, sub_id: Any, channel: str) -> None:
        self.sub_id = sub_id
        self.channel = channel
        self.market = ""
        self.depth = 10
        self.address = ""
        self.interval_ms = 0
        self.seq = 0
        # Height the snapshot reflects: updates of blocks at or below it are already in it.
        self.height = 0
        self.last: Any = None


class Close:
    """Queued after the last message a connection gets: the writer sends this close frame."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class Connection:
    def __init__(
        self, client: str = "unknown", messages_per_s: float = 20.0, message_burst: int = 40
    ) -> None:
        self.send_channel, self.receive_channel = trio.open_memory_channel[str | Close](
            OUTBOUND_QUEUE_MAX
        )
        self.client = client
        self.subs: dict[Any, Subscription] = {}
        self.too_slow = False
        self.closing = False  # a close is queued: nothing more is read or queued
        self.closed = trio.Event()
        self.messages = RateLimiter(messages_per_s, message_burst, keys_max=1)
        # When the send in flight started (trio clock), None between sends: the watchdog's.
        self.send_started_s: float | None = None

    def push(self, message: dict[str, Any]) -> None:
        if self.too_slow or self.closing:
            return
        try:
            self.send_channel.send_nowait(json.dumps(message, separators=(",", ":")))
        except (trio.WouldBlock, trio.ClosedResourceError):
            self.too_slow = True
            self.closed.set()

    def close_after_queue(self, code: int, reason: str) -> None:
        """Close once what is queued is sent (an error message explaining the close, say)."""
        if self.too_slow or self.closing:
            return
        try:
            self.send_channel.send_nowait(Close(code, reason))
            self.closing = True
        except (trio.WouldBlock, trio.ClosedResourceError):
            self.too_slow = True
            self.closed.set()


class StreamHub:
    def __init__(
        self,
        node: Node,
        queries: Queries,
        settings: ApiSettings,
        lag: LoopLag | None = None,
        history: HistoryReads | None = None,
    ) -> None:
        self.node = node
        self.queries = queries
        self.history = history
        self.settings = settings
        self.lag = lag
        self.write_timeout_s = settings.websocket_write_timeout_ms / 1000
        self.connections: set[Connection] = set()
        self.by_client: dict[str, int] = {}

    # ---- per block -----------------------------------------------------------------------

    def on_block(self, executed: Executed) -> None:
        if not self.connections:
            return
        block_index = HistoryIndex()
        block_index.add_block(executed.height, executed.timestamp_ms, executed.result.events)
        # This runs inside the consensus loop: each distinct book or account is read once per
        # block however many subscribers share it.
        memo: dict[tuple[str, str, int], Any] = {}
        for conn in list(self.connections):
            for sub in list(conn.subs.values()):
                if executed.height <= sub.height:
                    continue
                key = (sub.channel, sub.market or sub.address, sub.depth)
                if key not in memo:
                    memo[key] = self.update_data(sub, executed, block_index)
                data = self.changed(sub, memo[key])
                if data is None:
                    continue
                sub.seq += 1
                conn.push(
                    {
                        "type": "update",
                        "id": sub.sub_id,
                        "channel": sub.channel,
                        "seq": sub.seq,
                        "height": executed.height,
                        "data": data,
                    }
                )

    def on_candles(self, height: int, candles: list[Candle]) -> None:
        """The indexer wrote blocks up to ``height``: the candles they changed, as stored, to
        each ``candles`` subscription of their market and interval."""
        if not candles or self.history is None:
            return
        history = self.history
        changed: dict[tuple[int, int], list[Candle]] = {}
        for candle in candles:
            changed.setdefault((candle.market_id, candle.interval_ms), []).append(candle)
        for conn in list(self.connections):
            for sub in list(conn.subs.values()):
                if sub.channel != "candles" or height <= sub.height:
                    continue
                market = self.queries.lookup_market(sub.market)
                mine = changed.get((market.market_id, sub.interval_ms))
                if not mine:
                    continue
                sub.seq += 1
                sub.height = height
                data = {"candles": [history.candle_json(c) for c in mine]}
                conn.push(
                    {
                        "type": "update",
                        "id": sub.sub_id,
                        "channel": sub.channel,
                        "seq": sub.seq,
                        "height": height,
                        "data": data,
                    }
                )

    @staticmethod
    def changed(sub: Subscription, data: Any) -> Any:
        """A book update only when its levels differ from what this subscriber last got."""
        if sub.channel != "book" or data is None:
            return data
        if data == sub.last:
            return None
        sub.last = data
        return data

    def update_data(self, sub: Subscription, executed: Executed, index: HistoryIndex) -> Any:
        q = self.queries
        if sub.channel == "candles":
            return None  # sent by on_candles once the indexer has written the block
        if sub.channel == "book":
            book = q.book(sub.market, sub.depth)
            return {"bids": book["bids"], "asks": book["asks"]}
        if sub.channel == "trades":
            market = q.lookup_market(sub.market)
            recent, _ = index.market_items(index.trades, market.market_id)
            trades = [q.trade_json(i) for i in recent]
            return {"trades": trades} if trades else None
        if sub.channel == "blocks":
            return {
                "height": executed.height,
                "block_hash": executed.block_hash.hex(),
                "state_root": executed.state_root.hex(),
                "timestamp_ms": executed.timestamp_ms,
                "txs": len(executed.txs),
            }
        if sub.channel == "account":
            return self.account_update(sub, executed)
        if sub.channel == "markets":
            return self.markets_update(executed)
        return None

    def markets_update(self, executed: Executed) -> Any:
        """The block's market events (states, listings, parameter changes), or None."""
        q = self.queries
        events = []
        for i, event in enumerate(executed.result.events):
            if event[0] not in MARKET_EVENT_KINDS:
                continue
            body = event_body(event)
            if body is not None:
                item = HistoryItem(executed.height, i, executed.timestamp_ms, str(event[0]), body)
                events.append(q.event_json(item))
        return {"events": events} if events else None

    def account_update(self, sub: Subscription, executed: Executed) -> Any:
        """Every event of the block naming the account, then its account and open orders."""
        q = self.queries
        who = q.lookup_address(sub.address)
        events = []
        for i, event in enumerate(executed.result.events):
            body = event_body(event)
            if body is None or who not in HistoryIndex.accounts_of(body):
                continue
            item = HistoryItem(executed.height, i, executed.timestamp_ms, str(event[0]), body)
            events.append(q.event_json(item))
        if not events:
            return None
        return {"events": events, "account": q.account(sub.address), **open_lists(q, sub)}

    async def candles_snapshot(self, sub: Subscription) -> Any:
        """The last candles from the database (read in a worker thread)."""
        history = self.history
        if history is None:
            raise QueryError(404, "history_disabled", "this node keeps no history database")
        market_id = self.queries.lookup_market(sub.market).market_id
        candles, sub.height = await trio.to_thread.run_sync(
            history.recent_candles, market_id, sub.interval_ms
        )
        return {"candles": candles}

    def snapshot(self, sub: Subscription) -> Any:
        """The subscription's current data; sets ``sub.height`` to the height it reflects.

        Between applying a block and storing it the in-memory state is one block ahead of the
        store and of the history index, so each channel names the height of its own source."""
        q = self.queries
        if sub.channel == "book":
            book = q.book(sub.market, sub.depth)
            sub.height = book["height"]
            sub.last = {"bids": book["bids"], "asks": book["asks"]}
            return sub.last
        if sub.channel == "trades":
            sub.height = q.indexed_height
            return q.trades(sub.market, 50)
        if sub.channel == "blocks":
            status = q.status()
            sub.height = status["height"]
            return status
        if sub.channel == "account":
            account = q.account(sub.address)
            sub.height = account["height"]
            return {"account": account, **open_lists(q, sub)}
        if sub.channel == "markets":
            body = q.markets()
            sub.height = body["height"]
            keys = ("symbol", "market_id", "state", "state_cause", "state_reason")
            return {"markets": [{k: m[k] for k in keys} for m in body["markets"]]}
        raise QueryError(400, "unknown_channel", f"no channel {sub.channel!r}")

    # ---- the endpoint --------------------------------------------------------------------

    async def endpoint(self, websocket: WebSocket) -> None:
        client = websocket.client.host if websocket.client else "unknown"
        refusal = self.refusal(client)
        if refusal is not None:
            reason, text = refusal
            self.node.metrics.websocket_disconnects.labels(reason=reason).inc()
            # Accepted first: a close during the handshake reaches the client as an HTTP 403,
            # without the close code and reason.
            await websocket.accept()
            await websocket.close(code=CLOSE_TRY_AGAIN_LATER, reason=text)
            return
        settings = self.settings
        conn = Connection(
            client, float(settings.websocket_messages_per_s), settings.websocket_message_burst
        )
        # Counted before the handshake's await, so concurrent handshakes cannot pass the caps.
        self.connections.add(conn)
        self.by_client[client] = self.by_client.get(client, 0) + 1
        self._count_connections()
        try:
            await websocket.accept()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, websocket, conn, nursery.cancel_scope)
                nursery.start_soon(self._count_slow, conn)
                nursery.start_soon(self._watchdog, websocket, conn)
                await self._reader(websocket, conn)
                # A consumer found too slow or being closed: the writer is sending its close
                # frame (the reader stops once the close starts) and ends the connection when
                # it is out, or the watchdog aborts it.
                if not (conn.too_slow or conn.closing):
                    nursery.cancel_scope.cancel()
        except WebSocketDisconnect:
            pass
        finally:
            self.connections.discard(conn)
            left = self.by_client[client] - 1
            if left:
                self.by_client[client] = left
            else:
                del self.by_client[client]
            self._count_connections()

    def refusal(self, client: str) -> tuple[str, str] | None:
        """Why a new connection from ``client`` is refused (metric reason, close reason)."""
        if self.lag is not None and self.lag.overloaded():
            return "overloaded", "the node is overloaded; retry later"
        if len(self.connections) >= self.settings.websocket_connections_max:
            return "too_many_connections", "too many WebSocket connections"
        if self.by_client.get(client, 0) >= self.settings.websocket_connections_per_client_max:
            return "too_many_client_connections", "too many WebSocket connections from this address"
        return None

    def _subscriber_count(self) -> int:
        return sum(len(c.subs) for c in self.connections)

    def _count_connections(self) -> None:
        metrics = self.node.metrics
        metrics.websocket_connections.set(len(self.connections))
        metrics.websocket_subscribers.set(self._subscriber_count())

    async def _writer(self, ws: WebSocket, conn: Connection, scope: trio.CancelScope) -> None:
        """Sends the queue in order; for a consumer found too slow, the close frame instead of
        the rest. The close is sent by this task, after the send in flight: the server's send
        cannot be interrupted, and cancelling the close while it waits would drop the
        connection without its code and reason (the watchdog ends a send that never does)."""
        try:
            async for item in conn.receive_channel:
                if conn.too_slow:
                    break
                if isinstance(item, Close):
                    await self._timed(conn, ws.close(code=item.code, reason=item.reason))
                    break
                await self._timed(conn, ws.send_text(item))
            if conn.too_slow:
                reason = "consumer too slow; resubscribe"
                await self._timed(conn, ws.close(code=CLOSE_POLICY, reason=reason))
        except (WebSocketDisconnect, RuntimeError):
            pass
        scope.cancel()

    @staticmethod
    async def _timed(conn: Connection, send: Any) -> None:
        conn.send_started_s = trio.current_time()
        try:
            await send
        finally:
            conn.send_started_s = None

    async def _watchdog(self, ws: WebSocket, conn: Connection) -> None:
        """Aborts the connection when one send has been in flight longer than the write
        timeout: its client stopped reading (and maybe its close frame is stuck too)."""
        timeout_s = self.write_timeout_s
        while True:
            await trio.sleep(timeout_s / 2)
            started = conn.send_started_s
            if started is None or trio.current_time() - started <= timeout_s:
                continue
            self.node.metrics.websocket_disconnects.labels(reason="write_timeout").inc()
            log.info("websocket_write_timeout", extra=fields(client=conn.client))
            abort: Callable[[], None] | None = ws.scope.get("state", {}).get(ABORT_KEY)
            if abort is not None:
                abort()
            conn.closed.set()
            return

    async def _count_slow(self, conn: Connection) -> None:
        """Counts the disconnect when the consumer is found too slow (its close frame may wait
        until the consumer reads what is already in flight)."""
        await conn.closed.wait()
        if conn.too_slow:
            self.node.metrics.websocket_disconnects.labels(reason="slow_consumer").inc()

    async def _reader(self, ws: WebSocket, conn: Connection) -> None:
        while not conn.closing:
            try:
                received = await ws.receive()
            except (WebSocketDisconnect, RuntimeError):
                return
            if received["type"] == "websocket.disconnect":
                return
            if conn.messages.take("", trio.current_time()):
                self.node.metrics.websocket_disconnects.labels(reason="rate_limited").inc()
                limit = self.settings.websocket_messages_per_s
                conn.push(error("rate_limited", f"more than {limit} messages per second"))
                conn.close_after_queue(CLOSE_POLICY, "too many messages")
                return
            try:
                message = self.parse(received.get("text"))
            except InputError as exc:
                conn.push(error(exc.code, exc.message))
                continue
            await self.handle(conn, message)

    @staticmethod
    def parse(text: str | None) -> dict[str, Any]:
        """A client message as a dict; InputError says what is wrong with it."""
        if text is None:
            raise InputError(400, "malformed", "messages must be JSON text frames, not binary")
        if len(text) > MESSAGE_BYTES_MAX:
            raise InputError(
                400, "message_too_large", f"messages are limited to {MESSAGE_BYTES_MAX}"
            )
        message = parse_json(text)
        if not isinstance(message, dict):
            raise InputError(400, "malformed", "message must be a JSON object")
        return message

    async def handle(self, conn: Connection, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "ping":
            conn.push({"type": "pong"})
            return
        sub_id = message.get("id")
        if not isinstance(sub_id, int | str) or isinstance(sub_id, bool):
            conn.push(error("bad_id", "id must be a number or string"))
            return
        if op == "unsubscribe":
            removed = conn.subs.pop(sub_id, None)
            self.node.metrics.websocket_subscribers.set(self._subscriber_count())
            conn.push({"type": "unsubscribed", "id": sub_id, "found": removed is not None})
            return
        if op != "subscribe":
            conn.push(error("unknown_op", "op must be subscribe, unsubscribe or ping"))
            return
        if len(conn.subs) >= SUBSCRIPTIONS_PER_CONNECTION_MAX or sub_id in conn.subs:
            conn.push(error("bad_subscription", "duplicate id or too many subscriptions", sub_id))
            return
        sub = Subscription(sub_id, str(message.get("channel", "")))
        try:
            self._configure(sub, message)
            if sub.channel == "candles":
                data = await self.candles_snapshot(sub)
            else:
                data = self.snapshot(sub)
        except InputError as exc:
            conn.push(error(exc.code, exc.message, sub_id))
            return
        conn.subs[sub_id] = sub
        self.node.metrics.websocket_subscribers.set(self._subscriber_count())
        conn.push(
            {
                "type": "snapshot",
                "id": sub_id,
                "channel": sub.channel,
                "seq": 0,
                "height": sub.height,
                "data": data,
            }
        )

    def _configure(self, sub: Subscription, message: dict[str, Any]) -> None:
        q = self.queries
        if sub.channel in ("book", "trades", "candles"):
            market = message.get("market")
            if not isinstance(market, str):
                raise QueryError(400, "bad_market", "market is required")
            sub.market = q.lookup_market(market).symbol
            depth = message.get("depth", 10)
            if not isinstance(depth, int) or isinstance(depth, bool) or not 1 <= depth <= 100:
                raise QueryError(400, "bad_depth", "depth must be 1..100")
            sub.depth = depth
            if sub.channel == "candles":
                sub.interval_ms = interval_ms(message.get("interval"))
        elif sub.channel == "account":
            address = message.get("address")
            if not isinstance(address, str):
                raise QueryError(400, "bad_address", "address is required")
            sub.address = q.lookup_address(address).hex()
        elif sub.channel not in ("blocks", "markets"):
            raise QueryError(
                400,
                "unknown_channel",
                "channel must be book, trades, blocks, account, candles or markets",
            )


MARKET_EVENT_KINDS = frozenset(
    {"market_state", "market_listed", "market_changed", "market_controls", "market_delisted"}
)


def error(code: str, message: str, sub_id: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if sub_id is not None:
        out["id"] = sub_id
    return out
