"""The web page at ``/app`` and CORS for the API.

The page (trading view and block explorer) is a set of static files in the package
(``node/webapp/static``: our HTML, CSS and JavaScript plus vendored npm builds). They are read
once when the API app is built and served from memory: the set of paths that exist is fixed,
so no request path ever reaches the file system (no traversal, no symlink surprises), and a
request costs a dict lookup. Requests go through the API's rate limit, load shedding and request
counter like every other route (route label ``app``).

``/app`` answers a redirect to ``/app/`` so the page's relative URLs resolve under it; any other
path below ``/app/`` that is not one of the files is the usual ``404 not_found``.

CORS (``[api] cors_allowed_origins``): a page served from another origin (another node's
``/app``, a local copy) may call this node's API when its origin is listed, or when ``*`` is.
The API has no cookies or other ambient credentials (a submission carries its own signature),
so the answer never allows credentials; allowing an origin only lets a page read what anyone
with ``curl`` can. Preflights (``OPTIONS`` with ``Access-Control-Request-Method``) are answered
here, before routing, for any path; other requests get ``Access-Control-Allow-Origin`` added to
their answer when the origin is allowed. WebSocket handshakes are not subject to CORS in
browsers and are served whatever the origin (the stream is public data).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from node.api.params import InputError

STATIC_DIR = Path(__file__).resolve().parent.parent / "webapp" / "static"
APP_PREFIX = "/app"
STATIC_FILES_MAX = 200
STATIC_BYTES_MAX = 8 * 1024 * 1024
CORS_MAX_AGE_S = 600
CORS_ALLOWED_METHODS = "GET, POST, OPTIONS"
CORS_ALLOWED_HEADERS = "content-type"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
}
# The page talks to whatever node URL the user enters (http, https, ws, wss), so connect-src is
# open; everything else is this origin only. frame-ancestors: an order ticket must not be
# framed by another site (clickjacking). Inline styles: the chart library sets them.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; connect-src *; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str


def content_type_of(name: str) -> str:
    if name == "LICENSE":
        return CONTENT_TYPES[".txt"]
    return CONTENT_TYPES.get(Path(name).suffix, "application/octet-stream")


def load_static_files(root: Path = STATIC_DIR) -> dict[str, StaticFile]:
    """Every file under ``root`` by its URL path below ``/app/`` (``index.html`` also as ``""``).

    Bounded (count and bytes) so a stray large file in the package cannot bloat every node."""
    files: dict[str, StaticFile] = {}
    total = 0
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name.startswith(".") or path.suffix == ".sh":
            continue
        body = path.read_bytes()
        total += len(body)
        if len(files) >= STATIC_FILES_MAX or total > STATIC_BYTES_MAX:
            raise RuntimeError(f"static files under {root} exceed the limits")
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        files[path.relative_to(root).as_posix()] = StaticFile(
            body, content_type_of(path.name), etag
        )
    if "index.html" in files:
        files[""] = files["index.html"]
    return files


def static_response(files: Mapping[str, StaticFile], request: Request) -> Response:
    """The file at the request's path below ``/app/``, 304 when the client has it, else 404."""
    rest = request.url.path[len(APP_PREFIX) + 1 :]
    found = files.get(rest)
    if found is None:
        raise InputError(404, "not_found", f"no route {request.url.path[:100]}")
    headers = {**PAGE_HEADERS, "ETag": found.etag}
    if request.headers.get("if-none-match") == found.etag:
        return Response(status_code=304, headers=headers)
    return Response(found.body, media_type=found.content_type, headers=headers)


Handler = Callable[[Request], Awaitable[Response]]
Wrap = Callable[..., Handler]


class WebAppRoute(BaseRoute):
    """``/app`` (redirect) and everything below ``/app/``, through the API's ``wrap``.

    A ``BaseRoute`` rather than a ``Route``: the path has no parameter to convert, and the
    answer is a page, not the JSON of the API routes."""

    def __init__(self, wrap: Wrap, files: Mapping[str, StaticFile] | None = None) -> None:
        self.files = load_static_files() if files is None else files
        self.endpoint = wrap("app", self.answer)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        path = scope["path"]
        if path == APP_PREFIX or path.startswith(APP_PREFIX + "/"):
            return Match.FULL, {"endpoint": self.endpoint}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)

    async def answer(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            raise InputError(405, "method_not_allowed", f"{request.method} not allowed here")
        if request.url.path == APP_PREFIX:
            return Response(status_code=308, headers={"Location": APP_PREFIX + "/"})
        return static_response(self.files, request)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.endpoint(Request(scope, receive))
        await response(scope, receive, send)


class Cors:
    """The CORS policy of ``[api] cors_allowed_origins`` (module doc)."""

    def __init__(self, allowed: tuple[str, ...]) -> None:
        self.any = "*" in allowed
        self.allowed = frozenset(allowed)

    def allows(self, origin: str) -> bool:
        return self.any or origin in self.allowed

    def origin_headers(self, origin: str) -> list[tuple[bytes, bytes]]:
        # With a list of origins the answer depends on the request's Origin: caches must key
        # on it (Vary). With "*" it does not.
        if self.any:
            return [(b"access-control-allow-origin", b"*")]
        return [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]

    @staticmethod
    def request_origin(scope: Scope) -> str | None:
        for name, value in scope.get("headers", ()):
            if name == b"origin":
                return str(value.decode("latin-1"))
        return None

    @staticmethod
    def is_preflight(scope: Scope) -> bool:
        if scope["method"] != "OPTIONS":
            return False
        return any(name == b"access-control-request-method" for name, _ in scope["headers"])

    async def preflight(self, scope: Scope, send: Send, origin: str | None) -> int:
        """Answer a preflight: 204 with the allowed methods and headers, or 403
        ``origin_not_allowed``. Returns the status, for the request counter."""
        if origin is None or not self.allows(origin):
            body = b'{"code": "origin_not_allowed", "message": "this origin may not call the API"}'
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
            ]
            await send({"type": "http.response.start", "status": 403, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return 403
        headers = [
            *self.origin_headers(origin),
            (b"access-control-allow-methods", CORS_ALLOWED_METHODS.encode()),
            (b"access-control-allow-headers", CORS_ALLOWED_HEADERS.encode()),
            (b"access-control-max-age", str(CORS_MAX_AGE_S).encode()),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return 204

    def wrap_send(self, origin: str, send: Send) -> Send:
        """``send`` with the allow-origin header added to the response start."""
        extra = self.origin_headers(origin)

        async def send_with_cors(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        return send_with_cors


async def apply_cors(cors: Cors | None, scope: Scope, send: Send) -> tuple[Send, int | None]:
    """For an HTTP request: answer it if it is a preflight (returns its status), else return the
    ``send`` to use (adding the allow-origin header when the origin is allowed)."""
    if cors is None:
        return send, None
    origin = Cors.request_origin(scope)
    if Cors.is_preflight(scope):
        return send, await cors.preflight(scope, send, origin)
    if origin is not None and cors.allows(origin):
        return cors.wrap_send(origin, send), None
    return send, None


def install_cors(app: Any, allowed_origins: tuple[str, ...]) -> None:
    """Give the API app (``node.api.app.ApiApp``) its CORS policy; none when no origin is
    configured (then no CORS header is ever sent and preflights are 405 like any OPTIONS)."""
    app.cors = Cors(allowed_origins) if allowed_origins else None
