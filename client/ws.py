"""WebSocket subscriptions (``/v1/ws``, docs/API.md) that survive a lost connection and a
lost message.

Theory of operation. The node numbers the messages of each subscription: a ``snapshot`` with
``seq`` 0, then ``update`` messages with ``seq`` 1, 2, ... (one more each time). The
:class:`SubscriptionTracker` (pure: messages in, events and requests out) keeps the ``seq`` it
expects next for every subscription. An update with another ``seq`` means a message was lost,
so applying later updates to the caller's copy would be wrong: the tracker drops it, asks for
the subscription again (unsubscribe, then subscribe with the same id) and ignores that
subscription's messages until its new snapshot, which the caller receives marked
``resync="gap"``. :class:`Stream` runs the tracker over a real connection: when the connection
fails or closes it connects again (to the next URL given, after a delay that doubles up to a
bound and resets once a connection works), subscribes to everything again, and the caller
receives each new snapshot marked ``resync="reconnect"``. A snapshot replaces the caller's
state, so after either kind of resync it is exact again.

The node refusing a subscription (an ``error`` naming its id: unknown market, bad channel) is
the caller's mistake and raises :class:`SubscriptionError`; it is not retried.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import trio
from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

RECONNECT_DELAY_MS = 200
RECONNECT_DELAY_MAX_MS = 5_000
CONNECT_TIMEOUT_S = 10.0
CHANNELS = frozenset({"book", "trades", "blocks", "account", "candles"})


class SubscriptionError(Exception):
    def __init__(self, sub_id: Any, code: str, message: str) -> None:
        super().__init__(f"subscription {sub_id}: {code}: {message}")
        self.sub_id = sub_id
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Event:
    """One snapshot or update of one subscription. ``resync`` is ``None`` for the first
    snapshot and for updates, ``"gap"`` or ``"reconnect"`` for a snapshot that replaces what
    the caller held after a lost message or connection."""

    kind: str  # "snapshot" or "update"
    sub_id: int
    channel: str
    seq: int
    height: int
    data: Any
    resync: str | None = None


def ws_url(node_url: str) -> str:
    """``http://host:port`` -> ``ws://host:port/v1/ws`` (https -> wss)."""
    base = node_url.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base[len("https://") :] + "/v1/ws"
    if base.startswith("http://"):
        return "ws://" + base[len("http://") :] + "/v1/ws"
    return base


class SubscriptionTracker:
    """The sequence bookkeeping of every subscription of one client, across connections."""

    def __init__(self) -> None:
        self.specs: dict[int, dict[str, Any]] = {}  # id -> the subscribe message
        self.expected: dict[int, int] = {}  # id -> next seq; absent: waiting for a snapshot
        self.resync: dict[int, str | None] = {}  # id -> why the next snapshot is a resync
        self.gaps = 0

    def add(self, sub_id: int, channel: str, params: dict[str, Any]) -> dict[str, Any]:
        if channel not in CHANNELS:
            raise SubscriptionError(sub_id, "bad_channel", f"channels: {sorted(CHANNELS)}")
        if sub_id in self.specs:
            raise SubscriptionError(sub_id, "bad_subscription", "id already in use")
        spec = {"op": "subscribe", "id": sub_id, "channel": channel, **params}
        self.specs[sub_id] = spec
        self.resync[sub_id] = None
        return spec

    def on_connect(self, first: bool) -> list[dict[str, Any]]:
        """The subscribe messages to send on a (new) connection."""
        self.expected.clear()
        if not first:
            for sub_id in self.specs:
                self.resync[sub_id] = "reconnect"
        return list(self.specs.values())

    def on_message(self, msg: dict[str, Any]) -> tuple[Event | None, list[dict[str, Any]]]:
        """The event to hand to the caller (if any) and the messages to send back."""
        kind = msg.get("type")
        sub_id = msg.get("id")
        if kind == "error" and sub_id in self.specs:
            raise SubscriptionError(sub_id, str(msg.get("code")), str(msg.get("message")))
        if kind not in ("snapshot", "update") or not isinstance(sub_id, int):
            return None, []  # pong, unsubscribed, errors without an id
        if sub_id not in self.specs:
            return None, []  # a subscription given up
        if kind == "snapshot":
            return self._snapshot(sub_id, msg), []
        return self._update(sub_id, msg)

    def _snapshot(self, sub_id: int, msg: dict[str, Any]) -> Event:
        self.expected[sub_id] = int(msg["seq"]) + 1
        why = self.resync[sub_id]
        self.resync[sub_id] = None
        return event_of("snapshot", sub_id, self.specs[sub_id]["channel"], msg, why)

    def _update(self, sub_id: int, msg: dict[str, Any]) -> tuple[Event | None, list[Any]]:
        want = self.expected.get(sub_id)
        if want is None:
            return None, []  # already resubscribing: the new snapshot will carry this
        if int(msg["seq"]) != want:
            self.gaps += 1
            del self.expected[sub_id]
            self.resync[sub_id] = "gap"
            return None, [{"op": "unsubscribe", "id": sub_id}, self.specs[sub_id]]
        self.expected[sub_id] = want + 1
        return event_of("update", sub_id, self.specs[sub_id]["channel"], msg, None), []


def event_of(kind: str, sub_id: int, channel: str, msg: dict[str, Any], why: str | None) -> Event:
    return Event(kind, sub_id, channel, int(msg["seq"]), int(msg.get("height", 0)),
                 msg.get("data"), why)  # fmt: skip


class Stream:
    """Subscriptions to one of ``node_urls`` (tried in turn), kept alive across failures.

    stream = Stream(["http://127.0.0.1:26657"])
    stream.subscribe("book", market="BTC-PERP", depth=10)
    async with stream.open() as events:
        async for event in events:
            ...
    """

    def __init__(
        self, node_urls: str | Sequence[str], reconnect_delay_ms: int = RECONNECT_DELAY_MS,
        reconnect_delay_max_ms: int = RECONNECT_DELAY_MAX_MS,
    ) -> None:  # fmt: skip
        urls = [node_urls] if isinstance(node_urls, str) else list(node_urls)
        if not urls:
            raise ValueError("a Stream needs at least one node URL")
        self.urls = [ws_url(u) for u in urls]
        self.reconnect_delay_ms = reconnect_delay_ms
        self.reconnect_delay_max_ms = reconnect_delay_max_ms
        self.tracker = SubscriptionTracker()
        self.reconnects = 0
        self.connected_url = ""
        self.delivered_since_connect = 0
        self._next_id = 1

    def subscribe(self, channel: str, **params: Any) -> int:
        """Add a subscription (before :meth:`events` starts); returns its id."""
        sub_id = self._next_id
        self._next_id += 1
        self.tracker.add(sub_id, channel, params)
        return sub_id

    @asynccontextmanager
    async def open(self, buffer: int = 1024) -> AsyncIterator[trio.MemoryReceiveChannel[Event]]:
        """The events of every subscription, for ``async for``; the connection (and every
        reconnection) runs in the background until the block exits."""
        send, receive = trio.open_memory_channel[Event](buffer)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.run, send)
            try:
                yield receive
            finally:
                nursery.cancel_scope.cancel()

    async def run(self, send: trio.MemorySendChannel[Event]) -> None:
        """Deliver every event into ``send`` forever, reconnecting as needed."""
        delay_ms = self.reconnect_delay_ms
        attempt = 0
        while True:
            url = self.urls[attempt % len(self.urls)]
            # A lost or refused connection is what this loop is for: connect again.
            with suppress(ConnectionClosed, HandshakeError, OSError, trio.TooSlowError):
                await self._session(url, attempt == 0, send)
            if self.delivered_since_connect:
                delay_ms = self.reconnect_delay_ms  # a connection that worked resets the delay
            attempt += 1
            self.reconnects += 1
            await trio.sleep(delay_ms / 1000)
            delay_ms = min(delay_ms * 2, self.reconnect_delay_max_ms)

    async def _session(self, url: str, first: bool, send: trio.MemorySendChannel[Event]) -> None:
        self.delivered_since_connect = 0
        async with open_websocket_url(
            url, connect_timeout=CONNECT_TIMEOUT_S, disconnect_timeout=CONNECT_TIMEOUT_S
        ) as ws:
            self.connected_url = url
            for message in self.tracker.on_connect(first):
                await ws.send_message(json.dumps(message))
            while True:
                msg = json.loads(await ws.get_message())
                if not isinstance(msg, dict):
                    continue
                event, replies = self.tracker.on_message(msg)
                for reply in replies:
                    await ws.send_message(json.dumps(reply))
                if event is not None:
                    self.delivered_since_connect += 1
                    await send.send(event)
