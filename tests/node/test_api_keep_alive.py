"""The API's keep-alive timer (node/api/server.py, ``KeepAlive``): one task per connection
whose deadline moves with each request, in place of hypercorn's timer task restarted per
request. A connection idle for the keep-alive timeout is closed; one that keeps sending
requests, or whose request takes longer than the timeout, is not. Served on a real socket."""

from __future__ import annotations

from typing import Any

import trio
from hypercorn.config import Config as HyperConfig

from node.api.server import serve_api

BODY = b'{"status":"ok"}'
TIMEOUT_S = 1.0


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    if scope["path"] == "/slow":
        await trio.sleep(2.5 * TIMEOUT_S)  # a request in progress is never cut by the timer
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


async def serve(nursery: trio.Nursery) -> int:
    config = HyperConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    config.keep_alive_timeout = TIMEOUT_S
    binds = await nursery.start(serve_api, app, config)
    return int(binds[0].rsplit(":", 1)[1])


async def get(stream: trio.SocketStream, path: str) -> bytes:
    await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while not data.endswith(BODY):
        chunk = await stream.receive_some(4096)
        assert chunk, "the server closed the connection under a request"
        data += chunk
    return data


async def closed_by_server(stream: trio.SocketStream) -> bool:
    with trio.move_on_after(20 * TIMEOUT_S):
        return await stream.receive_some(4096) == b""
    return False


async def test_an_idle_connection_is_closed_after_the_keep_alive_timeout() -> None:
    async with trio.open_nursery() as nursery:
        port = await serve(nursery)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        assert (await get(stream, "/")).startswith(b"HTTP/1.1 200 ")
        start = trio.current_time()
        assert await closed_by_server(stream)
        assert trio.current_time() - start >= TIMEOUT_S * 0.9  # not before the timeout
        nursery.cancel_scope.cancel()


async def test_requests_more_often_than_the_timeout_keep_the_connection_open() -> None:
    async with trio.open_nursery() as nursery:
        port = await serve(nursery)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        start = trio.current_time()
        while trio.current_time() - start < 3 * TIMEOUT_S:
            assert (await get(stream, "/")).startswith(b"HTTP/1.1 200 ")
            await trio.sleep(TIMEOUT_S / 10)
        assert await closed_by_server(stream)
        nursery.cancel_scope.cancel()


async def test_a_request_longer_than_the_timeout_is_answered_and_the_connection_kept() -> None:
    async with trio.open_nursery() as nursery:
        port = await serve(nursery)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        assert (await get(stream, "/slow")).startswith(b"HTTP/1.1 200 ")
        assert (await get(stream, "/")).startswith(b"HTTP/1.1 200 ")  # idle clock restarted
        assert await closed_by_server(stream)
        nursery.cancel_scope.cancel()
