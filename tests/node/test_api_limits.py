"""Client mistakes and abuse on a real server: every one is a 4xx (or a shed 503) with a JSON
``code`` and changes nothing; none is a 500, an error log line, or a way to hold the node.

The parsers (integers, JSON depth), a hypothesis fuzz of the whole route table over HTTP,
hang-ups in the middle of a body, the HTTP parser's own errors, HTTP/2 turned off, the
connection caps, and load shedding while the event loop lags."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import msgpack
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Route
from trio_websocket import ConnectionClosed, open_websocket_url

import node.api.app
from node.api.app import build_app
from node.api.params import InputError, json_too_deep, parse_json, parse_uint
from node.api.server import serve_api
from node.api.txjson import transaction_to_json
from node.node import Node, now_ms
from state_machine.tx import CancelAll, sign_transaction
from tests.node.test_api_pieces import ALICE, GENESIS, local_server_config, sample
from tests.node.test_api_served import (
    execute_block,
    opened_node,
    order,
    served,
    until,
    ws_url,
)

# ---- the parsers ---------------------------------------------------------------------------


def test_integers_are_plain_ascii_digits_within_their_range() -> None:
    assert parse_uint("0", "n", 0, 10) == 0
    assert parse_uint("9223372036854775807", "n", 0, 2**63 - 1) == 2**63 - 1
    for text in ("", "-1", "+1", " 1", "1.0", "1e3", "²", "١٢", "0x10", "9" * 20):
        with pytest.raises(InputError) as info:
            parse_uint(text, "n", 0, 2**63 - 1)
        assert (info.value.status, info.value.code) == (400, "bad_parameter")
    with pytest.raises(InputError, match="between 1 and 10"):
        parse_uint("11", "n", 1, 10)


def nesting(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(nesting, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(nesting, value.values()), default=0)
    return 0


TRICKY_TEXT = st.text(alphabet='[]{}"\\ab\n\u00e9', max_size=8)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | TRICKY_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TRICKY_TEXT, inner, max_size=3),
    max_leaves=40,
)


@given(value=JSON_VALUES, depth_max=st.integers(0, 8), ascii_only=st.booleans())
def test_the_depth_scan_agrees_with_the_nesting_json_loads_would_build(
    value: Any, depth_max: int, ascii_only: bool
) -> None:
    """Brackets and quotes inside strings (escaped or not) never fool the scan."""
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert json_too_deep(text, depth_max) == (nesting(value) > depth_max)


def test_json_that_would_exhaust_the_stack_or_is_not_json_is_refused_with_a_code() -> None:
    cases = [
        (b"[" * 60_000, "malformed"),
        (b'{"a":' * 60_000, "malformed"),
        (b"[" * 33 + b"]" * 33, "malformed"),
        (b"\xff\xfe{}", "malformed_json"),
        (b"[NaN]", "malformed_json"),
        (b"1" * 5_000, "malformed_json"),  # over Python's integer digit limit
        (b"{", "malformed_json"),
    ]
    for body, code in cases:
        with pytest.raises(InputError) as info:
            parse_json(body)
        assert (info.value.status, info.value.code) == (400, code), body[:20]
    assert parse_json(b"[" * 32 + b"]" * 32) is not None
    assert parse_json('["[[[[", "\\"[[["]') == ["[[[[", '"[[[']


# ---- the review's inputs, on a real server -------------------------------------------------


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def test_huge_integers_deep_json_and_unicode_digits_are_4xx_not_500(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with opened_node(tmp_path) as n:
        async with (
            served(build_app(n)) as (base, nursery),
            httpx.AsyncClient(base_url=base) as http,
        ):
            nursery.start_soon(n._admission_loop)
            tx = transaction_to_json(
                sign_transaction(ALICE, GENESIS.chain_id, 1, [CancelAll(None)])
            )
            answers = [
                (await http.get("/v1/blocks/18446744073709551616"), 400, "bad_height"),
                (await http.get("/v1/blocks/²"), 400, "bad_height"),
                (await http.get("/v1/markets/²"), 404, "unknown_market"),
                (await http.get("/v1/markets/BTC-PERP/book?depth=²"), 400, "bad_parameter"),
                (await http.get("/v1/accounts/00/fills?cursor=².1"), 400, "bad_address"),
                (
                    await http.get(f"/v1/accounts/{'ab' * 32}/fills?cursor=².1"),
                    400,
                    "bad_cursor",
                ),
                (
                    await http.get(f"/v1/proofs/accounts/{'ab' * 32}?height=99999999999999999999"),
                    400,
                    "bad_parameter",
                ),
                (
                    await http.post(
                        "/v1/txs",
                        content=b"[" * 60_000,
                        headers={"content-type": "application/json"},
                    ),
                    400,
                    "malformed",
                ),
                (
                    await http.post("/v1/txs", json={**tx, "nonce": "²"}),
                    400,
                    "malformed",
                ),
                (
                    await http.post("/v1/txs", json={**tx, "nonce": "-" + "9" * 30}),
                    400,
                    "malformed",
                ),
            ]
    for answer, status, code in answers:
        assert (answer.status_code, answer.json()["code"]) == (status, code), answer.request.url
    assert errors_logged(caplog) == []
    assert sample(n.metrics, "perpbft_api_requests_total", route="error") == 0


# ---- fuzzing the route table -----------------------------------------------------------------

ADDRESS = ALICE.public_key.hex()
# Integers just past every range the node stores, digits Python's int() refuses, and so on.
NASTY_VALUES = [
    *("18446744073709551616", "9223372036854775808", "9" * 40, "²", "١٢", "-1", "1e9", "-0"),
    *("%ff", "%00", "0x10", " 1", "1.5", "nan"),
]
NASTY = st.sampled_from(NASTY_VALUES)
SEGMENTS = st.one_of(
    NASTY,
    NASTY,
    st.sampled_from(["latest", "BTC-PERP", "btc-perp", "0", "2", ADDRESS, "0x" + ADDRESS, "1"]),
    st.integers(-(2**70), 2**70).map(str),
    st.text(max_size=30).filter(lambda t: "/" not in t and "?" not in t and "#" not in t),
    st.binary(max_size=40).map(lambda b: b.hex()),
)
QUERY_NAMES = st.sampled_from(
    ["depth", "limit", "from", "to", "cursor", "height", "wait", "timeout_s", "x"]
)
QUERY_VALUES = SEGMENTS | st.sampled_from(["commit", "nan", "inf", "-1", "1.5", "3.2"])


def deep(n: int, opener: bytes, closer: bytes) -> bytes:
    return opener * n + closer * n


def base_tx_json() -> dict[str, Any]:
    return transaction_to_json(sign_transaction(ALICE, GENESIS.chain_id, 7, [CancelAll(None)]))


def mutated_tx(field: str, value: Any) -> bytes:
    body = base_tx_json()
    body[field] = value
    return json.dumps(body).encode()


JSON_FIELD_VALUES = st.one_of(
    NASTY,
    NASTY.map(lambda t: "-" + t),
    st.integers(-(2**80), 2**80),
    st.sampled_from(["²", "-²", "9" * 25, "-" + "9" * 25, "", "0x", "zz", None, [], {}]),
    st.text(max_size=20),
    st.floats(allow_nan=False),
    JSON_VALUES,
)
BODIES = st.one_of(
    st.binary(max_size=300),
    st.integers(1, 5_000).map(lambda n: deep(n, b"[", b"]")),
    st.integers(1, 5_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.just(b"1" * 5_000),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.builds(mutated_tx, st.sampled_from(sorted(base_tx_json())), JSON_FIELD_VALUES),
    st.builds(mutated_tx, st.sampled_from(sorted(base_tx_json())), JSON_FIELD_VALUES),
    st.builds(mutated_tx, st.sampled_from(sorted(base_tx_json())), JSON_FIELD_VALUES),
    st.lists(st.binary(max_size=60), min_size=0, max_size=5).map(msgpack.packb),
    st.just(msgpack.packb([[[[[[[[[[]]]]]]]]]])),
)
CONTENT_TYPES = st.sampled_from(
    ["application/json", "application/msgpack", "text/plain", "", "application/json; x=1"]
)


async def heartbeat(n: Node) -> None:
    """What the node's clock task does for /livez (consensus does not run here)."""
    while True:
        n.loop_heartbeat_s = time.monotonic()
        await trio.sleep(0.5)


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Node]]:
    """One node with a committed block, served by the real server in a thread (hypothesis
    drives a synchronous client); no per-address limits, proofs wait at most 50 ms."""
    home = tmp_path_factory.mktemp("fuzz")
    started = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        with opened_node(home, client_rate_per_s=1_000_000, client_burst=1_000_000) as n:
            await execute_block(n, [order(ALICE, now_ms(), True, 6_000_000, 10)])
            await execute_block(n, [])
            async with trio.open_nursery() as nursery:
                nursery.start_soon(n._admission_loop)
                nursery.start_soon(heartbeat, n)
                box["base"] = (await nursery.start(serve_api, build_app(n), local_server_config()))[
                    0
                ]
                box["node"] = n
                box["scope"] = nursery.cancel_scope
                box["token"] = trio.lowlevel.current_trio_token()
                started.set()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(node.api.app, "PROOF_CERTIFY_WAIT_S", 0.05)
        thread = threading.Thread(target=trio.run, args=(main,))
        thread.start()
        assert started.wait(30), "the server did not start"
        try:
            yield box["base"], box["node"]
        finally:
            trio.from_thread.run_sync(box["scope"].cancel, trio_token=box["token"])
            thread.join(30)


def api_routes(n: Node) -> list[Route]:
    return [r for r in build_app(n).routes if isinstance(r, Route)]


# The 503s docs/API.md lists: the node sheds load while its event loop lags ("overloaded"),
# which a busy machine reaches during a fuzzing run.
DOCUMENTED_503 = ("not_certified_yet", "mempool_full", "not_ready", "overloaded")


def check_answer(answer: httpx.Response, method: str) -> None:
    """Never a 5xx but the documented 503s; every error has a JSON code."""
    assert answer.status_code < 500 or answer.status_code == 503, (answer.url, answer.text)
    if method == "HEAD":
        return
    payload = answer.json()
    if answer.status_code >= 400:
        assert isinstance(payload.get("code"), str) and payload["code"], payload
    if answer.status_code == 503:
        assert payload["code"] in DOCUMENTED_503, payload


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_every_route_answers_every_nasty_value_with_a_4xx(live_api: tuple[str, Node]) -> None:
    """Deterministic sweep: each nasty value in each path segment and each query parameter
    of each route (the others valid), and in each field of a JSON transaction."""
    base, n = live_api
    valid = {"height": "1", "tx_id": "00" * 32, "market": "BTC-PERP", "address": ADDRESS}
    valid["kind"] = "market"
    valid["proposal_id"] = "1"
    valid["operator"], valid["epoch"] = ADDRESS, "2"
    valid["tx_hash"], valid["log_index"], valid["withdrawal_id"] = "00" * 32, "0", "1"
    names = ["depth", "limit", "from", "to", "cursor", "height", "wait", "timeout_s", "status"]
    with httpx.Client(base_url=base, timeout=30) as http:
        for route in api_routes(n):
            method = "POST" if route.methods == {"POST"} else "GET"
            params = list(route.param_convertors)
            for nasty in NASTY_VALUES:
                for target in [*params, *names]:
                    path = route.path
                    for name in params:
                        value = nasty if name == target else valid[name]
                        path = path.replace("{" + name + "}", quote(value, safe="%"))
                    query = {target: nasty} if target in names else {}
                    body = b"{}" if method == "POST" else None
                    check_answer(http.request(method, path, params=query, content=body), method)
        for field in base_tx_json():
            for nasty in [*NASTY_VALUES, *("-" + v for v in NASTY_VALUES)]:
                body = mutated_tx(field, nasty)
                answer = http.post("/v1/txs", content=body)
                check_answer(answer, "POST")
                assert answer.status_code in (400, 404, 413), (field, nasty, answer.text)


@FUZZ
@given(data=st.data())
def test_fuzzing_every_route_gives_4xx_with_a_code_never_5xx(
    live_api: tuple[str, Node], data: st.DataObject
) -> None:
    base, n = live_api
    route = data.draw(st.sampled_from(api_routes(n)), "route")
    path = route.path
    for name in route.param_convertors:
        segment = data.draw(SEGMENTS, name)
        path = path.replace("{" + name + "}", quote(segment, safe="%"))
    pairs = data.draw(st.lists(st.tuples(QUERY_NAMES, QUERY_VALUES), max_size=4), "query")
    methods = sorted(route.methods or {"GET"})
    method = data.draw(st.sampled_from([*methods, "DELETE"]), "method")
    body = data.draw(BODIES, "body") if method == "POST" else b""
    ctype = data.draw(CONTENT_TYPES, "content type")
    with httpx.Client(base_url=base, timeout=30) as http:
        answer = http.request(
            method,
            path,
            params=httpx.QueryParams(tuple(pairs)),
            content=body,
            headers={"content-type": ctype},
        )
    check_answer(answer, method)


@FUZZ
@given(
    path=st.sampled_from(["/v1/txs", "/v1/txs/batch"]),
    body=BODIES,
    ctype=CONTENT_TYPES,
    wait=st.sampled_from([{}, {"wait": "commit", "timeout_s": "0.01"}, {"wait": "x"}]),
)
def test_fuzzing_submissions_gives_4xx_with_a_code_never_5xx(
    live_api: tuple[str, Node], path: str, body: bytes, ctype: str, wait: dict[str, str]
) -> None:
    base, _ = live_api
    with httpx.Client(base_url=base, timeout=30) as http:
        answer = http.post(path, params=wait, content=body, headers={"content-type": ctype})
    check_answer(answer, "POST")


def test_the_fuzzed_node_logged_no_failure(live_api: tuple[str, Node]) -> None:
    _, n = live_api
    assert sample(n.metrics, "perpbft_api_requests_total", route="error") == 0
    assert sample(n.metrics, "perpbft_api_requests_total", status="500") == 0


# ---- hang-ups --------------------------------------------------------------------------------


@asynccontextmanager
async def raw_connection(base: str, source: str = "127.0.0.1") -> AsyncIterator[trio.SocketStream]:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    sock = trio.socket.socket()
    await sock.bind((source, 0))
    await sock.connect((host, int(port)))
    stream = trio.SocketStream(sock)
    try:
        yield stream
    finally:
        await stream.aclose()


async def read_all(stream: trio.SocketStream, timeout_s: float = 10) -> bytes:
    """One response: until its body is complete by its content-length, or the server closes."""
    data = b""
    with trio.move_on_after(timeout_s):
        while chunk := await stream.receive_some():
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            if sep and length and len(body) >= int(length.group(1)):
                break
    return data


def parse_response(raw: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", len(body)))
    return status, headers, json.loads(body[:length]) if length else None


async def test_a_client_hanging_up_mid_body_is_a_counted_499_not_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="perpbft")
    with opened_node(tmp_path) as n:
        async with served(build_app(n)) as (base, _):
            for path in ("/v1/txs", "/v1/txs/batch"):
                async with raw_connection(base) as stream:
                    await stream.send_all(
                        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        'Content-Length: 1000\r\n\r\n{"nonce": 1'.encode()
                    )
                    await trio.sleep(0.1)  # the handler is reading the body
            requests = "perpbft_api_requests_total"
            await until(
                lambda: sample(n.metrics, requests, status="499") == 2, "both hang-ups counted"
            )
            assert sample(n.metrics, requests, route="submit_tx", status="499") == 1
            assert sample(n.metrics, requests, route="submit_batch", status="499") == 1
    assert errors_logged(caplog) == []
    assert any(r.getMessage() == "api_client_disconnected" for r in caplog.records)


async def test_an_answer_before_the_body_is_read_closes_the_connection_and_says_so(
    tmp_path: Path,
) -> None:
    """A 413 decided from Content-Length goes out before the body: the server cannot reuse
    the connection (the rest of the body would parse as the next request), so the answer must
    carry ``Connection: close``; a keep-alive client that reused it found it closed under its
    next request. A request whose body was read keeps the connection."""
    with opened_node(tmp_path) as n:
        async with served(build_app(n)) as (base, _):
            async with raw_connection(base) as stream:
                await stream.send_all(
                    b"POST /v1/txs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 100000\r\n\r\n" + b"x" * 1000
                )
                status, headers, body = parse_response(await read_all(stream))
                assert (status, body["code"]) == (413, "body_too_large")
                assert headers["connection"] == "close"
                with trio.fail_after(10):  # and the server does close it
                    while await stream.receive_some():
                        pass
            async with raw_connection(base) as stream:
                for _ in range(2):  # a small body read in full: the connection is reused
                    await stream.send_all(
                        b"POST /v1/txs HTTP/1.1\r\nHost: x\r\n"
                        b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
                    )
                    status, headers, _ = parse_response(await read_all(stream))
                    assert 400 <= status < 500
                    assert headers.get("connection") != "close"


# ---- the HTTP parser's errors and HTTP/1.1 only ---------------------------------------------


async def exchange(base: str, *chunks: bytes) -> tuple[int, dict[str, str], Any]:
    async with raw_connection(base) as stream:
        for chunk in chunks:
            try:
                await stream.send_all(chunk)
            except trio.BrokenResourceError:  # the server answered and closed already
                break
            await trio.sleep(0.01)
        return parse_response(await read_all(stream))


async def test_parser_errors_have_json_codes_and_http2_is_never_spoken(tmp_path: Path) -> None:
    with opened_node(tmp_path) as n:
        async with served(build_app(n)) as (base, _):
            status, headers, body = await exchange(base, b"NOT HTTP AT ALL\r\n\r\n")
            assert (status, body["code"]) == (400, "bad_request")
            assert headers["content-type"] == "application/json"
            # Headers over hypercorn's incomplete-request limit, arriving in pieces.
            head = b"GET /livez HTTP/1.1\r\nHost: x\r\n"
            pieces = [b"X-Pad-%d: %s\r\n" % (i, b"a" * 1000) for i in range(80)]
            status, _, body = await exchange(base, head, *pieces)
            assert (status, body["code"]) == (431, "headers_too_large")
            # An h2c upgrade is ignored: the answer is HTTP/1.1, not 101.
            status, _, body = await exchange(
                base,
                b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
            )
            assert (status, body["status"]) == (200, "ok")
            # The HTTP/2 prior-knowledge preface.
            status, _, body = await exchange(base, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            assert (status, body["code"]) == (505, "http_version_not_supported")
            # A WebSocket handshake hypercorn refuses (no key).
            status, _, body = await exchange(
                base,
                b"GET /v1/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n",
            )
            assert (status, body["code"]) == (400, "bad_request")
            async with httpx.AsyncClient(base_url=base, http2=False) as http:
                assert (await http.get("/livez")).http_version == "HTTP/1.1"


# ---- connection caps -------------------------------------------------------------------------


async def test_connections_are_capped_per_address_and_in_all(tmp_path: Path) -> None:
    with opened_node(tmp_path, connections_per_client_max=2, connections_max=3) as n:
        app = build_app(n)
        async with served(app) as (base, _):
            request = b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n"
            async with raw_connection(base) as a1, raw_connection(base):
                await until(lambda: app.state.connection_limits.total == 2, "two connections")
                status, headers, body = await exchange(base, request)
                assert (status, body["code"]) == (429, "too_many_connections")
                assert headers["retry-after"] == "1"
                # Another address still gets in, up to the total.
                async with raw_connection(base, "127.0.0.2") as b1:
                    await until(lambda: app.state.connection_limits.total == 3, "three")
                    async with raw_connection(base, "127.0.0.2") as b2:
                        await b2.send_all(request)
                        status, _, body = parse_response(await read_all(b2))
                        assert (status, body["code"]) == (503, "overloaded")
                    await b1.send_all(request)
                    assert (await b1.receive_some()).startswith(b"HTTP/1.1 200")
                await a1.send_all(request)
                assert (await a1.receive_some()).startswith(b"HTTP/1.1 200")
            # Slots come back when clients close (not after the keep-alive timer).
            await until(lambda: app.state.connection_limits.total == 0, "all closed")
            status, _, body = await exchange(base, request)
            assert status == 200, body
    refused = "perpbft_api_connections_refused_total"
    assert sample(n.metrics, refused, reason="too_many_connections") == 1
    assert sample(n.metrics, refused, reason="overloaded") == 1
    assert sample(n.metrics, "perpbft_api_connections") == 0


# ---- load shedding ---------------------------------------------------------------------------


async def test_a_lagging_event_loop_sheds_requests_but_not_health_probes(tmp_path: Path) -> None:
    with opened_node(tmp_path, shed_loop_lag_ms=100) as n:
        app = build_app(n)
        lag = app.state.api.lag
        async with served(app) as (base, nursery), httpx.AsyncClient(base_url=base) as http:
            assert (await http.get("/v1/status")).status_code == 200
            hog = trio.CancelScope()

            async def hog_the_loop() -> None:
                with hog:
                    while True:
                        time.sleep(0.25)  # work that keeps the loop from other tasks
                        await trio.sleep(0)

            nursery.start_soon(hog_the_loop)
            await until(lag.overloaded, "the lag is over the threshold")
            shed = await http.get("/v1/status")
            assert (shed.status_code, shed.json()["code"]) == (503, "overloaded")
            assert int(shed.headers["retry-after"]) >= 1
            n.loop_heartbeat_s = time.monotonic()
            assert (await http.get("/livez")).status_code == 200
            assert (await http.get("/readyz")).json()["code"] == "not_ready"  # answered, not shed
            async with open_websocket_url(ws_url(base)) as ws:  # new streams are refused too
                with pytest.raises(ConnectionClosed) as closed, trio.fail_after(20):
                    await ws.get_message()
            assert closed.value.reason is not None
            assert (closed.value.reason.code, closed.value.reason.reason) == (
                1013,
                "the node is overloaded; retry later",
            )
            hog.cancel()
            await until(lambda: not lag.overloaded(), "the lag is back under the threshold")
            assert (await http.get("/v1/status")).status_code == 200
    assert sample(n.metrics, "perpbft_api_requests_total", route="status", status="503") == 1
    assert sample(n.metrics, "perpbft_api_event_loop_lag_seconds") < 0.1


def test_the_node_lifts_its_open_files_limit_to_what_the_connection_caps_need(
    tmp_path: Path,
) -> None:
    """In a child process (limits are per process): a soft limit of 512 is raised to the
    API's and the peers' connection caps plus the node's own files, within the hard limit."""
    script = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from node.config import Config\n"
        "from node.runner import raise_open_files_limit, OTHER_FILES\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))\n"
        "config = Config(home=Path(sys.argv[1]))\n"
        "raise_open_files_limit(config)\n"
        "needed = config.api.connections_max + config.p2p.connections_max + OTHER_FILES\n"
        "want = needed if hard == resource.RLIM_INFINITY else min(hard, needed)\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0] == want)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )
    assert done.stdout.strip() == "True", done.stderr
