"""HTTP client of a node's public API, used by the command line and the localnet tools.

It speaks only the documented API (docs/API.md), exactly as a user's own program would.
Connection failures become :class:`client.errors.CliError` with exit code 2; an API error reply
(4xx/5xx with ``code`` and ``message``) becomes :class:`ApiError`, which commands turn into
exit code 1 (a rejection) or 2 (a usage error), as fits.
"""

from __future__ import annotations

from typing import Any

import httpx

from client.errors import CliError
from state_machine.tx import Transaction

DEFAULT_NODE_URL = "http://127.0.0.1:26657"
TIMEOUT_S = 30.0


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, body: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.body = body


class NodeClient:
    def __init__(self, base_url: str = DEFAULT_NODE_URL, timeout_s: float = TIMEOUT_S) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise CliError(f"--node must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kw: Any) -> Any:
        try:
            response = self._http.request(method, path, **kw)
        except httpx.TimeoutException:
            raise CliError(f"node at {self.base_url} did not answer in time") from None
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach node at {self.base_url}: {exc}") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            if isinstance(body, dict) and "code" in body:
                raise ApiError(
                    response.status_code, str(body["code"]), str(body.get("message", "")), body
                )
            raise ApiError(response.status_code, "http_error", response.text[:200])
        return body

    def get(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return self._request("GET", path, params=clean)

    def submit(self, tx: Transaction, wait_commit: bool = True) -> Any:
        """POST the msgpack form of ``tx``; with ``wait_commit`` the answer has the results."""
        params = {"wait": "commit"} if wait_commit else {}
        return self._request(
            "POST",
            "/v1/txs",
            content=tx.to_wire(),
            params=params,
            headers={"content-type": "application/msgpack"},
        )
