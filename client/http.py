"""HTTP client of a node's public API: one typed method per route, used by the command line,
the localnet tools and users' own programs (docs/SDK.md).

It speaks only the documented API (docs/API.md), exactly as a user's own program would.
Connection failures become :class:`client.errors.CliError` with exit code 2; an API error reply
(4xx/5xx with ``code`` and ``message``) becomes :class:`ApiError`, which commands turn into
exit code 1 (a rejection) or 2 (a usage error), as fits.

Retries: a 429 (rate limited) or 503 (overloaded) answer that carries ``Retry-After`` was
refused before the node did any work, so the same request is sent again after that many
seconds, at most ``retries`` times and never waiting longer than ``retry_wait_max_s`` in all
for one call; after that the refusal is raised as usual. Resending ``POST /v1/txs`` is safe
for the same reason, and a signed transaction is identified by its hash anyway.

Every route method is registered in :data:`ROUTE_METHODS` with the route it calls, so a test
compares the set with the node's ``ROUTE_DOCS`` and a route without a method fails it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import httpx
import msgpack

from client.errors import CliError
from state_machine.tx import Transaction

DEFAULT_NODE_URL = "http://127.0.0.1:26657"
TIMEOUT_S = 30.0
RETRIES_DEFAULT = 3
RETRY_WAIT_MAX_S = 30.0
RETRY_STATUSES = frozenset({429, 503})

# method name -> (HTTP method, route path as the node declares it)
ROUTE_METHODS: dict[str, tuple[str, str]] = {}

F = TypeVar("F", bound=Callable[..., Any])


def route(method: str, path: str) -> Callable[[F], F]:
    def register(fn: F) -> F:
        ROUTE_METHODS[fn.__name__] = (method, path)
        return fn

    return register


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, body: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.body = body


def retry_after_s(response: httpx.Response) -> float | None:
    """Seconds the node asks us to wait, when it is a refusal worth retrying."""
    if response.status_code not in RETRY_STATUSES:
        return None
    text = response.headers.get("retry-after", "")
    if not text.isdigit():
        return None  # no header (e.g. /readyz not ready), or an HTTP date: not retried
    return float(text)


def history_params(from_ms: int | None, to_ms: int | None, **rest: Any) -> dict[str, Any]:
    return {"from": from_ms, "to": to_ms, **rest}


class NodeClient:
    """Blocking client of one node. ``retries=0`` turns retrying off (the CLI's choice)."""

    def __init__(
        self,
        base_url: str = DEFAULT_NODE_URL,
        timeout_s: float = TIMEOUT_S,
        retries: int = RETRIES_DEFAULT,
        retry_wait_max_s: float = RETRY_WAIT_MAX_S,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise CliError(f"--node must be an http(s) URL, got {base_url!r}")
        if retries < 0:
            raise CliError("retries must be zero or more")
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.retry_wait_max_s = retry_wait_max_s
        self.retried = 0  # requests sent again after a Retry-After, since this client opened
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kw)
        except httpx.TimeoutException:
            raise CliError(f"node at {self.base_url} did not answer in time") from None
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach node at {self.base_url}: {exc}") from None

    def _send_retrying(self, method: str, path: str, **kw: Any) -> httpx.Response:
        waited_s = 0.0
        for attempt in range(self.retries + 1):
            response = self._send(method, path, **kw)
            wait_s = retry_after_s(response)
            if wait_s is None or attempt == self.retries:
                return response
            if waited_s + wait_s > self.retry_wait_max_s:
                return response
            time.sleep(wait_s)
            waited_s += wait_s
            self.retried += 1
        raise AssertionError("unreachable: the loop returns on its last attempt")

    def _request(self, method: str, path: str, **kw: Any) -> Any:
        response = self._send_retrying(method, path, **kw)
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

    # ---- node ------------------------------------------------------------------------------

    @route("GET", "/")
    def index(self) -> dict[str, Any]:
        return self.get("/")  # type: ignore[no-any-return]

    @route("GET", "/openapi.json")
    def openapi(self) -> dict[str, Any]:
        return self.get("/openapi.json")  # type: ignore[no-any-return]

    @route("GET", "/livez")
    def livez(self) -> dict[str, Any]:
        return self.get("/livez")  # type: ignore[no-any-return]

    @route("GET", "/readyz")
    def readyz(self) -> dict[str, Any]:
        return self.get("/readyz")  # type: ignore[no-any-return]

    @route("GET", "/v1/status")
    def status(self) -> dict[str, Any]:
        return self.get("/v1/status")  # type: ignore[no-any-return]

    @route("GET", "/v1/vault")
    def vault(self) -> dict[str, Any]:
        return self.get("/v1/vault")  # type: ignore[no-any-return]

    # ---- governance ----------------------------------------------------------------------------

    @route("GET", "/v1/gov/proposals")
    def gov_proposals(self, status: str | None = None, limit: int | None = None) -> dict[str, Any]:
        return self.get("/v1/gov/proposals", status=status, limit=limit)  # type: ignore[no-any-return]

    @route("GET", "/v1/gov/proposals/{proposal_id}")
    def gov_proposal(self, proposal_id: int) -> dict[str, Any]:
        return self.get(f"/v1/gov/proposals/{int(proposal_id)}")  # type: ignore[no-any-return]

    @route("GET", "/v1/gov/proposals/{proposal_id}/tally")
    def gov_tally(self, proposal_id: int) -> dict[str, Any]:
        path = f"/v1/gov/proposals/{int(proposal_id)}/tally"
        return self.get(path)  # type: ignore[no-any-return]

    # ---- the EVM bridge (docs/BRIDGE.md); 404 bridge_disabled on a chain without one -----------

    @route("GET", "/v1/bridge")
    def bridge(self) -> dict[str, Any]:
        """The bridge's EVM chain, contract, confirmations, rate limit, totals and keys."""
        return self.get("/v1/bridge")  # type: ignore[no-any-return]

    @route("GET", "/v1/bridge/deposits/{tx_hash}/{log_index}")
    def bridge_deposit(self, tx_hash: str, log_index: int) -> dict[str, Any]:
        """A deposit by its EVM transaction hash (hex) and log index: pending or credited."""
        return self.get(f"/v1/bridge/deposits/{tx_hash}/{log_index}")  # type: ignore[no-any-return]

    @route("GET", "/v1/bridge/withdrawals/{withdrawal_id}")
    def bridge_withdrawal(self, withdrawal_id: int) -> dict[str, Any]:
        """A withdrawal's voucher, EIP-712 domain, validators' signatures and status."""
        return self.get(f"/v1/bridge/withdrawals/{withdrawal_id}")  # type: ignore[no-any-return]

    @route("GET", "/v1/bridge/accounts/{address}/withdrawals")
    def bridge_withdrawals(self, address: str) -> dict[str, Any]:
        """An account's latest bridge withdrawals, newest first."""
        path = f"/v1/bridge/accounts/{address}/withdrawals"
        return self.get(path)  # type: ignore[no-any-return]

    # ---- transactions and blocks -------------------------------------------------------------

    @route("POST", "/v1/txs")
    def submit(
        self, tx: Transaction, wait_commit: bool = True, timeout_s: float | None = None
    ) -> Any:
        """POST the msgpack form of ``tx``; with ``wait_commit`` the answer has the results."""
        params: dict[str, Any] = {"wait": "commit"} if wait_commit else {}
        if timeout_s is not None:
            params["timeout_s"] = timeout_s
        return self._request(
            "POST",
            "/v1/txs",
            content=tx.to_wire(),
            params=params,
            headers={"content-type": "application/msgpack"},
        )

    @route("POST", "/v1/txs/batch")
    def submit_batch(self, txs: Sequence[Transaction]) -> dict[str, Any]:
        """Submit many transactions in one request (not waiting for their commit)."""
        return self._request(  # type: ignore[no-any-return]
            "POST",
            "/v1/txs/batch",
            content=msgpack.packb([tx.to_wire() for tx in txs]),
            headers={"content-type": "application/msgpack"},
        )

    @route("GET", "/v1/txs/{tx_id}")
    def tx(self, tx_id: str) -> dict[str, Any]:
        return self.get(f"/v1/txs/{tx_id}")  # type: ignore[no-any-return]

    @route("GET", "/v1/blocks/{height}")
    def block(self, height: int | str = "latest") -> dict[str, Any]:
        """The block at ``height``, or the newest with ``"latest"``."""
        if height != "latest" and not isinstance(height, int):
            raise CliError(f"height must be an integer or 'latest', got {height!r}")
        return self.get(f"/v1/blocks/{height}")  # type: ignore[no-any-return]

    # ---- markets ---------------------------------------------------------------------------

    @route("GET", "/v1/markets")
    def markets(self) -> dict[str, Any]:
        return self.get("/v1/markets")  # type: ignore[no-any-return]

    @route("GET", "/v1/markets/{market}")
    def market(self, market: str) -> dict[str, Any]:
        return self.get(f"/v1/markets/{market}")  # type: ignore[no-any-return]

    @route("GET", "/v1/markets/{market}/book")
    def book(self, market: str, depth: int | None = None) -> dict[str, Any]:
        return self.get(f"/v1/markets/{market}/book", depth=depth)  # type: ignore[no-any-return]

    @route("GET", "/v1/markets/{market}/trades")
    def trades(self, market: str, limit: int | None = None) -> dict[str, Any]:
        return self.get(f"/v1/markets/{market}/trades", limit=limit)  # type: ignore[no-any-return]

    @route("GET", "/v1/markets/{market}/funding")
    def market_funding(
        self, market: str, from_ms: int | None = None, to_ms: int | None = None,
        cursor: str | None = None, limit: int | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        params = history_params(from_ms, to_ms, cursor=cursor, limit=limit)
        return self.get(f"/v1/markets/{market}/funding", **params)  # type: ignore[no-any-return]

    @route("GET", "/v1/markets/{market}/candles")
    def candles(
        self, market: str, interval: str, from_ms: int | None = None, to_ms: int | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        params = history_params(from_ms, to_ms, interval=interval, limit=limit)
        return self.get(f"/v1/markets/{market}/candles", **params)  # type: ignore[no-any-return]

    @route("GET", "/v1/markets/{market}/stats")
    def market_stats(self, market: str) -> dict[str, Any]:
        return self.get(f"/v1/markets/{market}/stats")  # type: ignore[no-any-return]

    # ---- accounts --------------------------------------------------------------------------

    @route("GET", "/v1/accounts/{address}")
    def account(self, address: str) -> dict[str, Any]:
        return self.get(f"/v1/accounts/{address}")  # type: ignore[no-any-return]

    @route("GET", "/v1/accounts/{address}/orders")
    def orders(self, address: str) -> dict[str, Any]:
        return self.get(f"/v1/accounts/{address}/orders")  # type: ignore[no-any-return]

    def _account_history(
        self, address: str, what: str, from_ms: int | None, to_ms: int | None,
        cursor: str | None, limit: int | None,
    ) -> dict[str, Any]:  # fmt: skip
        params = history_params(from_ms, to_ms, cursor=cursor, limit=limit)
        return self.get(f"/v1/accounts/{address}/{what}", **params)  # type: ignore[no-any-return]

    @route("GET", "/v1/accounts/{address}/fills")
    def fills(
        self, address: str, from_ms: int | None = None, to_ms: int | None = None,
        cursor: str | None = None, limit: int | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        return self._account_history(address, "fills", from_ms, to_ms, cursor, limit)

    @route("GET", "/v1/accounts/{address}/funding")
    def account_funding(
        self, address: str, from_ms: int | None = None, to_ms: int | None = None,
        cursor: str | None = None, limit: int | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        return self._account_history(address, "funding", from_ms, to_ms, cursor, limit)

    @route("GET", "/v1/accounts/{address}/ledger")
    def ledger(
        self, address: str, from_ms: int | None = None, to_ms: int | None = None,
        cursor: str | None = None, limit: int | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        return self._account_history(address, "ledger", from_ms, to_ms, cursor, limit)

    @route("GET", "/v1/accounts/{address}/pnl")
    def pnl(
        self, address: str, interval: str, from_ms: int | None = None, to_ms: int | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        params = history_params(from_ms, to_ms, interval=interval, limit=limit)
        return self.get(f"/v1/accounts/{address}/pnl", **params)  # type: ignore[no-any-return]

    @route("GET", "/v1/accounts/{address}/subaccounts")
    def subaccounts(self, address: str) -> dict[str, Any]:
        return self.get(f"/v1/accounts/{address}/subaccounts")  # type: ignore[no-any-return]

    @route("GET", "/v1/accounts/{address}/agents")
    def agents(self, address: str) -> dict[str, Any]:
        return self.get(f"/v1/accounts/{address}/agents")  # type: ignore[no-any-return]

    @route("GET", "/v1/accounts/{address}/fees")
    def account_fees(self, address: str) -> dict[str, Any]:
        return self.get(f"/v1/accounts/{address}/fees")  # type: ignore[no-any-return]

    @route("GET", "/v1/fees")
    def fees(self) -> dict[str, Any]:
        return self.get("/v1/fees")  # type: ignore[no-any-return]

    @route("GET", "/v1/proofs/accounts/{address}")
    def account_proof(self, address: str, height: int | None = None) -> dict[str, Any]:
        path = f"/v1/proofs/accounts/{address}"
        return self.get(path, height=height)  # type: ignore[no-any-return]

    # ---- staking (docs/API.md "Staking"; staking off: enabled false or staking_disabled) -----

    @route("GET", "/v1/staking")
    def staking(self) -> dict[str, Any]:
        return self.get("/v1/staking")  # type: ignore[no-any-return]

    @route("GET", "/v1/validators")
    def validators(self) -> dict[str, Any]:
        return self.get("/v1/validators")  # type: ignore[no-any-return]

    @route("GET", "/v1/validators/{operator}")
    def validator(self, operator: str, limit: int | None = None) -> dict[str, Any]:
        """One validator by operator address or consensus key, with its delegations."""
        return self.get(f"/v1/validators/{operator}", limit=limit)  # type: ignore[no-any-return]

    @route("GET", "/v1/accounts/{address}/delegations")
    def delegations(self, address: str) -> dict[str, Any]:
        return self.get(f"/v1/accounts/{address}/delegations")  # type: ignore[no-any-return]

    @route("GET", "/v1/epochs/{epoch}")
    def epoch_set(self, epoch: int | str = "current") -> dict[str, Any]:
        return self.get(f"/v1/epochs/{epoch}")  # type: ignore[no-any-return]

    @route("GET", "/v1/proofs/epoch_sets/{epoch}")
    def epoch_set_proof(self, epoch: int) -> dict[str, Any]:
        """The proof of epoch ``epoch``'s set at its hand-over height (``cli/handover.py``)."""
        return self.get(f"/v1/proofs/epoch_sets/{epoch}")  # type: ignore[no-any-return]

    @route("GET", "/v1/proofs/records/{kind}")
    def record_proof(
        self, kind: str, ids: dict[str, int | str], height: int | None = None
    ) -> dict[str, Any]:
        """One state record of any kind (``order``, ``position``, ``market``, ...) named by its
        ids (docs/API.md, ``GET /v1/proofs/records/{kind}``): ``{"market": 2, "order": 41}``."""
        params: dict[str, Any] = dict(ids)
        params["height"] = height
        return self.get(f"/v1/proofs/records/{kind}", **params)  # type: ignore[no-any-return]
