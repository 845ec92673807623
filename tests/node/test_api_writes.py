"""The API's HTTP/1.1 protocol writes each response in one piece (node/api/server.py,
``JsonH11Protocol._send_h11_event``): hypercorn alone writes the head, the body and an empty
end separately, three locked socket writes per submitted transaction. The protocol runs here
as the server runs it, with its transport's send recorded."""

from __future__ import annotations

from typing import Any

import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.events import RawData
from hypercorn.trio.task_group import TaskGroup
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import wrap_app

from node.api.server import JsonH11Protocol

BODY = b'{"status":"pending"}'


async def json_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    status = 204 if scope["path"] == "/empty" else 202
    body = b"" if status == 204 else BODY
    headers = [(b"content-type", b"application/json")]
    if body:
        headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def writes_for(requests: bytes, responses: int) -> list[bytes]:
    writes: list[bytes] = []
    done = trio.Event()

    async def send(event: Any) -> None:
        if isinstance(event, RawData):
            writes.append(event.data)
            if sum(w.startswith(b"HTTP/1.1 ") for w in writes) == responses:
                done.set()

    config = HyperConfig()
    async with TaskGroup() as task_group:
        protocol = JsonH11Protocol(
            wrap_app(json_app, config.wsgi_max_body_size, "asgi"),  # type: ignore[arg-type]
            config,
            WorkerContext(None),
            task_group,
            ConnectionState({}),
            False,
            ("127.0.0.1", 40000),
            ("127.0.0.1", 8080),
            send,
        )
        await protocol.handle(RawData(data=requests))
        with trio.fail_after(10):
            await done.wait()
        await trio.sleep(0.05)  # anything written after the last response would show here
    return writes


def post(body: bytes) -> bytes:
    head = f"POST /v1/txs HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


async def test_each_response_is_one_write() -> None:
    writes = await writes_for(post(b"abc"), 1)
    assert len(writes) == 1
    assert writes[0].startswith(b"HTTP/1.1 202 ")
    assert writes[0].endswith(b"\r\n\r\n" + BODY)


async def test_a_response_without_body_is_one_write_too() -> None:
    writes = await writes_for(b"GET /empty HTTP/1.1\r\nHost: x\r\n\r\n", 1)
    assert len(writes) == 1
    assert writes[0].startswith(b"HTTP/1.1 204 ") and writes[0].endswith(b"\r\n\r\n")


async def test_keep_alive_requests_get_one_write_each() -> None:
    writes = await writes_for(post(b"a") + post(b"bb"), 2)
    assert len(writes) == 2
    assert all(w.startswith(b"HTTP/1.1 202 ") and w.endswith(BODY) for w in writes)
