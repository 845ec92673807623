"""The API's HTTP server: hypercorn's HTTP/1.1 protocol under the node's own accept loop.

Theory of operation. ``hypercorn.trio.serve`` offers no cap on connections, no way to turn off
HTTP/2 (an ``Upgrade: h2c`` header or the HTTP/2 preface switches any connection to it), and
answers requests its parser refuses (400, 431) with an empty body. This module keeps hypercorn's
HTTP/1.1 protocol and streams (``H11Protocol``, ``HTTPStream``, ``WSStream``: parsing,
keep-alive, WebSocket framing, ASGI) and replaces the two outer layers, copied from the pinned
hypercorn 0.18 (``hypercorn/trio/run.py:worker_serve``, ``tcp_server.py:TCPServer.run``) with
the TLS and QUIC parts left out (the API is plain HTTP on loopback or behind a proxy):

* :func:`serve_api` binds, runs the app's lifespan (which starts its event-loop lag monitor)
  and accepts connections; each goes to :class:`ApiConnection`.
* :class:`ApiConnection` first asks :class:`ConnectionLimits` for a slot: over the per-address
  or the total cap, the client gets one JSON ``429``/``503`` with ``Retry-After`` and the
  connection is closed before any protocol state exists. Otherwise it runs
  :class:`JsonH11Protocol` directly, without hypercorn's ``ProtocolWrapper`` (which is what
  switches to HTTP/2).
* :class:`JsonH11Protocol` ignores ``Upgrade: h2c`` (a server may ignore Upgrade, RFC 9110
  section 7.8), and gives every response hypercorn makes itself (parser errors, a failed
  WebSocket handshake) the API's JSON body ``{"code", "message"}``. The prior-knowledge HTTP/2
  preface parses as an HTTP/2.0 request, answered ``505`` and closed.

:class:`ApiConnection` also keeps each connection's keep-alive timer as one task whose deadline
moves (:class:`KeepAlive`) instead of hypercorn's timer task stopped and started again around
every request, and reads without a per-read cancel scope when there is no read timeout.

The overrides touch ``H11Protocol._check_protocol``, ``_create_stream``,
``_send_error_response``, ``_send_h11_event`` (one write per response) and ``stream_send``:
private hypercorn methods, so ``pyproject.toml`` pins hypercorn below 0.19 and
``tests/node/test_api_limits.py`` checks each behaviour on a real socket. Each connection's
ASGI ``scope["state"]`` carries ``ABORT_KEY``, a function that closes its socket at once
(for the WebSocket write timeout, ``node.api.ws``)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import h11
import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.events import Closed, RawData, Updated
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.events import Response, StreamClosed
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.task_group import TaskGroup
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState, H11SendableEvent
from hypercorn.utils import parse_socket_addr, repr_socket_addr, wrap_app

from node.logs import get_logger
from node.metrics import Metrics

log = get_logger("api")

# What hypercorn's own error responses carry; the app's always have a content type.
_BARE_ERROR_HEADERS = [(b"content-length", b"0"), (b"connection", b"close")]
ERROR_CODES = {
    400: ("bad_request", "the request is not valid HTTP/1.1"),
    403: ("forbidden", "the WebSocket handshake was refused"),
    404: ("not_found", "no such host or route"),
    413: ("body_too_large", "the request is too large"),
    431: ("headers_too_large", "the request line or headers are too large"),
    500: ("internal_error", "the node failed to answer; see its logs"),
    505: ("http_version_not_supported", "the API speaks HTTP/1.1 only"),
}
# Key of the connection's hard abort in each request's ASGI ``scope["state"]``.
ABORT_KEY = "perpbft.abort_connection"
REFUSED_READ_TIMEOUT_S = 1.0  # how long a refused connection may take to send its request
REFUSING_MAX = 256  # refused connections being answered at once


def error_body(status: int, code: str | None = None, message: str | None = None) -> bytes:
    known = ERROR_CODES.get(status, ("bad_request" if status < 500 else "internal_error", ""))
    body = {"code": code or known[0], "message": message or known[1] or f"HTTP {status}"}
    return json.dumps(body, separators=(",", ":")).encode()


def error_headers(body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> list[Any]:
    return [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *(extra or []),
    ]


class ConnectionLimits:
    """Open connections (HTTP and WebSocket alike) per client address and in all."""

    def __init__(self, total_max: int, per_client_max: int, metrics: Metrics | None) -> None:
        if total_max < 1 or per_client_max < 1:
            raise ValueError("connection limits must be positive")
        self.total_max = total_max
        self.per_client_max = per_client_max
        self.metrics = metrics
        self.by_client: dict[str, int] = {}
        self.total = 0
        self.refusing = 0  # refused connections still being answered

    def acquire(self, client: str) -> tuple[int, str, str] | None:
        """Take a slot for ``client``; None if granted, else (status, code, message)."""
        if self.by_client.get(client, 0) >= self.per_client_max:
            return self._refused(
                429, "too_many_connections", "too many connections from this address"
            )
        if self.total >= self.total_max:
            return self._refused(503, "overloaded", "the node has too many open connections")
        self.by_client[client] = self.by_client.get(client, 0) + 1
        self.total += 1
        self._gauge()
        return None

    def release(self, client: str) -> None:
        left = self.by_client[client] - 1
        if left:
            self.by_client[client] = left
        else:
            del self.by_client[client]
        self.total -= 1
        self._gauge()

    def _refused(self, status: int, code: str, message: str) -> tuple[int, str, str]:
        if self.metrics is not None:
            self.metrics.api_connections_refused.labels(reason=code).inc()
        return status, code, message

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.api_connections.set(self.total)


class JsonH11Protocol(H11Protocol):
    """hypercorn's HTTP/1.1 protocol, HTTP/1.1 only, with JSON bodies on its own errors."""

    async def _check_protocol(self, event: h11.Request) -> None:
        # Neither the h2c upgrade nor the prior-knowledge switch: the request is answered in
        # HTTP/1.1 (the preface's "PRI * HTTP/2.0" reaches the app, which answers 505).
        return

    async def _create_stream(self, request: h11.Request) -> None:
        if request.http_version not in (b"1.0", b"1.1"):
            # The HTTP/2 prior-knowledge preface ("PRI * HTTP/2.0"): answered and closed here,
            # before the rest of the preface could be parsed as a second request.
            await self._send_error_response(505)
            await self.send(Closed())
            return
        await super()._create_stream(request)

    async def _send_error_response(self, status_code: int) -> None:
        """A request the parser refused (400, 431, ...): JSON, then the connection closes."""
        body = error_body(status_code)
        headers = error_headers(body, self.config.response_headers("h11"))
        await self._send_h11_event(h11.Response(status_code=status_code, headers=headers))
        await self._send_h11_event(h11.Data(data=body))
        await self._send_h11_event(h11.EndOfMessage())

    async def stream_send(self, event: StreamEvent) -> None:
        """The streams' own error responses (bad WebSocket handshake, no answer from the app)
        get a JSON body; the stream's EndBody that follows ends the message."""
        if isinstance(event, Response) and list(event.headers) == _BARE_ERROR_HEADERS:
            body = error_body(event.status_code)
            headers = error_headers(body, self.config.response_headers("h11"))
            await self._send_h11_event(h11.Response(status_code=event.status_code, headers=headers))
            await self._send_h11_event(h11.Data(data=body))
            return
        if isinstance(event, StreamClosed) and self._held_head:
            await self._send_raw(self._take_head())  # a head without body or end: send it
        await super().stream_send(event)

    # One write per response: hypercorn writes a response's head, its body and its end (an
    # empty write under Content-Length) separately, each a locked, shielded send_all and a
    # system call, the larger part of the API's cost per submitted transaction. The head of
    # a final response is held until the body's first bytes or the message's end, and empty
    # writes are skipped. Informational responses (101 of a WebSocket upgrade, whose frames
    # go out as raw data after it) are never held.
    _held_head = b""

    async def _send_h11_event(self, event: H11SendableEvent) -> None:
        if type(event) is h11.Response:
            event = self._closing_if_body_unread(event)
        try:
            data = self.connection.send(event)
        except h11.LocalProtocolError:
            if self.connection.their_state != h11.ERROR:
                raise
            return
        if type(event) is h11.Response:
            self._held_head = data or b""
            return
        if self._held_head:
            data = self._take_head() + (data or b"")
        if data:
            await self._send_raw(data)

    def _closing_if_body_unread(self, event: h11.Response) -> h11.Response:
        """A response sent before the request's body was read (413, or a refusal made from
        the headers) ends the connection: hypercorn closes it once the response is out, since
        the unread body would be parsed as the next request. The response says so
        (``Connection: close``), or a keep-alive client reuses the socket and finds it closed
        under its next request."""
        if self.connection.their_state is h11.DONE:
            return event
        if any(name.lower() == b"connection" for name, _ in event.headers):
            return event
        return h11.Response(
            status_code=event.status_code,
            headers=[*event.headers, (b"connection", b"close")],
            reason=event.reason,
        )

    def _take_head(self) -> bytes:
        head, self._held_head = self._held_head, b""
        return head

    async def _send_raw(self, data: bytes) -> None:
        await self.send(RawData(data=data))


class KeepAlive:
    """One connection's keep-alive timer: a single task that ends the connection once it has
    been idle (no request in progress) for ``timeout_s``. ``idle()`` and ``busy()`` only note
    the time, so a request costs no task start or cancellation; the task wakes at most once a
    timeout while requests keep coming, and at the idle deadline otherwise."""

    __slots__ = ("idle_since", "scope", "timeout_s")

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.idle_since: float | None = None  # None: a request is in progress
        self.scope = trio.CancelScope()

    def idle(self) -> None:
        self.idle_since = trio.current_time()

    def busy(self) -> None:
        self.idle_since = None

    def stop(self) -> None:
        self.scope.cancel()

    async def run(self, on_expiry: Callable[[], Awaitable[None]]) -> None:
        with self.scope:
            while True:
                since = self.idle_since
                if since is None:
                    await trio.sleep(self.timeout_s)
                    continue
                due_s = since + self.timeout_s
                if trio.current_time() >= due_s:
                    break
                await trio.sleep_until(due_s)
        if not self.scope.cancel_called:
            await on_expiry()


class ApiConnection(TCPServer):
    """One accepted connection: a slot from the limits, then hypercorn's HTTP/1.1 protocol."""

    def __init__(
        self,
        app: Any,
        config: HyperConfig,
        context: WorkerContext,
        state: Any,
        limits: ConnectionLimits | None,
        stream: trio.SocketStream,
    ) -> None:
        super().__init__(app, config, context, state, stream)  # type: ignore[arg-type]
        self.limits = limits
        self.client_gone = False
        self.keep_alive = KeepAlive(config.keep_alive_timeout)

    async def protocol_send(self, event: Any) -> None:
        if isinstance(event, Updated):
            # The keep-alive timer is the connection's one ``KeepAlive`` task: a request's
            # start and end only move its clock (hypercorn's own timer stopped and restarted
            # a task for every request, a tenth of the API's cost per submission).
            if event.idle and not self.client_gone:
                self.keep_alive.idle()
            else:
                self.keep_alive.busy()
            return
        await super().protocol_send(event)

    async def _read_data(self) -> None:
        """``TCPServer._read_data`` without its per-read cancel scope when there is no read
        timeout (the API sets none: idle connections end by the keep-alive timer)."""
        if self.config.read_timeout:
            await super()._read_data()
            return
        while True:
            try:
                data = await self.stream.receive_some(MAX_RECV)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                break
            await self.protocol.handle(RawData(bytes(data)))
            if data == b"":
                break
        await self.protocol.handle(Closed())

    async def run(self) -> None:
        socket = self.stream.socket
        try:
            client = parse_socket_addr(socket.family, socket.getpeername())
            server = parse_socket_addr(socket.family, socket.getsockname())
        except OSError:  # the peer is already gone
            await self.stream.aclose()
            return
        address = client[0] if client is not None else "unknown"
        refusal = self.limits.acquire(address) if self.limits is not None else None
        if refusal is not None:
            await self._refuse(*refusal)
            return
        try:
            await self._serve(client, server)
        finally:
            if self.limits is not None:
                self.limits.release(address)

    async def _serve(self, client: Any, server: Any) -> None:
        """``TCPServer.run`` for a plain socket, with :class:`JsonH11Protocol`."""
        try:
            async with TaskGroup() as task_group:
                self._task_group = task_group
                self.protocol = JsonH11Protocol(  # type: ignore[assignment]
                    self.app,
                    self.config,
                    self.context,
                    task_group,
                    ConnectionState({**self.state, ABORT_KEY: self.abort}),
                    False,
                    client,
                    server,
                    self.protocol_send,
                )
                await self.protocol.initiate()
                self.keep_alive.idle()
                task_group.spawn(self.keep_alive.run, self._keep_alive_expired)
                await self._read_data()
                # The client is gone: without this the task group (and the connection's slot)
                # would wait out the keep-alive timer, which a response finishing just now
                # may even restart.
                self.client_gone = True
                self.keep_alive.stop()
        except OSError:
            pass
        finally:
            await self._close()

    async def _keep_alive_expired(self) -> None:
        """Idle for the keep-alive timeout: the protocol is told, and the socket closed."""
        with trio.CancelScope(shield=True):
            await self._initiate_server_close()

    def abort(self) -> None:
        """Close the socket now, without the protocol's goodbye. For a client that stopped
        reading: hypercorn shields its socket writes from cancellation, so a write to such a
        client (a close frame included) would otherwise wait forever. Closing the socket wakes
        that write with an error and hypercorn ends the connection."""
        self.stream.socket.close()

    async def _refuse(self, status: int, code: str, message: str) -> None:
        """One JSON answer, then close. The request is read first (briefly, boundedly) so the
        close does not reset the connection under the answer before the client reads it.
        At most ``REFUSING_MAX`` connections are answered at once; past that (a flood) they
        are closed at once, so refusing costs no more than the caps allow."""
        limits = self.limits
        if limits is None or limits.refusing >= REFUSING_MAX:
            await self.stream.aclose()
            return
        limits.refusing += 1
        try:
            await self._answer_and_close(status, code, message)
        finally:
            limits.refusing -= 1

    async def _answer_and_close(self, status: int, code: str, message: str) -> None:
        with trio.move_on_after(REFUSED_READ_TIMEOUT_S):
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self.stream.receive_some(MAX_RECV)
        body = error_body(status, code, message)
        head = [
            f"HTTP/1.1 {status} {'Too Many Requests' if status == 429 else 'Service Unavailable'}"
        ]
        head += [
            f"{k.decode()}: {v.decode()}" for k, v in error_headers(body, [(b"retry-after", b"1")])
        ]
        with trio.move_on_after(REFUSED_READ_TIMEOUT_S):
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self.stream.send_all("\r\n".join(head).encode() + b"\r\n\r\n" + body)
        await self.stream.aclose()


def _app_limits(app: Any) -> ConnectionLimits | None:
    state = getattr(app, "state", None)
    limits = getattr(state, "connection_limits", None) if state is not None else None
    return limits if isinstance(limits, ConnectionLimits) else None


async def serve_api(
    app: Any,
    config: HyperConfig,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``config.bind`` until cancelled; ``task_status`` gets the URLs.

    The connection limits are the app's (``app.state.connection_limits``, set by
    ``build_app``); an app without them (the metrics app) is served uncapped."""
    wrapped = wrap_app(app, config.wsgi_max_body_size, "asgi")
    lifespan_state: dict[str, Any] = {}
    lifespan = Lifespan(wrapped, config, lifespan_state)
    context = WorkerContext(None)
    limits = _app_limits(app)
    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        sockets = config.create_sockets()
        listeners = []
        binds = []
        for sock in sockets.insecure_sockets:
            sock.listen(config.backlog)
            listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
            binds.append(f"http://{repr_socket_addr(sock.family, sock.getsockname())}")
        if sockets.secure_sockets or sockets.quic_sockets:
            raise ValueError("the API serves plain HTTP only")
        handler: Callable[[trio.SocketStream], Awaitable[None]] = partial(
            _run_connection,
            wrapped,
            config,
            context,
            ConnectionState(lifespan_state.copy()),
            limits,
        )
        task_status.started(binds)
        try:
            await trio.serve_listeners(handler, listeners)
        finally:
            await context.terminated.set()
            lifespan_nursery.cancel_scope.cancel()


async def _run_connection(
    app: Any,
    config: HyperConfig,
    context: WorkerContext,
    state: Any,
    limits: ConnectionLimits | None,
    stream: trio.SocketStream,
) -> None:
    try:
        await ApiConnection(app, config, context, state, limits, stream).run()
    except Exception:
        # A connection's failure must never end the server (trio.serve_listeners would).
        log.exception("api_connection_failed")
