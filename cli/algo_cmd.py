"""The order tools' commands: ``perpbft twap place|cancel|list`` and ``perpbft tpsl set|cancel``
(the options ``--tp``, ``--sl`` and ``--gtt`` of ``perpbft order place`` are in trade_cmd.py,
with the helpers here).

Like every trader command they talk only to the public API, sign with ``--key``, print tables
or one JSON object (``--json``) and exit 0 when everything was accepted, 1 when the chain or the
node refused something (code and reason printed), 2 on a usage or connection error.
"""

from __future__ import annotations

import argparse
import re
import time
from typing import Any

from cli.errors import EXIT_OK, CliError
from cli.trade_common import (
    TIME_COLUMN,
    Catalogue,
    add_common_arguments,
    address_argument,
    api_get,
    format_time_ms,
    open_client,
    print_committed,
    print_json,
    print_tables,
    sign_and_submit,
    table,
)
from client.markets import MarketInfo
from state_machine.tx import CancelTpsl, CancelTwap, PlaceTwap, SetPositionTpsl

DURATION_UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
DURATION_RE = re.compile(r"^([0-9]{1,12})(ms|s|m|h|d)$")
PPM = 1_000_000


def parse_duration_ms(text: str, what: str) -> int:
    """``90s``, ``30m``, ``2h``, ``1d`` or ``500ms`` as milliseconds."""
    found = DURATION_RE.match(text.strip())
    if found is None:
        raise CliError(f"{what} {text!r}: give a number and a unit (ms, s, m, h, d), e.g. 30m")
    return int(found.group(1)) * DURATION_UNITS_MS[found.group(2)]


def parse_good_til_ms(text: str) -> int:
    """``--gtt``: a time from now (``30m``) or an absolute time in epoch milliseconds."""
    if text.strip().isdigit():
        return int(text.strip())
    return int(time.time() * 1000) + parse_duration_ms(text, "--gtt")


def parse_percent_ppm(text: str) -> int:
    """``3%`` or ``0.5%`` as parts per million (0 < p < 100 %)."""
    body = text.strip().removesuffix("%")
    if not re.fullmatch(r"[0-9]{1,3}(\.[0-9]{1,4})?", body):
        raise CliError(f"--max-slippage {text!r}: give a percentage, e.g. 3% or 0.5%")
    whole, _, frac = body.partition(".")
    ppm = int(whole) * 10_000 + int((frac + "0000")[:4])
    if not 0 < ppm < PPM:
        raise CliError("--max-slippage must be above 0% and below 100%")
    return ppm


def optional_price(market: MarketInfo, text: str | None, what: str) -> int:
    return market.price_to_ticks(text, what) if text is not None else 0


def add_order_tool_arguments(place: Any) -> None:
    """``--tp``, ``--sl`` and ``--gtt`` of ``perpbft order place``."""
    place.add_argument(
        "--tp",
        metavar="PX",
        help="attached take-profit: arms when the order fills, on the "
        "whole position; one of --tp/--sl firing cancels the other",
    )
    place.add_argument("--sl", metavar="PX", help="attached stop-loss (see --tp)")
    place.add_argument(
        "--gtt",
        metavar="WHEN",
        help="good-til time: cancelled at the first block at or after "
        "it; a time from now (30m, 2h) or epoch milliseconds",
    )


def register(sub: Any) -> None:
    _register_twap(sub)
    _register_tpsl(sub)


def _register_twap(sub: Any) -> None:
    twap = sub.add_parser("twap", help="TWAP orders: place, cancel and list")
    twap_sub = twap.add_subparsers(dest="twap_command", metavar="SUBCOMMAND")
    twap_sub.required = True
    place = twap_sub.add_parser(
        "place",
        help="buy or sell a size over a duration, one IOC slice every 30 s of block time",
    )
    place.add_argument("market")
    place.add_argument("side", choices=("buy", "sell"))
    place.add_argument("size", help="decimal size in the base asset, e.g. 0.5")
    place.add_argument("--duration", required=True, help="e.g. 10m, 2h (1m to 24h)")
    place.add_argument("--randomize", action="store_true", help="vary slice sizes (0.8x-1.2x)")
    place.add_argument("--reduce-only", action="store_true")
    place.add_argument(
        "--max-slippage", default="3%", help="worst fill of a slice from the reference price"
    )
    add_common_arguments(place, key=True)
    place.set_defaults(func=cmd_twap_place)

    cancel = twap_sub.add_parser("cancel", help="stop a running TWAP")
    cancel.add_argument("market")
    cancel.add_argument("twap_id", type=int)
    add_common_arguments(cancel, key=True)
    cancel.set_defaults(func=cmd_twap_cancel)

    listing = twap_sub.add_parser(
        "list",
        help="running TWAPs of an account and their progress",
        description="Running TWAPs and their progress. With --json: the 'twaps' list of "
        "GET /v1/accounts/{address}/orders.",
    )
    listing.add_argument("address", nargs="?", help="account address (default: --key's)")
    add_common_arguments(listing, key=True)
    listing.set_defaults(func=cmd_twap_list)


def _register_tpsl(sub: Any) -> None:
    tpsl = sub.add_parser("tpsl", help="take-profit / stop-loss on a position")
    tpsl_sub = tpsl.add_subparsers(dest="tpsl_command", metavar="SUBCOMMAND")
    tpsl_sub.required = True
    put = tpsl_sub.add_parser(
        "set",
        help="a take-profit and/or stop-loss on the whole position (one cancels the other; "
        "replaces the position's previous pair)",
    )
    put.add_argument("market")
    put.add_argument("--tp", metavar="PX", help="take-profit trigger price")
    put.add_argument("--sl", metavar="PX", help="stop-loss trigger price")
    add_common_arguments(put, key=True)
    put.set_defaults(func=cmd_tpsl_set)

    cancel = tpsl_sub.add_parser("cancel", help="cancel a TP/SL group (both of its orders)")
    cancel.add_argument("market")
    cancel.add_argument("group_id", type=int)
    add_common_arguments(cancel, key=True)
    cancel.set_defaults(func=cmd_tpsl_cancel)


# ---- TWAP ----------------------------------------------------------------------------------


def cmd_twap_place(args: argparse.Namespace) -> int:
    duration_ms = parse_duration_ms(args.duration, "--duration")
    slippage_ppm = parse_percent_ppm(args.max_slippage)
    with open_client(args) as client:
        market = Catalogue.fetch(client).market(args.market)
        action = PlaceTwap(
            market.market_id,
            args.side == "buy",
            market.size_to_lots(args.size),
            duration_ms,
            args.randomize,
            args.reduce_only,
            slippage_ppm,
        )
        answer = sign_and_submit(args, client, [action])
    return print_committed(answer, args, market)


def cmd_twap_cancel(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        market = Catalogue.fetch(client).market(args.market)
        answer = sign_and_submit(args, client, [CancelTwap(market.market_id, args.twap_id)])
    return print_committed(answer, args, market)


def cmd_twap_list(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        address = address_argument(args, args.address)
        body = api_get(client, f"/v1/accounts/{address}/orders")
    if args.json:
        print_json({"address": body["address"], "height": body["height"], "twaps": body["twaps"]})
        return EXIT_OK
    print_tables(twap_table(body))
    return EXIT_OK


def twap_table(body: dict[str, Any]) -> Any:
    rows = [
        [
            t["twap_id"],
            t["market"],
            t["side"],
            t["size"],
            t["filled"],
            f"{t['slices_done']}/{t['slices_total']}",
            format_time_ms(t["next_slice_ms"]),
            f"{t['max_slippage_ppm'] / 10_000:g}%",
            "yes" if t["randomize"] else "",
            "yes" if t["reduce_only"] else "",
        ]
        for t in body.get("twaps", [])
    ]
    columns = ["twap id", "market", "side", "size", "filled", "slices", f"next slice {TIME_COLUMN}"]
    return table(
        f"running TWAPs of {str(body['address'])[:16]}... at height {body['height']}",
        [*columns, "max slippage", "randomized", "reduce only"],
        rows,
    )


# ---- TP/SL ---------------------------------------------------------------------------------


def cmd_tpsl_set(args: argparse.Namespace) -> int:
    if args.tp is None and args.sl is None:
        raise CliError("give --tp and/or --sl")
    with open_client(args) as client:
        market = Catalogue.fetch(client).market(args.market)
        action = SetPositionTpsl(
            market.market_id,
            optional_price(market, args.tp, "take-profit price"),
            optional_price(market, args.sl, "stop-loss price"),
        )
        answer = sign_and_submit(args, client, [action])
    return print_committed(answer, args, market)


def cmd_tpsl_cancel(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        market = Catalogue.fetch(client).market(args.market)
        answer = sign_and_submit(args, client, [CancelTpsl(market.market_id, args.group_id)])
    return print_committed(answer, args, market)


def tpsl_table(body: dict[str, Any]) -> Any:
    rows = [
        [
            g["group_id"],
            g["market"],
            g["position_side"],
            g["status"],
            g["take_profit_price"] or "",
            g["stop_loss_price"] or "",
            " ".join(str(i) for i in (g["take_profit_order_id"], g["stop_loss_order_id"]) if i),
            g["parent_order_id"] or "",
        ]
        for g in body.get("tpsl_groups", [])
    ]
    return table(
        "TP/SL groups",
        ["group id", "market", "position", "status", "take profit", "stop loss", "orders",
         "parent order"],
        rows,
    )  # fmt: skip
