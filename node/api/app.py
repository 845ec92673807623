"""The public HTTP + WebSocket API of a node (Starlette on hypercorn, inside the node's nursery).

Every error is a 4xx/5xx JSON body ``{"code": ..., "message": ...}`` with a machine-readable
code; docs/API.md lists the routes, fields and codes. Request bodies are bounded
(``BODY_BYTES_MAX``) and requests are rate limited per client address and, for submissions,
per signer (429 with ``Retry-After``). Integers in paths and queries and JSON bodies are parsed
by ``node.api.params`` only, with ranges and a nesting limit. While the event loop lags
(``node.api.overload``) requests other than the health probes are shed with 503. A client that
hangs up mid-request is counted with status 499 and logged at debug level: it is the client's
event, not the node's failure. Connections are capped and served HTTP/1.1 only by
``node.api.server``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from consensus.types import Block, QuorumCert
from node.api.accounts_api import (
    account_fees_json,
    agents_json,
    fee_schedule_json,
    subaccounts_json,
)
from node.api.bridge import BridgeRoutes
from node.api.gov import gov_routes
from node.api.openapi import openapi, route_index
from node.api.overload import LoopLag
from node.api.params import INT_MAX, InputError, parse_json, parse_uint
from node.api.queries import Queries
from node.api.ratelimit import RateLimiter, retry_after_header
from node.api.recordkeys import RecordKeyError, canonical_ids, record_key, record_kind
from node.api.server import ConnectionLimits
from node.api.staking import staking_routes
from node.api.txjson import TxJsonError, transaction_from_json
from node.api.webapp import Cors, WebAppRoute, apply_cors, install_cors
from node.chain import Executed
from node.indexer.innode import run_in_node
from node.indexer.reads import HistoryReads
from node.logs import fields, get_logger
from node.mempool import Admit, signing_bytes_of_wire
from node.node import Node, wait_timeout_s
from node.observe import refresh_peer_gauge
from state_machine.codec import Bytes, DecodeError, ListOf, decode_raw
from state_machine.tx import MAX_TX_BYTES, Transaction

log = get_logger("api")

BODY_BYTES_MAX = 64 * 1024
BATCH_TXS_MAX = 1_000
BATCH_BODY_BYTES_MAX = 2 * 1024 * 1024
TX_BATCH = ListOf(Bytes(max_len=MAX_TX_BYTES), BATCH_TXS_MAX, min_len=1)
SIGNER_RATE_PER_S = 500.0
SIGNER_BURST = 1_000
PROOF_CERTIFY_WAIT_S = 10.0
LIVENESS_SILENCE_S = 5.0

# Mempool verdict -> HTTP status. Everything a client did wrong is a 4xx.
ADMIT_STATUS = {
    Admit.MEMPOOL_FULL: 503,
    Admit.SIGNER_LIMIT: 429,
    Admit.DUPLICATE: 409,
    Admit.OVERSIZE: 413,
}
ADMIT_MESSAGES = {
    Admit.DUPLICATE: "this transaction is already pending",
    Admit.OVERSIZE: f"transaction larger than {MAX_TX_BYTES} bytes",
    Admit.MALFORMED: "transaction bytes do not decode",
    Admit.WRONG_CHAIN: "transaction is for another chain",
    Admit.EXPIRED: "transaction expired before it could be admitted",
    Admit.NONCE_USED: "nonce already used by this signer",
    Admit.NONCE_TOO_LOW: "nonce is below the signer's 128 most recent nonces",
    Admit.NONCE_OUT_OF_WINDOW: "nonce must be within (now - 2 days, now + 1 day) in ms",
    Admit.BAD_SIGNATURE: "signature does not verify",
    Admit.MEMPOOL_FULL: "the mempool is full; retry later",
    Admit.SIGNER_LIMIT: "too many pending transactions from this signer",
}


class ApiError(InputError):
    """An error answer with optional headers (``Retry-After``)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(status, code, message)
        self.headers = headers or {}


class ClientGone(Response):
    """The "answer" to a client that hung up mid-request: counted as 499 (the status proxies
    use for it), never sent, since nobody is there to read it."""

    def __init__(self) -> None:
        super().__init__(status_code=499)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        return


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


Handler = Callable[[Request], Awaitable[Response]]


class Api:
    """Route handlers over one :class:`~node.node.Node`."""

    def __init__(self, node: Node, clock: Callable[[], float] = time.monotonic) -> None:
        self.node = node
        self.queries = Queries(node)
        self.clock = clock
        settings = node.config.api
        self.client_limits = RateLimiter(float(settings.client_rate_per_s), settings.client_burst)
        self.lag = LoopLag(settings.shed_loop_lag_ms / 1000, node.metrics)
        self.signer_limits = RateLimiter(SIGNER_RATE_PER_S, SIGNER_BURST)
        self.block_committed = trio.Event()
        # History from the indexer's database; None: the in-memory recent history only.
        indexing = node.config.indexer.mode != "off"
        self.history: HistoryReads | None = HistoryReads(self.queries) if indexing else None

    # ---- plumbing ------------------------------------------------------------------------

    def wrap(self, route_name: str, handler: Handler, *, limited: bool = True) -> Handler:
        """Count the request and turn errors into JSON; ``limited`` applies load shedding and
        the per-address rate limit (health probes are exempt from both: an overloaded node is
        alive, and a busy client sharing the prober's address must not make a healthy node
        look dead)."""
        metrics = self.node.metrics

        async def endpoint(request: Request) -> Response:
            try:
                if limited:
                    self.admit(request)
                response = await handler(request)
            except ApiError as exc:
                response = error_response(exc.status, exc.code, exc.message, exc.headers)
            except InputError as exc:
                response = error_response(exc.status, exc.code, exc.message)
            except ClientDisconnect:
                log.debug("api_client_disconnected", extra=fields(route=route_name))
                response = ClientGone()
            metrics.api_requests.labels(route=route_name, status=str(response.status_code)).inc()
            return response

        return endpoint

    def admit(self, request: Request) -> None:
        """Shed while the event loop lags, then the client address's rate limit."""
        if self.lag.overloaded():
            retry = str(self.lag.retry_after_s())
            raise ApiError(
                503, "overloaded", "the node is overloaded; retry later", {"Retry-After": retry}
            )
        client = request.client.host if request.client else "unknown"
        wait = self.client_limits.take(client, self.clock())
        if wait:
            raise ApiError(
                429,
                "rate_limited",
                "too many requests from this address",
                {"Retry-After": retry_after_header(wait)},
            )

    async def read_body(self, request: Request, limit: int = BODY_BYTES_MAX) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            raise ApiError(413, "body_too_large", f"request body over {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "body_too_large", f"request body over {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    # ---- health --------------------------------------------------------------------------

    async def livez(self, request: Request) -> Response:
        """Answering at all shows the event loop runs; once the node runs, its clock task must
        also have beaten recently. While the store opens (a long check on a big store) the
        clock task has not started yet, and the node is alive, only not ready."""
        if not self.node.ready.is_set():
            return JSONResponse({"status": "ok", "starting": True})
        lag_s = time.monotonic() - self.node.loop_heartbeat_s
        if lag_s > LIVENESS_SILENCE_S:
            raise ApiError(503, "event_loop_stalled", f"event loop silent for {lag_s:.1f} s")
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        status = self.queries.status()
        if not status["ready"]:
            raise ApiError(503, "not_ready", status["not_ready_reason"])
        return JSONResponse({"status": "ready", "height": status["height"]})

    async def status(self, request: Request) -> Response:
        return JSONResponse(self.queries.status())

    # ---- transactions --------------------------------------------------------------------

    async def submit_tx(self, request: Request) -> Response:
        body = await self.read_body(request)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        raw = self.tx_bytes(body, ctype)
        if len(raw) > MAX_TX_BYTES:
            # Checked before decoding, whose size bound would call it merely "malformed".
            raise ApiError(413, Admit.OVERSIZE.value, ADMIT_MESSAGES[Admit.OVERSIZE])
        try:
            tx = Transaction.from_wire(raw)
        except DecodeError as exc:
            raise ApiError(400, "malformed", exc.reason) from None
        wait = self.signer_limits.take(tx.signer.hex(), self.clock())
        if wait:
            raise ApiError(
                429,
                "rate_limited",
                "too many transactions from this signer",
                {"Retry-After": retry_after_header(wait)},
            )
        wait_commit = _wait_param(request)
        tx_id = tx.tx_id_from(signing_bytes_of_wire(raw, tx))  # no second encoding
        waiter = self.node.watch_commit(tx_id) if wait_commit else None
        if wait_commit and waiter is None:
            raise ApiError(
                503,
                "too_many_waiters",
                "too many clients are waiting for commits",
                {"Retry-After": "1"},
            )
        try:
            sub = await self.node.submit(raw, tx)
            verdict = sub.verdict
            assert verdict is not None
            if verdict is not Admit.OK:
                status = ADMIT_STATUS.get(verdict, 400)
                # Full mempool or too many pending from this signer: both clear as blocks
                # commit, so a second is a fair hint.
                retry = {"Retry-After": "1"} if status in (429, 503) else None
                message = ADMIT_MESSAGES.get(verdict, verdict.value)
                raise ApiError(status, verdict.value, message, retry)
            if waiter is None:
                return JSONResponse({"tx_id": tx_id.hex(), "status": "pending"}, status_code=202)
            timeout = wait_timeout_s(_float_param(request, "timeout_s"))
            with trio.move_on_after(timeout):
                await waiter.event.wait()
            if not waiter.event.is_set():
                return JSONResponse(
                    {"tx_id": tx_id.hex(), "status": "pending", "message": "not committed yet"},
                    status_code=202,
                )
            return JSONResponse(
                self.queries.committed_tx_json(tx_id, waiter.height, waiter.index, waiter.result)
            )
        finally:
            if waiter is not None:
                self.node.forget_waiter(tx_id, waiter)

    async def submit_batch(self, request: Request) -> Response:
        """Many signed transactions in one request: a msgpack array of their wire bytes.

        For gateways and market makers: the HTTP cost is paid once, the transactions are
        admitted as one verification batch, and each gets its own verdict (``pending`` or the
        admission code), in order. Every transaction still counts against the sender's and
        its signer's rate limits. No commit wait: follow them with ``GET /v1/txs/{id}`` or
        the WebSocket.
        """
        body = await self.read_body(request, BATCH_BODY_BYTES_MAX)
        try:
            raws = TX_BATCH.check(decode_raw(body, BATCH_BODY_BYTES_MAX), "txs")
        except DecodeError as exc:
            raise ApiError(400, "malformed", exc.reason) from None
        now = self.clock()
        client = request.client.host if request.client else "unknown"
        verdicts: list[dict[str, Any] | None] = [None] * len(raws)
        admit: list[tuple[int, bytes, bytes, Transaction]] = []  # (position, id, raw, tx)
        for i, raw in enumerate(raws):
            try:
                tx = Transaction.from_wire(raw)
            except DecodeError as exc:
                verdicts[i] = _rejected(None, "malformed", exc.reason)
                continue
            tx_id = tx.tx_id_from(signing_bytes_of_wire(raw, tx))
            if self.client_limits.take(client, now) or self.signer_limits.take(
                tx.signer.hex(), now
            ):
                verdicts[i] = _rejected(tx_id, "rate_limited", "too many transactions")
                continue
            admit.append((i, tx_id, raw, tx))
        subs = await self.node.submit_many([a[2] for a in admit], [a[3] for a in admit])
        for (i, tx_id, _, _), sub in zip(admit, subs, strict=True):
            verdict = sub.verdict
            assert verdict is not None
            if verdict is Admit.OK:
                verdicts[i] = {"tx_id": tx_id.hex(), "status": "pending"}
            else:
                message = ADMIT_MESSAGES.get(verdict, verdict.value)
                verdicts[i] = _rejected(tx_id, verdict.value, message)
        return JSONResponse({"results": verdicts})

    def tx_bytes(self, body: bytes, ctype: str) -> bytes:
        if ctype in ("application/msgpack", "application/x-msgpack", "application/octet-stream"):
            return body
        if ctype not in ("application/json", ""):
            raise ApiError(415, "unsupported_media_type", f"content type {ctype!r}")
        data = parse_json(body)
        try:
            tx = transaction_from_json(
                data, self.queries.market_units_by_id, self.queries.decimals.get
            )
        except TxJsonError as exc:
            status = 404 if exc.code in ("unknown_market", "unknown_asset") else 400
            raise ApiError(status, exc.code, exc.message) from None
        return tx.to_wire()

    async def get_tx(self, request: Request) -> Response:
        return JSONResponse(self.queries.tx(request.path_params["tx_id"]))

    # ---- blocks --------------------------------------------------------------------------

    async def get_block(self, request: Request) -> Response:
        return JSONResponse(self.queries.block(request.path_params["height"]))

    # ---- markets -------------------------------------------------------------------------

    async def markets(self, request: Request) -> Response:
        return JSONResponse(self.queries.markets())

    async def market(self, request: Request) -> Response:
        body = self.queries.market(request.path_params["market"])
        history = self.database()
        if history is not None:  # absent while the history database is not open
            try:
                body["stats_24h"] = await history.stats(body["symbol"])
            except InputError as exc:
                if exc.status != 503:
                    raise
        return JSONResponse(body)

    async def book(self, request: Request) -> Response:
        depth = _int_param(request, "depth", 20, 1, 500)
        return JSONResponse(self.queries.book(request.path_params["market"], depth))

    async def trades(self, request: Request) -> Response:
        limit = _int_param(request, "limit", 50, 1, 1000)
        market = request.path_params["market"]
        history = self.database()
        if history is not None:
            return JSONResponse(await history.trades(market, limit))
        return JSONResponse(self.queries.trades(market, limit))

    async def funding(self, request: Request) -> Response:
        args = (
            request.path_params["market"],
            _int_param(request, "from", 0, 0, INT_MAX),
            _int_param(request, "to", INT_MAX, 0, INT_MAX),
            request.query_params.get("cursor"),
            _int_param(request, "limit", 100, 1, 1000),
        )
        history = self.database()
        if history is not None:
            return JSONResponse(await history.funding(*args))
        return JSONResponse(self.queries.funding(*args))

    async def candles(self, request: Request) -> Response:
        return JSONResponse(
            await self.indexed().candles(
                request.path_params["market"],
                request.query_params.get("interval"),
                _int_param(request, "from", 0, 0, INT_MAX),
                _int_param(request, "to", INT_MAX, 0, INT_MAX),
                _int_param(request, "limit", 300, 1, 1000),
            )
        )

    async def pnl(self, request: Request) -> Response:
        return JSONResponse(
            await self.indexed().pnl(
                request.path_params["address"],
                request.query_params.get("interval"),
                _int_param(request, "from", 0, 0, INT_MAX),
                _int_param(request, "to", INT_MAX, 0, INT_MAX),
                _int_param(request, "limit", 300, 1, 1000),
            )
        )

    async def stats(self, request: Request) -> Response:
        return JSONResponse(await self.indexed().stats(request.path_params["market"]))

    def database(self) -> HistoryReads | None:
        """The history database's reads, None while it is not open (or configured off): the
        recent in-memory history answers then, with its own ``complete_from_height``."""
        history = self.history
        return history if history is not None and history.db is not None else None

    def indexed(self) -> HistoryReads:
        if self.history is None:
            raise ApiError(
                404, "history_disabled", "this node keeps no history database ([indexer] mode)"
            )
        return self.history

    # ---- accounts ------------------------------------------------------------------------

    async def account(self, request: Request) -> Response:
        return JSONResponse(self.queries.account(request.path_params["address"]))

    async def vault(self, request: Request) -> Response:
        return JSONResponse(self.queries.vault())

    async def account_orders(self, request: Request) -> Response:
        return JSONResponse(self.queries.open_orders(request.path_params["address"]))

    async def account_history(self, request: Request) -> Response:
        kind = request.url.path.rsplit("/", 1)[-1]
        args = (
            request.path_params["address"],
            kind,
            _int_param(request, "from", 0, 0, INT_MAX),
            _int_param(request, "to", INT_MAX, 0, INT_MAX),
            request.query_params.get("cursor"),
            _int_param(request, "limit", 100, 1, 1000),
        )
        history = self.database()
        if history is not None:
            return JSONResponse(await history.history(*args))
        return JSONResponse(self.queries.history(*args))

    async def subaccounts(self, request: Request) -> Response:
        return JSONResponse(subaccounts_json(self.queries, request.path_params["address"]))

    async def agents(self, request: Request) -> Response:
        return JSONResponse(agents_json(self.queries, request.path_params["address"]))

    async def account_fees(self, request: Request) -> Response:
        return JSONResponse(account_fees_json(self.queries, request.path_params["address"]))

    async def fee_schedule(self, request: Request) -> Response:
        return JSONResponse(fee_schedule_json(self.queries))

    async def account_proof(self, request: Request) -> Response:
        who = self.queries.lookup_address(request.path_params["address"])
        height_text = request.query_params.get("height")
        height = _int_param(request, "height", 0, 0, INT_MAX) if height_text else None
        proofs = await trio.to_thread.run_sync(self.queries.prove_account, who, height)
        certificate = await self.certificate_of(proofs[0].height)
        return JSONResponse(self.queries.account_proof_json(who, proofs, *certificate))

    async def record_proof(self, request: Request) -> Response:
        """``GET /v1/proofs/records/{kind}?<ids>&height=H``: one state record of any kind."""
        pairs = [(k, v) for k, v in request.query_params.multi_items() if k != "height"]
        ids = dict(pairs)
        try:
            if len(ids) != len(pairs):
                raise RecordKeyError("an id is given twice")
            kind = record_kind(request.path_params["kind"])
            key = record_key(kind, ids)
        except RecordKeyError as exc:
            raise ApiError(400, "bad_record", str(exc)) from None
        height_text = request.query_params.get("height")
        height = _int_param(request, "height", 0, 0, INT_MAX) if height_text else None
        proof = await trio.to_thread.run_sync(self.queries.prove_record, key, height)
        certificate = await self.certificate_of(proof.height)
        body = self.queries.record_proof_json(
            kind.name, canonical_ids(kind, key), proof, *certificate
        )
        return JSONResponse(body)

    async def certificate_of(self, proof_height: int) -> tuple[Block, QuorumCert]:
        """Block ``proof_height + 1`` and its commit QC: what certifies the state at
        ``proof_height`` (``height_not_provable`` if it was pruned)."""
        found = await trio.to_thread.run_sync(self.queries.certificate, proof_height + 1)
        if found is None and proof_height < self.queries.committed_height():
            # Block h + 1 may have committed between the first read and the height's: only a
            # second miss means it is gone (pruned).
            found = await trio.to_thread.run_sync(self.queries.certificate, proof_height + 1)
            if found is None:
                raise ApiError(
                    404,
                    "height_not_provable",
                    f"block {proof_height + 1}, which certifies the state at {proof_height}, "
                    "is no longer stored",
                )
        # At the latest height the certificate is the next block, which may not exist yet.
        if found is not None:
            return found
        return await self.wait_certificate(proof_height + 1)

    async def wait_certificate(self, height: int) -> tuple[Block, QuorumCert]:
        """Block ``height`` and its commit QC, waiting for the block to commit if need be.

        The state after block h is certified by block h + 1, whose header carries its root;
        a proof at the latest height therefore waits for the next block (one interval)."""
        with trio.move_on_after(PROOF_CERTIFY_WAIT_S):
            while True:
                changed = self.block_committed
                found = await trio.to_thread.run_sync(self.queries.certificate, height)
                if found is not None:
                    return found
                await changed.wait()
        raise ApiError(
            503,
            "not_certified_yet",
            f"block {height}, which certifies the state, did not commit in time",
            {"Retry-After": "1"},
        )

    def on_block(self, executed: Executed) -> None:
        """Wake requests waiting for a block (subscribed to the node)."""
        self.block_committed.set()
        self.block_committed = trio.Event()


def _rejected(tx_id: bytes | None, code: str, message: str) -> dict[str, Any]:
    tx = None if tx_id is None else tx_id.hex()
    return {"tx_id": tx, "status": "rejected", "code": code, "message": message}


def _int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    text = request.query_params.get(name)
    return default if text is None else parse_uint(text, name, lo, hi)


def _wait_param(request: Request) -> bool:
    """``?wait=commit`` waits for the commit; no ``wait`` answers after admission."""
    text = request.query_params.get("wait")
    if text not in (None, "commit"):
        raise ApiError(400, "bad_parameter", "wait must be 'commit' (or absent)")
    return text == "commit"


def _float_param(request: Request, name: str) -> float | None:
    text = request.query_params.get(name)
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise ApiError(400, "bad_parameter", f"{name} must be a number") from None


HTTP_VERSIONS = ("1.0", "1.1")


class ApiApp(Starlette):
    """Starlette with a fast path for the submission routes.

    A submission is the API's hottest request; routing it through Starlette's middleware
    stack and its regex router costs about as much CPU as the rest of its handling. Exact
    (method, path) pairs in ``fast`` go straight to their wrapped handler (which already turns
    every API error into JSON and counts the request); anything the handler did not expect is
    a logged 500, as the middleware would make it. Every other request takes the normal path.
    """

    def __init__(self, fast: dict[tuple[str, str], Handler], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fast = fast
        self.cors: Cors | None = None  # set by node.api.webapp.install_cors

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            if scope.get("http_version") not in HTTP_VERSIONS:
                # The HTTP/2 preface ("PRI * HTTP/2.0") and anything else not HTTP/1.x.
                response = error_response(
                    505,
                    "http_version_not_supported",
                    "the API speaks HTTP/1.1 only",
                    {"Connection": "close"},
                )
                self.count(response, "unmatched")
                await response(scope, receive, send)
                return
            send, preflight_status = await apply_cors(self.cors, scope, send)
            if preflight_status is not None:
                self.count(Response(status_code=preflight_status), "cors_preflight")
                return
            handler = self.fast.get((scope["method"], scope["path"]))
            if handler is not None:
                try:
                    response = await handler(Request(scope, receive))
                except Exception:
                    log.exception("api_request_failed")
                    response = self.count(
                        error_response(
                            500, "internal_error", "the node failed to answer; see its logs"
                        ),
                        "error",
                    )
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    def count(self, response: Response, route: str) -> Response:
        node: Node = self.state.api.node
        node.metrics.api_requests.labels(route=route, status=str(response.status_code)).inc()
        return response


def build_app(node: Node) -> Starlette:
    from node.api.ws import StreamHub

    api = Api(node)
    bridge = BridgeRoutes(api.queries)  # node/api/bridge.py
    hub = StreamHub(node, api.queries, node.config.api, api.lag, api.history)
    # The recent in-memory history follows committed blocks itself, before the hub reads it.
    node.subscribe(api.queries.on_executed)
    node.subscribe(hub.on_block)
    node.subscribe(api.on_block)
    w = api.wrap
    schema: dict[str, Any] = {}

    async def index(request: Request) -> Response:
        return JSONResponse(route_index(routes))

    async def openapi_json(request: Request) -> Response:
        if not schema:  # generated once, from the routes as served
            schema.update(openapi(routes))
        return JSONResponse(schema)

    routes = [
        Route("/", w("index", index)),
        Route("/openapi.json", w("openapi", openapi_json)),
        Route("/livez", w("livez", api.livez, limited=False)),
        Route("/readyz", w("readyz", api.readyz, limited=False)),
        Route("/v1/status", w("status", api.status)),
        Route("/v1/txs", w("submit_tx", api.submit_tx), methods=["POST"]),
        Route("/v1/txs/batch", w("submit_batch", api.submit_batch), methods=["POST"]),
        Route("/v1/txs/{tx_id}", w("tx", api.get_tx)),
        Route("/v1/blocks/{height}", w("block", api.get_block)),
        Route("/v1/markets", w("markets", api.markets)),
        Route("/v1/markets/{market}", w("market", api.market)),
        Route("/v1/markets/{market}/book", w("book", api.book)),
        Route("/v1/markets/{market}/trades", w("trades", api.trades)),
        Route("/v1/markets/{market}/funding", w("market_funding", api.funding)),
        Route("/v1/markets/{market}/candles", w("candles", api.candles)),
        Route("/v1/markets/{market}/stats", w("market_stats", api.stats)),
        Route("/v1/accounts/{address}", w("account", api.account)),
        Route("/v1/accounts/{address}/orders", w("orders", api.account_orders)),
        Route("/v1/accounts/{address}/fills", w("fills", api.account_history)),
        Route("/v1/accounts/{address}/funding", w("account_funding", api.account_history)),
        Route("/v1/accounts/{address}/ledger", w("ledger", api.account_history)),
        Route("/v1/accounts/{address}/pnl", w("pnl", api.pnl)),
        Route("/v1/proofs/accounts/{address}", w("proof", api.account_proof)),
        Route("/v1/proofs/records/{kind}", w("record_proof", api.record_proof)),
        Route("/v1/vault", w("vault", api.vault)),
        *staking_routes(api, w),
        *gov_routes(api.queries, w),
        Route("/v1/accounts/{address}/subaccounts", w("subaccounts", api.subaccounts)),
        Route("/v1/accounts/{address}/agents", w("agents", api.agents)),
        Route("/v1/accounts/{address}/fees", w("account_fees", api.account_fees)),
        Route("/v1/fees", w("fees", api.fee_schedule)),
        Route("/v1/bridge", w("bridge", bridge.info)),
        Route("/v1/bridge/deposits/{tx_hash}/{log_index}", w("bridge_deposit", bridge.deposit)),
        Route("/v1/bridge/withdrawals/{withdrawal_id}", w("bridge_withdrawal", bridge.withdrawal)),
        Route(
            "/v1/bridge/accounts/{address}/withdrawals",
            w("bridge_withdrawals", bridge.account_withdrawals),
        ),
        WebSocketRoute("/v1/ws", hub.endpoint),
        WebAppRoute(w),
    ]

    def counted(response: Response, route: str = "unmatched") -> Response:
        node.metrics.api_requests.labels(route=route, status=str(response.status_code)).inc()
        return response

    async def not_found(request: Request, exc: Exception) -> Response:
        path = request.url.path[:100]
        return counted(error_response(404, "not_found", f"no route {path}"))

    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        return counted(
            error_response(405, "method_not_allowed", f"{request.method} not allowed here")
        )

    async def server_error(request: Request, exc: Exception) -> Response:
        log.error("api_request_failed", exc_info=exc)
        return counted(
            error_response(500, "internal_error", "the node failed to answer; see its logs"),
            "error",
        )

    fast = {
        ("POST", "/v1/txs"): w("submit_tx", api.submit_tx),
        ("POST", "/v1/txs/batch"): w("submit_batch", api.submit_batch),
    }

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(api.lag.run)
            if api.history is not None:
                nursery.start_soon(run_in_node, node, api.history, [hub.on_candles])
            yield
            nursery.cancel_scope.cancel()

    app = ApiApp(
        fast,
        routes=routes,
        exception_handlers={404: not_found, 405: method_not_allowed, 500: server_error},
        lifespan=lifespan,
    )
    # A trailing slash is a 404 like any other unknown path, not a body-less 307 redirect.
    app.router.redirect_slashes = False
    app.state.api = api
    app.state.hub = hub
    install_cors(app, node.config.api.cors_allowed_origins)
    settings = node.config.api
    app.state.connection_limits = ConnectionLimits(
        settings.connections_max, settings.connections_per_client_max, node.metrics
    )
    return app


def build_metrics_app(node: Node) -> Starlette:
    async def metrics(request: Request) -> Response:
        # Gauges read from the peer manager are refreshed when scraped, so they are never
        # stale even when no frame arrives (e.g. every peer is gone).
        refresh_peer_gauge(node.metrics, node.peers)
        return Response(node.metrics.render(), media_type="text/plain; version=0.0.4")

    return Starlette(routes=[Route("/metrics", metrics)])
