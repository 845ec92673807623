"""Shared plumbing of the trader commands: options, the market catalogue, signing, output.

Everything here talks to a node through its public HTTP API (:class:`client.http.NodeClient`)
and to local key files; nothing reads a node's data directory. Prices, sizes and amounts are
decimal strings at the edge and are converted to ticks, lots and atoms exactly, with the tick,
lot and decimals the node publishes at ``GET /v1/markets`` (a value that is not a whole number
of ticks or lots is refused here, before anything is signed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cli.errors import EXIT_OK, EXIT_REJECTED, CliError
from client.http import DEFAULT_NODE_URL, ApiError, NodeClient
from client.markets import MarketInfo
from client.signing import load_key_file, sign_actions
from node.api.units import UnitError, parse_decimal
from node.keys import address_of, parse_address
from state_machine.accounts.actions import ActAs
from state_machine.crypto import Keypair
from state_machine.tx import Action

NODE_ENV = "PERPBFT_NODE"
KEY_ENV = "PERPBFT_KEY"

# Admission refusals that are the user's transaction being refused (exit 1), as opposed to a
# malformed request or an unreachable node (exit 2).
USAGE_API_CODES = frozenset(
    {"malformed", "malformed_json", "unsupported_media_type", "body_too_large", "bad_parameter"}
)


def add_common_arguments(parser: argparse.ArgumentParser, *, key: bool = False) -> None:
    parser.add_argument(
        "--node",
        default=None,
        help=f"API URL of a node (default: ${NODE_ENV}, else {DEFAULT_NODE_URL})",
    )
    if key:
        parser.add_argument("--key", default=None, help=f"signing key file (default: ${KEY_ENV})")
        parser.add_argument(
            "--as",
            dest="act_as",
            default=None,
            metavar="ADDRESS",
            help="act for this account: a sub-account of --key's, or the account (or its "
            "sub-account) that approved --key as agent; also the default address of queries",
        )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")


def node_url(args: argparse.Namespace) -> str:
    url: str = args.node or os.environ.get(NODE_ENV) or DEFAULT_NODE_URL
    return url


def open_client(args: argparse.Namespace) -> NodeClient:
    return NodeClient(node_url(args), retries=0)  # a command reports a refusal at once


def key_path(args: argparse.Namespace) -> Path:
    text = getattr(args, "key", None) or os.environ.get(KEY_ENV)
    if not text:
        raise CliError(f"--key FILE is required (or set ${KEY_ENV})")
    return Path(text)


def load_key(args: argparse.Namespace) -> tuple[Path, Keypair]:
    path = key_path(args)
    return path, load_key_file(path)


def address_argument(args: argparse.Namespace, given: str | None) -> str:
    """The account address to query: the argument, else --as, else the --key file's account."""
    if given:
        return given
    if getattr(args, "act_as", None):
        return str(args.act_as)
    _, key = load_key(args)
    return address_of(key.public_key)


# ---- the market catalogue ------------------------------------------------------------------


class Catalogue:
    """Markets by symbol (case-insensitive) and assets by symbol, from ``GET /v1/markets``."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.markets = [MarketInfo(m) for m in body.get("markets", [])]
        self.by_symbol = {m.symbol.upper(): m for m in self.markets}
        self.assets: dict[str, tuple[int, int]] = {
            str(a["symbol"]).upper(): (int(a["asset_id"]), int(a["decimals"]))
            for a in body.get("assets", [])
        }

    @classmethod
    def fetch(cls, client: NodeClient) -> Catalogue:
        return cls(api_get(client, "/v1/markets"))

    def market(self, symbol: str) -> MarketInfo:
        found = self.by_symbol.get(symbol.upper())
        if found is None:
            known = ", ".join(m.symbol for m in self.markets)
            raise CliError(f"no market {symbol!r} (markets: {known})")
        return found

    def asset_atoms(self, symbol: str, amount: str) -> tuple[int, int]:
        """(asset id, atoms) of ``amount`` of ``symbol``, exactly."""
        found = self.assets.get(symbol.upper())
        if found is None:
            raise CliError(f"no asset {symbol!r} (assets: {', '.join(self.assets)})")
        asset_id, decimals = found
        try:
            value = parse_decimal(amount, "amount") * 10**decimals
        except UnitError as exc:
            raise CliError(exc.message) from None
        if value.denominator != 1:
            raise CliError(f"amount {amount}: {symbol} has {decimals} decimal places")
        if value.numerator == 0:
            raise CliError("amount must be positive")
        return asset_id, int(value.numerator)


# ---- talking to the node -------------------------------------------------------------------


def api_get(client: NodeClient, path: str, **params: Any) -> Any:
    """GET that turns an API error reply into a one-line failure (exit 1 for a 404 of
    something that does not exist, 2 for a bad request)."""
    try:
        return client.get(path, **params)
    except ApiError as exc:
        code = EXIT_REJECTED if exc.status == 404 else 2
        raise CliError(f"{exc.code}: {exc.message}", code) from None


def sign_and_submit(
    args: argparse.Namespace, client: NodeClient, actions: Sequence[Action]
) -> dict[str, Any]:
    """Sign ``actions`` with the --key file's key and a fresh nonce, submit, wait for the
    commit; return the committed transaction. An admission refusal raises CliError (exit 1;
    2 for a malformed request); with --json it is first printed as one JSON object, the
    node's verdict form ``{"tx_id", "status": "rejected", "code", "message"}``."""
    path, key = load_key(args)
    status = api_get(client, "/v1/status")
    tx = sign_actions(path, str(status["chain_id"]), act_as_prefix(args) + list(actions), key)
    try:
        answer: dict[str, Any] = client.submit(tx, wait_commit=True)
    except ApiError as exc:
        if getattr(args, "json", False):
            print_json(
                {
                    "tx_id": tx.tx_id().hex(),
                    "status": "rejected",
                    "code": exc.code,
                    "message": exc.message,
                }
            )
        exit_code = 2 if exc.code in USAGE_API_CODES else EXIT_REJECTED
        raise CliError(f"rejected: {exc.code}: {exc.message}", exit_code) from None
    if answer.get("status") != "committed":
        if getattr(args, "json", False):
            print_json(answer)  # {"tx_id", "status": "pending", "message"}
        raise CliError(
            f"transaction {answer.get('tx_id')} admitted but not committed yet; "
            f"check later with: perpbft tx {answer.get('tx_id')}",
            EXIT_REJECTED,
        )
    return answer


def act_as_prefix(args: argparse.Namespace) -> list[Action]:
    """``[ActAs(address)]`` when --as names an account, else nothing: the actions after it act
    for that account (docs/ARCHITECTURE.md, "Sub-accounts and agent keys")."""
    text = getattr(args, "act_as", None)
    if not text:
        return []
    try:
        return [ActAs(parse_address(text))]
    except ValueError as exc:
        raise CliError(f"--as: {exc}") from None


def committed_ok(answer: dict[str, Any]) -> bool:
    if answer.get("code") != "ok":
        return False
    return all(r.get("code") == "ok" for r in answer.get("results", []))


def print_committed(
    answer: dict[str, Any], args: argparse.Namespace, market: MarketInfo | None = None
) -> int:
    """Print a committed transaction's per-action results; exit 1 if anything was refused."""
    ok = committed_ok(answer)
    if args.json:
        print_json(answer)
        return EXIT_OK if ok else EXIT_REJECTED
    out = console()
    out.print(
        f"tx {answer['tx_id']} committed at height {answer['height']}"
        + ("" if answer.get("code") == "ok" else f": {answer['code']}: {answer.get('message')}")
    )
    for i, r in enumerate(answer.get("results", [])):
        out.print(f"  action {i}: {describe_result(r, market)}")
    return EXIT_OK if ok else EXIT_REJECTED


# The result's ``order_id`` field carries the id an action created; named by what it is.
CREATED_ID_NAMES = {
    "withdraw_request": "withdrawal_id",
    "submit_proposal": "proposal_id",
    "cast_vote": "proposal_id",
    "place_twap": "twap_id",
    "cancel_twap": "twap_id",
    "set_position_tpsl": "group_id",
    "cancel_tpsl": "group_id",
    "bridge_withdraw": "withdrawal_id",
}


def describe_result(result: dict[str, Any], market: MarketInfo | None) -> str:
    code = result.get("code")
    if code != "ok":
        return f"REJECTED {code}: {result.get('message', '')}"
    parts = ["ok"]
    if result.get("order_id"):
        name = CREATED_ID_NAMES.get(str(result.get("action")), "order_id")
        parts.append(f"{name}={result['order_id']}")
    if result.get("status"):
        parts.append(f"status={result['status']}")
    filled = int(result.get("filled_lots") or 0)
    if filled:
        size = market.lots_to_size(filled) if market is not None else f"{filled} lots"
        parts.append(f"filled={size}")
    if result.get("count"):
        parts.append(f"count={result['count']}")
    return " ".join(parts)


# ---- output --------------------------------------------------------------------------------


PIPE_WIDTH = 200  # columns for tables written to a pipe or file
TIME_COLUMN = "time (UTC)"


def format_time_ms(ms: Any) -> str:
    """Epoch milliseconds as UTC date and time to the millisecond, for tables (``--json``
    keeps the number); empty when absent."""
    if not isinstance(ms, int) or isinstance(ms, bool) or ms < 0:
        return ""
    stamp = datetime.fromtimestamp(ms // 1000, tz=UTC)
    return f"{stamp:%Y-%m-%d %H:%M:%S}.{ms % 1000:03d}"


def console(stderr: bool = False) -> Console:
    """A console for people. On a terminal rich uses its width; into a pipe or a file it
    would assume 80 columns and cut values short ("BTC-P…"), so it gets a wide line."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else PIPE_WIDTH)


def print_json(body: Any) -> None:
    print(json.dumps(body, indent=None, separators=(",", ":")))


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    t = Table(title=title, title_justify="left")
    for column in columns:
        t.add_column(column)
    for row in rows:
        t.add_row(*["" if v is None else str(v) for v in row])
    return t


def print_tables(*tables: Table) -> None:
    out = console()
    for t in tables:
        out.print(t)
