"""OpenAPI 3.1 of the API, generated from the app's own routes and the answer models.

Paths and methods come from the Starlette route table ``build_app`` serves (so a route cannot
be served without being described: :func:`openapi` refuses a route with no entry in
``ROUTE_DOCS``); each entry names its query parameters and its answer models
(``node.api.models``), turned into JSON Schema by :func:`schema_of` from their type hints.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field
from typing import Any, Union, get_args, get_origin, get_type_hints, is_typeddict

from starlette.routing import Route

from node.api import bridge as bridge_api
from node.api import models as m
from state_machine.governance.records import STATUSES

DECIMAL_PATTERN = r"^-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?$"
HEX_PATTERN = r"^[0-9a-f]*$"
INT_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    schema: dict[str, Any]
    description: str
    required: bool = False


def uint(lo: int = 0, hi: int = INT_MAX) -> dict[str, Any]:
    return {"type": "integer", "minimum": lo, "maximum": hi}


def _history_params(limit_default: int = 100) -> tuple[Param, ...]:
    return (
        Param("from", uint(), "earliest block time, ms (inclusive)"),
        Param("to", uint(), "latest block time, ms (inclusive)"),
        Param("cursor", {"type": "string", "pattern": r"^[0-9]+\.[0-9]+$"},
              "items strictly older than this one (the previous page's next_cursor)"),
        Param("limit", {**uint(1, 1000), "default": limit_default}, "items per page"),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class RouteDoc:
    summary: str
    responses: dict[int, type]
    params: tuple[Param, ...] = ()
    body: str | None = None  # request media types, for POST
    tags: tuple[str, ...] = field(default=())


ERRORS = {400: m.Error, 404: m.Error, 429: m.Error, 503: m.Error}

# The bridge's routes (node/api/bridge.py); 404 bridge_disabled on a chain without one.
BRIDGE_ROUTE_DOCS: dict[tuple[str, str], RouteDoc] = {
    ("GET", "/v1/bridge"): RouteDoc(
        "the EVM bridge: chain, contract, confirmations, rate limit, totals, bridge keys",
        {200: bridge_api.BridgeInfo, **ERRORS},
    ),
    ("GET", "/v1/bridge/deposits/{tx_hash}/{log_index}"): RouteDoc(
        "a deposit by its EVM transaction hash and log index: attestations or its credit",
        {200: bridge_api.BridgeDeposit, **ERRORS},
    ),
    ("GET", "/v1/bridge/withdrawals/{withdrawal_id}"): RouteDoc(
        "a bridge withdrawal: voucher, EIP-712 domain, validators' signatures, status",
        {200: bridge_api.BridgeWithdrawal, **ERRORS},
    ),
    ("GET", "/v1/bridge/accounts/{address}/withdrawals"): RouteDoc(
        "an account's latest 100 bridge withdrawals, newest first",
        {200: bridge_api.BridgeWithdrawals, **ERRORS},
    ),
}

# (method, path) -> what it does; every served route must be here.
ROUTE_DOCS: dict[tuple[str, str], RouteDoc] = {
    ("GET", "/"): RouteDoc("the routes and where the OpenAPI schema is", {200: m.Index}),
    ("GET", "/openapi.json"): RouteDoc("this schema (OpenAPI 3.1)", {200: dict}),
    ("GET", "/livez"): RouteDoc("liveness: the event loop runs", {200: m.Health, 503: m.Error}),
    ("GET", "/readyz"): RouteDoc("readiness: quorum connected, recent block",
                                 {200: m.Health, 503: m.Error}),
    ("GET", "/v1/status"): RouteDoc("height, view, peers, readiness", {200: m.Status}),
    ("POST", "/v1/txs"): RouteDoc(
        "submit one signed transaction (msgpack or JSON)",
        {200: m.CommittedTx, 202: m.Submitted, 409: m.Error, 413: m.Error, **ERRORS},
        (Param("wait", {"type": "string", "enum": ["commit"]}, "wait for the commit"),
         Param("timeout_s", {"type": "number"}, "how long to wait for the commit")),
        body="application/msgpack, application/json",
    ),
    ("POST", "/v1/txs/batch"): RouteDoc(
        "submit many signed transactions (a msgpack array of their bytes)",
        {200: m.BatchSubmitted, 413: m.Error, **ERRORS}, body="application/msgpack",
    ),
    ("GET", "/v1/txs/{tx_id}"): RouteDoc("a committed or pending transaction",
                                         {200: m.CommittedTx, 202: m.Submitted, **ERRORS}),
    ("GET", "/v1/blocks/{height}"): RouteDoc("a stored block and its commit QC",
                                             {200: m.BlockAnswer, **ERRORS}),
    ("GET", "/v1/markets"): RouteDoc("every market and asset", {200: m.Markets}),
    ("GET", "/v1/markets/{market}"): RouteDoc("one market", {200: m.MarketAnswer, **ERRORS}),
    ("GET", "/v1/markets/{market}/book"): RouteDoc(
        "price levels", {200: m.Book, **ERRORS},
        (Param("depth", {**uint(1, 500), "default": 20}, "levels per side"),),
    ),
    ("GET", "/v1/markets/{market}/trades"): RouteDoc(
        "recent trades, newest first", {200: m.Trades, **ERRORS},
        (Param("limit", {**uint(1, 1000), "default": 50}, "trades"),),
    ),
    ("GET", "/v1/markets/{market}/funding"): RouteDoc(
        "funding settlements, newest first", {200: m.MarketFunding, **ERRORS}, _history_params()
    ),
    ("GET", "/v1/markets/{market}/candles"): RouteDoc(
        "OHLCV candles, oldest first", {200: m.Candles, **ERRORS},
        (Param("interval", {"type": "string", "enum": ["1m", "5m", "15m", "1h", "4h", "1d"]},
               "candle length", required=True),
         Param("from", uint(), "earliest candle start, ms"),
         Param("to", uint(), "latest candle start, ms"),
         Param("limit", {**uint(1, 1000), "default": 300}, "candles (the newest)")),
    ),
    ("GET", "/v1/markets/{market}/stats"): RouteDoc("rolling 24 h statistics",
                                                    {200: m.MarketStats, **ERRORS}),
    ("GET", "/v1/accounts/{address}"): RouteDoc("balances, positions, margin",
                                                {200: m.AccountAnswer, **ERRORS}),
    ("GET", "/v1/accounts/{address}/orders"): RouteDoc(
        "open orders and waiting triggers (with their good-til times), running TWAPs and "
        "TP/SL groups", {200: m.Orders, **ERRORS}),
    ("GET", "/v1/accounts/{address}/fills"): RouteDoc(
        "the account's fills, newest first", {200: m.Fills, **ERRORS}, _history_params()
    ),
    ("GET", "/v1/accounts/{address}/funding"): RouteDoc(
        "the account's funding payments", {200: m.AccountFunding, **ERRORS}, _history_params()
    ),
    ("GET", "/v1/accounts/{address}/ledger"): RouteDoc(
        "everything that moved the account's balances", {200: m.Ledger, **ERRORS},
        _history_params(),
    ),
    ("GET", "/v1/accounts/{address}/pnl"): RouteDoc(
        "PnL series: realised PnL, fees, funding per hour or day, oldest first",
        {200: m.PnlSeries, **ERRORS},
        (Param("interval", {"type": "string", "enum": ["1h", "1d"]}, "bucket length",
               required=True),
         Param("from", uint(), "earliest bucket start, ms"),
         Param("to", uint(), "latest bucket start, ms"),
         Param("limit", {**uint(1, 1000), "default": 300}, "buckets (the newest)")),
    ),
    ("GET", "/v1/proofs/accounts/{address}"): RouteDoc(
        "Merkle proofs of the account's state with the certifying header and QC",
        {200: m.AccountProof, **ERRORS},
        (Param("height", uint(), "a recent past height (default: the latest)"),),
    ),
    ("GET", "/v1/proofs/records/{kind}"): RouteDoc(
        "Merkle proof of one state record of any kind (balance, position, order, market, "
        "oracle, nonces, fees, vault, asset, withdrawal, trigger, meta, validator, delegation, "
        "unbonding, epoch_set, staking_meta, epoch_schedule, volume, subaccounts, subaccount, "
        "agent, fee_tiers, twap, tpsl, good_til) named by its ids, "
        "oracle, nonces, fees, vault, asset, withdrawal, trigger, meta, bridge_key, "
        "bridge_deposit, bridge_withdrawal) named by its ids, "
        "with the certifying header and QC",
        {200: m.RecordProof, **ERRORS},
        (Param("height", uint(), "a past height (default: the latest)"),
         Param("account", {"type": "string"}, "balance, position: account address"),
         Param("asset", uint(), "balance, fees, vault, asset: asset id"),
         Param("market", uint(), "position, order, market, oracle, trigger, twap, tpsl, "
               "good_til: market id"),
         Param("order", uint(), "order, trigger, good_til: order id"),
         Param("twap", uint(), "twap: TWAP id"),
         Param("group", uint(), "tpsl: TP/SL group id"),
         Param("validator", {"type": "string"}, "oracle: validator public key"),
         Param("signer", {"type": "string"}, "nonces: signer public key"),
         Param("withdrawal", uint(), "withdrawal, bridge_withdrawal: withdrawal id"),
         Param("evm_chain", uint(), "bridge_deposit: EVM chain id"),
         Param("tx", {"type": "string"}, "bridge_deposit: EVM transaction hash"),
         Param("log", uint(), "bridge_deposit: log index"),
         Param("operator", {"type": "string"}, "validator, delegation: operator address"),
         Param("delegator", {"type": "string"}, "delegation: delegator address"),
         Param("unbonding", uint(), "unbonding: unbonding entry id"),
         Param("epoch", uint(), "epoch_set: epoch number"),
         Param("master", {"type": "string"}, "subaccounts: master address"),
         Param("agent", {"type": "string"}, "agent: agent public key")),
    ),
    ("GET", "/v1/vault"): RouteDoc("the liquidation vault and its risk policy", {200: m.Vault}),
    # Staking (node/api/staking.py): off => enabled false / 404 staking_disabled.
    ("GET", "/v1/staking"): RouteDoc("staking parameters, current epoch, bonded and burnt stake",
                                     {200: m.StakingParamsAnswer, **ERRORS}),
    ("GET", "/v1/validators"): RouteDoc(
        "registered validators by stake: power, commission, jailed, active, p2p address",
        {200: m.Validators, **ERRORS}),
    ("GET", "/v1/validators/{operator}"): RouteDoc(
        "one validator (by operator or consensus key) with its delegations",
        {200: m.ValidatorAnswer, **ERRORS},
        (Param("limit", {**uint(1, 1000), "default": 100}, "delegations (largest first)"),)),
    ("GET", "/v1/accounts/{address}/delegations"): RouteDoc(
        "the account's delegations and unbonding entries", {200: m.AccountDelegations, **ERRORS}),
    ("GET", "/v1/epochs/{epoch}"): RouteDoc(
        "the active set of an epoch (a number or 'current')", {200: m.EpochSetAnswer, **ERRORS}),
    ("GET", "/v1/proofs/epoch_sets/{epoch}"): RouteDoc(
        "Merkle proof of an epoch's set (e >= 2) in the state after the last block of e - 2, "
        "certified by a QC of the set of e - 1: one hand-over for the light client (answered "
        "from the node's stored hand-over certificate once that state is pruned)",
        {200: m.RecordProof, **ERRORS}),
    ("GET", "/v1/gov/proposals"): RouteDoc(
        "governance proposals, newest first", {200: m.Proposals, **ERRORS},
        (Param("status", {"type": "string", "enum": list(STATUSES)}, "only this status"),
         Param("limit", {**uint(1, 200), "default": 50}, "proposals")),
    ),
    ("GET", "/v1/gov/proposals/{proposal_id}"): RouteDoc(
        "one proposal with its votes", {200: m.ProposalDetail, **ERRORS}
    ),
    ("GET", "/v1/gov/proposals/{proposal_id}/tally"): RouteDoc(
        "the proposal's votes weighed with the voting power now", {200: m.ProposalTally, **ERRORS}
    ),
    ("GET", "/v1/accounts/{address}/subaccounts"): RouteDoc(
        "the account's sub-accounts (and, for a sub-account, its master)",
        {200: m.SubAccounts, **ERRORS}),
    ("GET", "/v1/accounts/{address}/agents"): RouteDoc(
        "the agent keys the account approved (and whose agent the address is)",
        {200: m.Agents, **ERRORS}),
    ("GET", "/v1/accounts/{address}/fees"): RouteDoc(
        "the account's 14-day volume, fee tier and rates", {200: m.AccountFees, **ERRORS}),
    ("GET", "/v1/fees"): RouteDoc("the fee tiers by 14-day volume", {200: m.FeeSchedule}),
    **BRIDGE_ROUTE_DOCS,
}  # fmt: skip


# ---- JSON Schema from type hints ---------------------------------------------------------


def schema_of(tp: Any, components: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of a type hint; TypedDicts go to ``components`` and are referenced."""
    if is_typeddict(tp):
        name = tp.__name__
        if name not in components:
            components[name] = {}  # placeholder: a model may refer to itself
            components[name] = _object_schema(tp, components)
        return {"$ref": f"#/components/schemas/{name}"}
    origin = get_origin(tp)
    if origin is typing.Annotated:
        base, *extras = get_args(tp)
        pattern = {"decimal": DECIMAL_PATTERN, "hex": HEX_PATTERN}[extras[0]]
        return {**schema_of(base, components), "pattern": pattern}
    if origin in (Union, types.UnionType):
        return {"anyOf": [schema_of(a, components) for a in get_args(tp)]}
    if origin is list:
        (item,) = get_args(tp)
        return {"type": "array", "items": schema_of(item, components)}
    if origin is dict or tp is dict:
        return {"type": "object"}
    simple = {int: "integer", str: "string", bool: "boolean", float: "number",
              type(None): "null"}  # fmt: skip
    if tp in simple:
        return {"type": simple[tp]}
    if tp is Any:
        return {}
    raise TypeError(f"no JSON Schema for {tp!r}")


def _object_schema(model: Any, components: dict[str, Any]) -> dict[str, Any]:
    hints = get_type_hints(model, include_extras=True)
    properties = {}
    required = []
    for name, hint in hints.items():
        # Read from the hint: with postponed annotations ``__required_keys__`` misses it.
        if get_origin(hint) is typing.NotRequired:
            (hint,) = get_args(hint)
        else:
            required.append(name)
        properties[name] = schema_of(hint, components)
    return {
        "type": "object",
        "properties": properties,
        "required": sorted(required),
        "additionalProperties": model in m.OPEN_MODELS,
    }


# ---- the document --------------------------------------------------------------------------


def served_routes(routes: list[Any]) -> list[tuple[str, str]]:
    """(method, path) of every HTTP route of the app (HEAD, which Starlette adds, aside)."""
    out = []
    for route in routes:
        if isinstance(route, Route):
            for method in sorted(route.methods or ()):
                if method != "HEAD":
                    out.append((method, route.path))
    return out


def openapi(routes: list[Any], version: str = "1") -> dict[str, Any]:
    components: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    for method, path in served_routes(routes):
        doc = ROUTE_DOCS.get((method, path))
        if doc is None:
            raise KeyError(f"{method} {path} is served but has no ROUTE_DOCS entry")
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, doc, components)
    return {
        "openapi": "3.1.0",
        "info": {"title": "perpbft node API", "version": version,
                 "description": "Every route of a perpbft node; see docs/API.md."},
        "paths": paths,
        "components": {"schemas": components},
    }  # fmt: skip


def _operation(method: str, path: str, doc: RouteDoc, components: dict[str, Any]) -> Any:
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _path_names(path)
    ]
    params += [
        {"name": p.name, "in": "query", "required": p.required, "schema": p.schema,
         "description": p.description}
        for p in doc.params
    ]  # fmt: skip
    responses = {
        str(status): {
            "description": "ok" if status < 300 else "error (see docs/API.md for the codes)",
            "content": {"application/json": {"schema": schema_of(model, components)}},
        }
        for status, model in doc.responses.items()
    }
    operation: dict[str, Any] = {
        "summary": doc.summary,
        "operationId": method.lower() + "".join(c if c.isalnum() else "_" for c in path),
        "parameters": params,
        "responses": responses,
    }
    if doc.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {t.strip(): {} for t in doc.body.split(",")},
        }
    return operation


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def route_index(routes: list[Any]) -> dict[str, Any]:
    """``GET /``: every route with its summary."""
    listed = []
    for method, path in served_routes(routes):
        doc = ROUTE_DOCS.get((method, path))
        listed.append({"method": method, "path": path, "summary": doc.summary if doc else ""})
    return {"openapi": "/openapi.json", "routes": listed}
