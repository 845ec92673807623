"""``perpbft watch book|trades MARKET``: follow a market live over the node's WebSocket.

Subscribes at ``/v1/ws`` and prints the snapshot and then each update (a table refreshed in
place for people; one JSON message per line with ``--json``). ``--count N`` stops after N
updates and ``--seconds S`` after S seconds, so scripts can use it. A gap in the sequence
numbers (the node dropped us or we missed a message) is reported and ends the command with
exit code 1, because the printed book could be wrong after it.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any
from urllib.parse import urlsplit

import trio
from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

from cli.errors import EXIT_OK, EXIT_REJECTED, EXIT_USAGE, CliError
from cli.trade_common import add_common_arguments, console, format_time_ms, node_url, table

MESSAGE_BYTES_MAX = 4 * 1024 * 1024
# Error codes that mean the subscription itself was wrong (an unknown market, a bad depth):
# exit 2 like the same mistake in `perpbft book`; any other refusal exits 1.
USAGE_ERROR_CODES = frozenset(
    {"unknown_market", "bad_market", "bad_depth", "bad_address", "unknown_channel", "malformed"}
)


def register(sub: Any) -> None:
    watch = sub.add_parser("watch", help="follow a market's book or trades live (WebSocket)")
    watch.add_argument("channel", choices=("book", "trades"))
    watch.add_argument("market")
    watch.add_argument("--depth", type=int, default=10, help="book levels (1..100)")
    watch.add_argument("--count", type=int, default=None, help="stop after N updates")
    watch.add_argument("--seconds", type=float, default=None, help="stop after S seconds")
    add_common_arguments(watch, key=True)
    watch.set_defaults(func=cmd_watch)


def ws_url(http_url: str) -> str:
    parts = urlsplit(http_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}/v1/ws"


class Watch:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.console = console()
        self.updates = 0
        self.expected_seq = 0
        self.gap: str | None = None

    def done(self) -> bool:
        return self.args.count is not None and self.updates >= self.args.count

    def on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "error":
            code = message.get("code")
            exit_code = EXIT_USAGE if code in USAGE_ERROR_CODES else EXIT_REJECTED
            raise CliError(f"{code}: {message.get('message')}", exit_code)
        if kind not in ("snapshot", "update"):
            return
        if message.get("seq") != self.expected_seq:
            self.gap = f"expected seq {self.expected_seq}, got {message.get('seq')}"
            return
        self.expected_seq += 1
        if kind == "update":
            self.updates += 1
        if self.args.json:
            print(json.dumps(message, separators=(",", ":")), flush=True)
        else:
            self.render(message)

    def render(self, message: dict[str, Any]) -> None:
        data = message.get("data") or {}
        height = message.get("height")
        if self.args.channel == "book":
            asks = list(reversed(data.get("asks", [])))
            rows = [["", price, size] for price, size, _ in asks]
            rows += [[size, price, ""] for price, size, _ in data.get("bids", [])]
            title = f"{self.args.market} book at height {height} ({message['type']})"
            self.console.print(table(title, ["bid size", "price", "ask size"], rows))
            return
        trades = data.get("trades", [])
        for t in reversed(trades) if message["type"] == "snapshot" else trades:
            self.console.print(
                f"{format_time_ms(t.get('timestamp_ms'))} {t['height']:>8} "
                f"{t['taker_side']:<4} {t['size']:>12} @ {t['price']}"
            )


async def run_watch(args: argparse.Namespace) -> Watch:
    watch = Watch(args)
    request = {"op": "subscribe", "id": 1, "channel": args.channel, "market": args.market}
    if args.channel == "book":
        request["depth"] = args.depth
    seconds = math.inf if args.seconds is None else args.seconds
    url = ws_url(node_url(args))
    with trio.move_on_after(seconds):
        async with open_websocket_url(
            url, message_queue_size=64, max_message_size=MESSAGE_BYTES_MAX
        ) as ws:
            await ws.send_message(json.dumps(request))
            while not watch.done() and watch.gap is None:
                watch.on_message(json.loads(await ws.get_message()))
    return watch


async def _unwrapped(args: argparse.Namespace) -> Watch:
    """run_watch, with a lone exception out of the WebSocket's nursery unwrapped."""
    try:
        return await run_watch(args)
    except BaseExceptionGroup as group:
        leaves = group.exceptions
        while len(leaves) == 1 and isinstance(leaves[0], BaseExceptionGroup):
            leaves = leaves[0].exceptions
        if len(leaves) == 1:
            raise leaves[0] from None
        raise


def cmd_watch(args: argparse.Namespace) -> int:
    if not 1 <= args.depth <= 100:
        raise CliError("--depth must be 1..100")
    if args.count is not None and args.count < 0:
        raise CliError("--count must be non-negative")
    if args.seconds is not None and args.seconds < 0:
        raise CliError("--seconds must be non-negative")
    try:
        watch = trio.run(_unwrapped, args)
    except HandshakeError as exc:
        raise CliError(f"cannot open the WebSocket at {ws_url(node_url(args))}: {exc}") from None
    except ConnectionClosed as exc:
        reason = exc.reason
        raise CliError(f"the node closed the stream: {reason}", EXIT_REJECTED) from None
    except OSError as exc:
        raise CliError(f"cannot reach node at {node_url(args)}: {exc}") from None
    if watch.gap is not None:
        raise CliError(f"sequence gap ({watch.gap}): resubscribe for a fresh snapshot", 1)
    return EXIT_OK
