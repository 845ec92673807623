"""The API's fast lane for submissions (node/api/server.py, ``parse_fast_request``): a plain
``POST /v1/txs`` or ``/v1/txs/batch`` that arrives whole is answered from the connection's
read loop without h11, a hypercorn stream or an app task. Clients must see no difference:
the same requests, sent to two nodes on real sockets, one with the fast lane and one with
every request on the full path, get the same bytes back (the ``date`` header aside) and leave
the same request counts; requests the fast lane must not take (a query string, CORS, a
``Connection`` header, a body split over two writes, a body over the limit) take the full
path on both."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio

from node.api import server
from node.api.app import build_app
from node.node import now_ms
from state_machine.crypto import Keypair
from tests.node.test_api_pieces import ALICE, BOB
from tests.node.test_api_served import opened_node, order, served

DATE = re.compile(rb"\r\ndate: [^\r]*\r\n")


def post(path: str, body: bytes, *extra: str, ctype: str = "application/msgpack") -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: node", f"Content-Type: {ctype}", *extra]
    head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def signed(key: Keypair, nonce: int) -> bytes:
    return order(key, nonce, True, 6_000_000, 10)


def plain_requests(nonce: int) -> list[bytes]:
    """Requests the fast lane takes, in an order whose answers depend on each other."""
    tx, other = signed(ALICE, nonce), signed(BOB, nonce)
    forgery = signed(ALICE, nonce + 5)
    forged = forgery[:-1] + bytes([forgery[-1] ^ 1])
    return [
        post("/v1/txs", tx),  # 202 pending
        post("/v1/txs", tx),  # 409 duplicate
        post("/v1/txs", b"\xc1garbage"),  # 400 malformed
        post("/v1/txs", forged),  # 400 bad signature
        post("/v1/txs", b"{}", ctype="text/plain"),  # 415
        post("/v1/txs", b'{"nonce": ', ctype="application/json"),  # 400 bad JSON
        post("/v1/txs", b"", ctype="application/json"),
        post("/v1/txs/batch", msgpack.packb([other, b"\x00", tx])),  # per-tx verdicts
        post("/v1/txs/batch", b"\x93"),  # 400 malformed
        post("/v1/txs/batch", msgpack.packb([])),  # 400: at least one
        # Header names in any case, spaces around values: h11 accepts them as they are.
        b"POST /v1/txs HTTP/1.1\r\nHOST: node\r\nCONTENT-LENGTH:  3 \r\n"
        b"content-type:application/msgpack\r\n\r\nabc",
    ]


def full_path_requests(nonce: int) -> list[bytes]:
    tx = signed(ALICE, nonce + 1)
    return [
        post("/v1/txs?wait=commit&timeout_s=0.05", tx),  # a query string
        post("/v1/txs", signed(BOB, nonce + 1), "Origin: http://example.org"),  # CORS
        post("/v1/txs", signed(ALICE, nonce + 2), "Transfer-Encoding: identity"),
        b"POST /v1/txs HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",  # no Host: 400
        b"POST /v1/txs HTTP/1.0\r\nHost: node\r\nContent-Length: 3\r\n\r\nabc",
        b"POST /v1/txs/ HTTP/1.1\r\nHost: node\r\nContent-Length: 3\r\n\r\nabc",  # 404
    ]


async def read_response(stream: trio.SocketStream, buffer: bytearray) -> bytes:
    """One Content-Length response (every API answer has one); b"" if the server closed."""
    while b"\r\n\r\n" not in buffer:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return b""
        buffer += chunk
    end = buffer.index(b"\r\n\r\n") + 4
    length = int(re.search(rb"content-length: (\d+)", bytes(buffer[:end])).group(1))  # type: ignore[union-attr]
    while len(buffer) < end + length:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        buffer += chunk
    response = bytes(buffer[: end + length])
    del buffer[: end + length]
    return DATE.sub(b"\r\ndate: -\r\n", response)


async def exchange(port: int, requests: list[bytes], split: bool = False) -> list[bytes]:
    """Each request on one keep-alive connection in turn (``split``: each written in two
    pieces, the body later); a closed connection is reopened for the next request."""
    out = []
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    buffer = bytearray()
    for request in requests:
        if split:
            head_end = request.index(b"\r\n\r\n") + 4
            await stream.send_all(request[:head_end])
            await trio.sleep(0.05)
            await stream.send_all(request[head_end:])
        else:
            await stream.send_all(request)
        response = await read_response(stream, buffer)
        out.append(response)
        if not response or b"connection: close" in response:
            await stream.aclose()
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            buffer = bytearray()
    await stream.aclose()
    return out


async def answers(home: Path, nonce: int) -> tuple[list[list[bytes]], list[str]]:
    with opened_node(home) as n:
        async with served(build_app(n)) as (base, nursery):
            nursery.start_soon(n._admission_loop)  # batches go through the admission task
            port = int(base.rsplit(":", 1)[1])
            got = [
                await exchange(port, plain_requests(nonce)),
                await exchange(port, full_path_requests(nonce)),
                await exchange(port, [post("/v1/txs", signed(BOB, nonce + 3))], split=True),
                await exchange(port, [post("/v1/txs", b"x" * (server.FAST_BODY_BYTES_MAX + 1))]),
            ]
        counts = [
            line
            for line in n.metrics.render().decode().splitlines()
            if line.startswith("perpbft_api_requests_total")
        ]
    return got, counts


async def test_answers_are_the_same_bytes_with_and_without_the_fast_lane(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nonce = now_ms()
    taken: list[Any] = []
    parse = server.parse_fast_request

    def counting_parse(data: bytes, routes: Any) -> server.FastRequest | None:
        request = parse(data, routes)
        if request is not None:
            taken.append(request)
        return request

    monkeypatch.setattr(server, "parse_fast_request", counting_parse)
    fast, fast_counts = await answers(tmp_path / "fast", nonce)
    assert len(taken) == len(plain_requests(nonce))  # the plain ones, and only those
    monkeypatch.setattr(server, "parse_fast_request", lambda data, routes: None)
    full, full_counts = await answers(tmp_path / "full", nonce)
    assert fast == full
    assert fast_counts == full_counts
    statuses = [int(r.split(b" ", 2)[1]) for r in fast[0]]
    assert statuses == [202, 409, 400, 400, 415, 400, 400, 200, 400, 400, 400]
    assert fast[3][0].startswith(b"HTTP/1.1 413 ") and b"connection: close" in fast[3][0]


def test_the_parser_takes_only_whole_plain_requests() -> None:
    routes = frozenset({(b"POST", b"/v1/txs")})
    whole = post("/v1/txs", b"abc")
    request = server.parse_fast_request(whole, routes)
    assert request is not None and request.body == b"abc"
    assert (b"host", b"node") in request.headers
    assert server.parse_fast_request(whole[:-1], routes) is None  # body not all there
    assert server.parse_fast_request(whole + whole, routes) is None  # pipelined
    assert server.parse_fast_request(whole.replace(b"Host", b"Ho st"), routes) is None
    assert server.parse_fast_request(whole.replace(b"node", b"no\x00de"), routes) is None
    assert server.parse_fast_request(post("/v1/txs", b"a", "Host: b"), routes) is None
    two_lengths = whole.replace(b"Content-Length: 3", b"Content-Length: 3\r\nContent-Length: 3")
    assert server.parse_fast_request(two_lengths, routes) is None
    assert server.parse_fast_request(whole.replace(b"Length: 3", b"Length: +3"), routes) is None
    assert server.parse_fast_request(post("/v1/blocks", b"abc"), routes) is None
    assert server.parse_fast_request(whole.replace(b"POST", b"post"), routes) is None
