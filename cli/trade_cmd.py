"""The trader's commands: orders, account, market data, transfers, leverage, transactions.

``perpbft order place|cancel|amend|list``, ``perpbft account``, ``perpbft book``, ``perpbft
trades``, ``perpbft funding``, ``perpbft transfer``, ``perpbft withdraw-request``, ``perpbft
leverage`` and ``perpbft tx``. Each talks only to the public HTTP API (``--node``), signs with
``--key`` and a per-key-file monotonic nonce, prints tables (or one JSON object with
``--json``) and exits 0 when everything was accepted, 1 when the chain or the node refused
something (the code and reason are printed), 2 on a usage or connection error.
"""

from __future__ import annotations

import argparse
from typing import Any

from cli.algo_cmd import (
    add_order_tool_arguments,
    optional_price,
    parse_good_til_ms,
    tpsl_table,
    twap_table,
)
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
from node.keys import parse_address
from state_machine.tx import (
    KIND_LIMIT,
    KIND_MARKET,
    KIND_STOP_LIMIT,
    KIND_STOP_MARKET,
    KIND_TAKE_PROFIT_LIMIT,
    KIND_TAKE_PROFIT_MARKET,
    TIF_ALO,
    TIF_FOK,
    TIF_GTC,
    TIF_IOC,
    Action,
    AmendOrder,
    CancelAll,
    CancelByClientId,
    CancelOrder,
    PlaceOrder,
    PlaceOrderExtended,
    SetLeverage,
    Transfer,
    WithdrawRequest,
)

TIF_BY_NAME = {"gtc": TIF_GTC, "ioc": TIF_IOC, "fok": TIF_FOK, "alo": TIF_ALO}
U64_MAX = 2**64 - 1


def register(sub: Any) -> None:
    _register_order(sub)
    orders = sub.add_parser(
        "orders", help="open orders, running TWAPs and TP/SL groups (as 'order list')"
    )
    orders.add_argument("address", nargs="?", help="account address (default: --key's)")
    orders.add_argument("--market", help="only this market")
    add_common_arguments(orders, key=True)
    orders.set_defaults(func=cmd_order_list)
    account = sub.add_parser(
        "account", help="balances, positions (liquidation prices), margin, open-order counts"
    )
    account.add_argument("address", nargs="?", help="account address (default: --key's)")
    add_common_arguments(account, key=True)
    account.set_defaults(func=cmd_account)

    book = sub.add_parser("book", help="order book levels of a market")
    book.add_argument("market")
    book.add_argument("--depth", type=int, default=10)
    add_common_arguments(book, key=True)
    book.set_defaults(func=cmd_book)

    trades = sub.add_parser("trades", help="recent trades of a market")
    trades.add_argument("market")
    trades.add_argument("--limit", type=int, default=20)
    add_common_arguments(trades, key=True)
    trades.set_defaults(func=cmd_trades)

    funding = sub.add_parser("funding", help="funding rate and payments of a perpetual")
    funding.add_argument("market")
    funding.add_argument("--limit", type=int, default=20)
    add_common_arguments(funding, key=True)
    funding.set_defaults(func=cmd_funding)

    vault = sub.add_parser("vault", help="the liquidation vault: equity, positions, recent steps")
    vault.add_argument("--limit", type=int, default=10, help="recent ledger items (0: none)")
    add_common_arguments(vault, key=True)
    vault.set_defaults(func=cmd_vault)

    transfer = sub.add_parser("transfer", help="send an asset to another account")
    transfer.add_argument("to", help="recipient address")
    transfer.add_argument("asset", help="asset symbol, e.g. USDC")
    transfer.add_argument("amount", help="decimal amount, e.g. 100.5")
    add_common_arguments(transfer, key=True)
    transfer.set_defaults(func=cmd_transfer)

    withdraw = sub.add_parser(
        "withdraw-request",
        help="record a withdrawal request that nothing executes (bridge: perpbft withdraw)",
    )
    withdraw.add_argument("asset")
    withdraw.add_argument("amount")
    withdraw.add_argument("--destination", default="", help="where to (up to 64 bytes of text)")
    add_common_arguments(withdraw, key=True)
    withdraw.set_defaults(func=cmd_withdraw)

    leverage = sub.add_parser("leverage", help="set a perpetual's leverage and margin mode")
    leverage.add_argument("market")
    leverage.add_argument("leverage", type=int)
    leverage.add_argument("--isolated", action="store_true", help="isolated margin (else cross)")
    add_common_arguments(leverage, key=True)
    leverage.set_defaults(func=cmd_leverage)

    tx = sub.add_parser("tx", help="a transaction's status and per-action results")
    tx.add_argument("tx_id")
    add_common_arguments(tx, key=True)
    tx.set_defaults(func=cmd_tx)


def _register_order(sub: Any) -> None:
    order = sub.add_parser("order", help="place, cancel, amend and list orders")
    order_sub = order.add_subparsers(dest="order_command", metavar="SUBCOMMAND")
    order_sub.required = True

    place = order_sub.add_parser("place", help="place an order (limit with --price, else market)")
    place.add_argument("market")
    place.add_argument("side", choices=("buy", "sell"))
    place.add_argument("size", help="decimal size in the base asset, e.g. 0.01")
    place.add_argument("--price", help="limit price (omit for a market order)")
    place.add_argument("--tif", choices=tuple(TIF_BY_NAME), default=None)
    place.add_argument("--reduce-only", action="store_true")
    trigger = place.add_mutually_exclusive_group()
    trigger.add_argument(
        "--stop",
        metavar="PX",
        help="stop trigger price: the order waits (status waiting in 'order list') until the "
        "mark reaches PX, then is placed (a limit order with --price, else a market order)",
    )
    trigger.add_argument(
        "--take-profit", metavar="PX", help="take-profit trigger price (waits like --stop)"
    )
    place.add_argument("--client-id", type=int, default=0)
    add_order_tool_arguments(place)
    add_common_arguments(place, key=True)
    place.set_defaults(func=cmd_order_place)

    cancel = order_sub.add_parser(
        "cancel",
        help="cancel by order id, client id, or all (waiting stop/take-profit orders included)",
    )
    cancel.add_argument("market", help="market symbol (with --all: 'all' for every market)")
    cancel.add_argument("order_id", nargs="?", type=int)
    cancel.add_argument("--client-id", type=int)
    cancel.add_argument("--all", action="store_true", help="cancel all open orders")
    add_common_arguments(cancel, key=True)
    cancel.set_defaults(func=cmd_order_cancel)

    amend = order_sub.add_parser("amend", help="change a resting order's price and/or size")
    amend.add_argument("market")
    amend.add_argument("order_id", type=int)
    amend.add_argument("--price")
    amend.add_argument("--size", help="new remaining size")
    add_common_arguments(amend, key=True)
    amend.set_defaults(func=cmd_order_amend)

    listing = order_sub.add_parser(
        "list",
        help="open orders of an account: resting orders, waiting stop/take-profit orders, "
        "running TWAPs and TP/SL groups",
        description=(
            "Open orders of an account: resting orders (status resting) and stop/take-profit "
            "orders waiting for their trigger price (status waiting; the trigger column says "
            "when they fire, e.g. 'mark <= 57000'; price is their limit price, 'market' for "
            "the market kinds), then running TWAPs and TP/SL groups if any. With --json: the "
            "body of GET /v1/accounts/{address}/orders."
        ),
    )
    listing.add_argument("address", nargs="?", help="account address (default: --key's)")
    listing.add_argument("--market", help="only this market")
    add_common_arguments(listing, key=True)
    listing.set_defaults(func=cmd_order_list)


# ---- orders --------------------------------------------------------------------------------


def order_kind(args: argparse.Namespace) -> int:
    limit = args.price is not None
    if args.stop is not None:
        return KIND_STOP_LIMIT if limit else KIND_STOP_MARKET
    if args.take_profit is not None:
        return KIND_TAKE_PROFIT_LIMIT if limit else KIND_TAKE_PROFIT_MARKET
    return KIND_LIMIT if limit else KIND_MARKET


def check_client_id(value: int | None) -> int:
    if value is None:
        return 0
    if not 0 <= value <= U64_MAX:
        raise CliError("--client-id must be between 0 and 2**64-1")
    return value


def build_place(args: argparse.Namespace, market: MarketInfo) -> PlaceOrder:
    kind = order_kind(args)
    tif_name = args.tif or ("gtc" if args.price is not None else "ioc")
    if kind == KIND_MARKET and tif_name in ("gtc", "alo"):
        raise CliError(f"a market order cannot be --tif {tif_name}; give --price for a limit")
    trigger_text = args.stop if args.stop is not None else args.take_profit
    return PlaceOrder(
        market_id=market.market_id,
        is_buy=args.side == "buy",
        kind=kind,
        tif=TIF_BY_NAME[tif_name],
        price_ticks=market.price_to_ticks(args.price) if args.price is not None else 0,
        size_lots=market.size_to_lots(args.size),
        trigger_price_ticks=(
            market.price_to_ticks(trigger_text, "trigger price") if trigger_text else 0
        ),
        reduce_only=args.reduce_only,
        client_id=check_client_id(args.client_id),
    )


def build_place_action(args: argparse.Namespace, market: MarketInfo) -> Action:
    """A PlaceOrder, or a PlaceOrderExtended when --tp, --sl or --gtt is given."""
    order = build_place(args, market)
    if args.tp is None and args.sl is None and args.gtt is None:
        return order
    return PlaceOrderExtended(
        order,
        parse_good_til_ms(args.gtt) if args.gtt is not None else 0,
        optional_price(market, args.tp, "take-profit price"),
        optional_price(market, args.sl, "stop-loss price"),
    )


def cmd_order_place(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        market = Catalogue.fetch(client).market(args.market)
        action = build_place_action(args, market)
        answer = sign_and_submit(args, client, [action])
    return print_committed(answer, args, market)


def cmd_order_cancel(args: argparse.Namespace) -> int:
    chosen = sum([args.order_id is not None, args.client_id is not None, args.all])
    if chosen != 1:
        raise CliError("give exactly one of ORDER_ID, --client-id ID or --all")
    with open_client(args) as client:
        action: Action
        market: MarketInfo | None = None
        if args.all and args.market.lower() == "all":
            action = CancelAll(None)
        else:
            market = Catalogue.fetch(client).market(args.market)
            if args.all:
                action = CancelAll(market.market_id)
            elif args.client_id is not None:
                action = CancelByClientId(market.market_id, check_client_id(args.client_id))
            else:
                action = CancelOrder(market.market_id, args.order_id)
        answer = sign_and_submit(args, client, [action])
    return print_committed(answer, args, market)


def cmd_order_amend(args: argparse.Namespace) -> int:
    if args.price is None and args.size is None:
        raise CliError("give --price and/or --size")
    with open_client(args) as client:
        market = Catalogue.fetch(client).market(args.market)
        price_ticks, size_lots = _amend_target(args, client, market)
        answer = sign_and_submit(
            args, client, [AmendOrder(market.market_id, args.order_id, price_ticks, size_lots)]
        )
    return print_committed(answer, args, market)


def _amend_target(args: argparse.Namespace, client: Any, market: MarketInfo) -> tuple[int, int]:
    """The amended (price, size): what was given, the rest from the order as it rests now."""
    price = market.price_to_ticks(args.price) if args.price is not None else None
    size = market.size_to_lots(args.size, "size") if args.size is not None else None
    if price is not None and size is not None:
        return price, size
    address = address_argument(args, None)
    orders = api_get(client, f"/v1/accounts/{address}/orders")["orders"]
    current = next((o for o in orders if int(o["order_id"]) == args.order_id), None)
    if current is None or current["market"] != market.symbol:
        raise CliError(f"no open order {args.order_id} in {market.symbol}", 1)
    if current.get("status") == "waiting":
        raise CliError(
            f"order {args.order_id} is a waiting {current.get('trigger_kind')} order; amend "
            "changes resting orders only (cancel it and place it again)",
            1,
        )
    if price is None:
        price = market.price_to_ticks(current["price"])
    if size is None:
        size = market.size_to_lots(current["size"])
    return price, size


def cmd_order_list(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        address = address_argument(args, args.address)
        body = api_get(client, f"/v1/accounts/{address}/orders")
    orders = body["orders"]
    if args.market:
        body = {
            key: [o for o in value if o["market"].upper() == args.market.upper()]
            if key in ("orders", "twaps", "tpsl_groups") else value
            for key, value in body.items()
        }  # fmt: skip
        orders = body["orders"]
    if args.json:
        print_json(body)
        return EXIT_OK
    rows = [
        [
            o["order_id"],
            o["market"],
            o["side"],
            KIND_LABELS.get(int(o["kind"]), str(o["kind"])),
            o.get("status", ""),
            o["price"] if o["price"] is not None else "market",
            trigger_label(o),
            o["size"],
            o["filled"],
            "yes" if o.get("reduce_only") else "",
            o.get("client_id") or "",
            format_time_ms(o.get("good_til_ms")),
        ]
        for o in orders
    ]
    columns = ["order id", "market", "side", "kind", "status", "price", "trigger", "size"]
    tables = [
        table(
            f"open orders of {address[:16]}... at height {body['height']}",
            [*columns, "filled", "reduce only", "client id", f"good til {TIME_COLUMN}"],
            rows,
        )
    ]
    if body.get("twaps"):
        tables.append(twap_table(body))
    if body.get("tpsl_groups"):
        tables.append(tpsl_table(body))
    print_tables(*tables)
    return EXIT_OK


KIND_LABELS = {
    KIND_LIMIT: "limit",
    KIND_MARKET: "market",
    KIND_STOP_MARKET: "stop market",
    KIND_STOP_LIMIT: "stop limit",
    KIND_TAKE_PROFIT_MARKET: "take-profit market",
    KIND_TAKE_PROFIT_LIMIT: "take-profit limit",
}


def trigger_label(order: dict[str, Any]) -> str:
    """When a waiting trigger fires, e.g. ``mark <= 57000``; empty for a resting order."""
    price = order.get("trigger_price")
    if price is None:
        return ""
    above = order.get("trigger_condition") == "mark_at_or_above"
    return f"mark {'>=' if above else '<='} {price}"


# ---- account and market data ---------------------------------------------------------------


def cmd_account(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        address = address_argument(args, args.address)
        body = api_get(client, f"/v1/accounts/{address}")
    if args.json:
        print_json(body)
        return EXIT_OK
    # The 64-hex address on a line of its own: in a table title it wraps over three lines.
    print(f"account {body['address']}")
    balances = table(
        f"balances at height {body['height']}",
        ["asset", "available", "held"],
        [[b["asset"], b["available"], b["held"]] for b in body["balances"]],
    )
    positions = table(
        "positions",
        [
            "market",
            "side",
            "size",
            "entry",
            "mark",
            "unrealized pnl",
            "leverage",
            "mode",
            "liquidation price",
        ],
        [
            [
                p["market"],
                p["side"],
                p["size"],
                p["entry_price"],
                p["mark_price"],
                p["unrealized_pnl"],
                p["leverage"],
                p["margin_mode"],
                p.get("liquidation_price") or "-",
            ]
            for p in body["positions"]
        ],
    )
    margin = body.get("margin") or {}
    summary = table(
        "margin",
        [
            "account value",
            "maintenance margin",
            "free collateral",
            "open orders",
            "of which waiting triggers",
        ],
        [
            [
                margin.get("account_value"),
                margin.get("maintenance_margin"),
                margin.get("free_collateral"),
                body.get("open_orders"),
                body.get("waiting_triggers", 0),
            ]
        ],
    )
    print_tables(balances, positions, summary)
    return EXIT_OK


def cmd_book(args: argparse.Namespace) -> int:
    if not 1 <= args.depth <= 500:
        raise CliError("--depth must be 1..500")
    with open_client(args) as client:
        market = Catalogue.fetch(client).market(args.market)
        body = api_get(client, f"/v1/markets/{market.symbol}/book", depth=args.depth)
    if args.json:
        print_json(body)
        return EXIT_OK
    asks = list(reversed(body["asks"]))
    rows = [["", "", price, size, orders] for price, size, orders in asks]
    rows += [[orders, size, price, "", ""] for price, size, orders in body["bids"]]
    print_tables(
        table(
            f"{body['market']} at height {body['height']}",
            ["bid orders", "bid size", "price", "ask size", "ask orders"],
            rows,
        )
    )
    return EXIT_OK


def cmd_trades(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 1000:
        raise CliError("--limit must be 1..1000")
    with open_client(args) as client:
        market = Catalogue.fetch(client).market(args.market)
        body = api_get(client, f"/v1/markets/{market.symbol}/trades", limit=args.limit)
    if args.json:
        print_json(body)
        return EXIT_OK
    rows = [
        [t["height"], format_time_ms(t["timestamp_ms"]), t["taker_side"], t["price"], t["size"]]
        for t in body["trades"]
    ]
    columns = ["height", TIME_COLUMN, "taker", "price", "size"]
    print_tables(table(f"{body['market']} trades", columns, rows))
    return EXIT_OK


def cmd_funding(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 1000:
        raise CliError("--limit must be 1..1000")
    with open_client(args) as client:
        market = Catalogue.fetch(client).market(args.market)
        if market.kind != "perp":
            raise CliError(f"{market.symbol} is not a perpetual; it has no funding")
        info = api_get(client, f"/v1/markets/{market.symbol}")
        body = api_get(client, f"/v1/markets/{market.symbol}/funding", limit=args.limit)
    out = {
        "market": market.symbol,
        "funding_rate_8h_ppm": info.get("funding_rate_8h_ppm"),
        "mark_price": info.get("mark_price"),
        "oracle_price": info.get("oracle_price"),
        "funding": body.get("funding", []),
    }
    if args.json:
        print_json(out)
        return EXIT_OK
    rate = out["funding_rate_8h_ppm"]
    head = table(
        f"{market.symbol} funding",
        ["rate per 8h (ppm)", "mark", "oracle"],
        [["-" if rate is None else rate, out["mark_price"], out["oracle_price"]]],
    )
    events = table(
        "funding payments",
        ["height", TIME_COLUMN, "details"],
        [
            [
                e.get("height"),
                format_time_ms(e.get("timestamp_ms")),
                ", ".join(
                    f"{k}={v}"
                    for k, v in e.items()
                    if k not in ("kind", "height", "timestamp_ms", "cursor")
                ),
            ]
            for e in out["funding"]
        ],
    )
    print_tables(head, events)
    return EXIT_OK


def cmd_vault(args: argparse.Namespace) -> int:
    if not 0 <= args.limit <= 1000:
        raise CliError("--limit must be 0..1000")
    with open_client(args) as client:
        body = api_get(client, "/v1/vault")
        ledger: list[dict[str, Any]] = []
        if args.limit:
            path = f"/v1/accounts/{body['address']}/ledger"
            ledger = api_get(client, path, limit=args.limit).get("ledger", [])
    if args.json:
        print_json({**body, "ledger": ledger})
        return EXIT_OK
    head = table(
        f"liquidation vault at height {body['height']}",
        ["insurance fund", "equity", "maintenance", "under water", "high water", "de-risk below"],
        [
            [
                body["insurance_fund"],
                body["equity"],
                body["maintenance_margin"],
                "YES" if body["under_water"] else "no",
                body["high_water"],
                body["loss_limit_equity"],
            ]
        ],
    )
    positions = table(
        f"positions (exposure cap {body['exposure_cap_per_market']} USDC per market)",
        ["market", "side", "size", "entry", "mark", "notional", "unrealized pnl"],
        [
            [
                p["market"],
                p["side"],
                p["size"],
                p["entry_price"],
                p["mark_price"],
                p["notional"],
                p["unrealized_pnl"],
            ]
            for p in body["positions"]
        ],
    )
    steps = table(
        "recent ledger",
        ["height", "kind", "details"],
        [
            [
                e.get("height"),
                e.get("kind"),
                ", ".join(
                    f"{k}={v}"
                    for k, v in e.items()
                    if k not in ("kind", "height", "timestamp_ms", "cursor", "market_id")
                ),
            ]
            for e in ledger
        ],
    )
    print_tables(head, positions, steps)
    return EXIT_OK


# ---- transfers, withdrawals, leverage ------------------------------------------------------


def cmd_transfer(args: argparse.Namespace) -> int:
    try:
        to = parse_address(args.to)
    except ValueError as exc:
        raise CliError(f"recipient: {exc}") from None
    with open_client(args) as client:
        asset_id, atoms = Catalogue.fetch(client).asset_atoms(args.asset, args.amount)
        answer = sign_and_submit(args, client, [Transfer(to, asset_id, atoms)])
    return print_committed(answer, args)


def cmd_withdraw(args: argparse.Namespace) -> int:
    destination = args.destination.encode("utf-8")
    if len(destination) > 64:
        raise CliError("--destination is limited to 64 bytes")
    with open_client(args) as client:
        asset_id, atoms = Catalogue.fetch(client).asset_atoms(args.asset, args.amount)
        answer = sign_and_submit(args, client, [WithdrawRequest(asset_id, atoms, destination)])
    return print_committed(answer, args)


def cmd_leverage(args: argparse.Namespace) -> int:
    if not 1 <= args.leverage <= 2**32 - 1:
        raise CliError("leverage must be a positive whole number")
    with open_client(args) as client:
        market = Catalogue.fetch(client).market(args.market)
        action = SetLeverage(market.market_id, args.leverage, args.isolated)
        answer = sign_and_submit(args, client, [action])
    return print_committed(answer, args, market)


def cmd_tx(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        body = api_get(client, f"/v1/txs/{args.tx_id}")
    if body.get("status") != "committed":
        if args.json:
            print_json(body)
        else:
            print(f"tx {body.get('tx_id')} is {body.get('status')}")
        return EXIT_OK
    return print_committed(body, args)
