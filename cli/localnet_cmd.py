"""``perpbft localnet up|down|status|logs|oracle``: a whole network on this machine.

``up`` writes (or reuses) a testnet under the localnet home, starts the validators in the
background, waits until they commit, starts an oracle feeder per validator and the demo market
maker and taker, and prints the endpoints, the funded demo keys and example commands. The
processes outlive the command; ``down`` stops them. See :mod:`localnet.net`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from cli.errors import EXIT_OK, EXIT_REJECTED, CliError
from cli.trade_common import console as make_console
from cli.trade_common import print_json, print_tables, table
from localnet.evm import BridgeInfo
from localnet.net import DEFAULT_BASE_PORT, Localnet, LocalnetError, UpOptions, default_home
from localnet.oracle import read_shift_ppm, source_factory, write_shift_ppm


def register(sub: Any) -> None:
    localnet = sub.add_parser("localnet", help="run a network of N validators on this machine")
    lsub = localnet.add_subparsers(dest="localnet_command", metavar="SUBCOMMAND")
    lsub.required = True

    up = lsub.add_parser("up", help="write or reuse a testnet and start everything")
    _home(up)
    up.add_argument("--validators", type=int, default=4)
    up.add_argument("--block-ms", type=int, default=500)
    up.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT)
    up.add_argument("--demo-accounts", type=int, default=4)
    up.add_argument(
        "--join",
        type=int,
        default=0,
        metavar="N",
        help="N more validators that join by staking after the start (active 20-40 blocks on)",
    )
    up.add_argument("--fresh", action="store_true", help="discard an existing localnet first")
    up.add_argument("--no-oracle", action="store_true", help="no oracle feeders")
    up.add_argument("--no-traffic", action="store_true", help="no demo market maker and taker")
    up.add_argument(
        "--no-bridge", action="store_true", help="no EVM chain (anvil) and bridge contract"
    )
    up.add_argument("--oracle-source", help="price source of the feeders, module:factory")
    up.add_argument("--json", action="store_true", help="print the summary as JSON")
    up.set_defaults(func=cmd_up)

    down = lsub.add_parser("down", help="stop every process of the localnet")
    _home(down)
    down.set_defaults(func=cmd_down)

    status = lsub.add_parser("status", help="height, view, peers and mempool of each node")
    _home(status)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    logs = lsub.add_parser("logs", help="the last lines of the processes' logs")
    _home(logs)
    logs.add_argument("name", nargs="?", help="node0.., oracle0.., maker, taker (default all)")
    logs.add_argument("-n", "--lines", type=int, default=20)
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.set_defaults(func=cmd_logs)

    oracle = lsub.add_parser("oracle", help="shift the feeders' prices (e.g. --crash 30%%)")
    _home(oracle)
    group = oracle.add_mutually_exclusive_group(required=True)
    group.add_argument("--crash", metavar="PCT", help="move every price down by PCT percent")
    group.add_argument("--pump", metavar="PCT", help="move every price up by PCT percent")
    group.add_argument("--reset", action="store_true", help="back to the price source")
    group.add_argument("--show", action="store_true", help="print the current shift")
    oracle.set_defaults(func=cmd_oracle)


def _home(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--home", type=Path, default=None, help="localnet home (default: ~/.perpbft-localnet)"
    )


def _net(args: argparse.Namespace) -> Localnet:
    return Localnet(args.home or default_home())


# ---- up ------------------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    if not 1 <= args.validators <= 16:
        raise CliError("--validators must be 1..16 on one machine")
    if not 50 <= args.block_ms <= 60_000:
        raise CliError("--block-ms must be 50..60000")
    if args.oracle_source is not None:
        # Checked here: the feeders run in the background, where a bad source would only
        # show as feeders that died.
        try:
            source_factory(args.oracle_source)
        except ValueError as exc:
            raise CliError(str(exc)) from None
    net = _net(args)
    opts = UpOptions(
        validators=args.validators,
        block_ms=args.block_ms,
        base_port=args.base_port,
        demo_accounts=args.demo_accounts,
        fresh=args.fresh,
        oracle=not args.no_oracle,
        traffic=not args.no_traffic,
        bridge=not args.no_bridge,
        oracle_source=args.oracle_source,
        join=args.join,
    )
    console = make_console(stderr=True)
    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as bar:
            task = bar.add_task("starting", total=1.0)

            def progress(what: str, fraction: float) -> None:
                bar.update(task, description=what, completed=fraction)

            net.up(opts, progress)
    except LocalnetError as exc:
        raise CliError(str(exc)) from None
    summary = up_summary(net)
    if args.json:
        print_json(summary)
    else:
        print_summary(summary)
    return EXIT_OK


def up_summary(net: Localnet) -> dict[str, Any]:
    layout = net.layout()
    keys = net.demo_keys()
    return {
        "home": str(net.home),
        "chain_id": layout["chain_id"],
        "genesis": str(net.genesis_path()),
        "nodes": layout["nodes"],
        "demo_keys": keys,
        "demo_address": net.demo_address(0) if keys else None,
        "web_page": web_page_url(layout["nodes"][0]["api"]),
        "processes": net.running(),
        "bridge": net.bridge_summary(),
        "bridge_contracts": dataclasses.asdict(net.bridge)
        if isinstance(net.bridge, BridgeInfo) else None,
    }


def web_page_url(api: str) -> str:
    """The trading page and explorer every node serves (node/api/webapp.py)."""
    return api.rstrip("/") + "/app/"


def print_summary(s: dict[str, Any]) -> None:
    console = make_console()
    nodes = table(
        f"localnet {s['chain_id']} is up ({s['home']})",
        ["node", "API", "p2p", "metrics"],
        [[f"node{i}", n["api"], n["p2p"], n["metrics"]] for i, n in enumerate(s["nodes"])],
    )
    console.print(nodes)
    console.print("funded demo keys (1,000,000 USDC, 10 BTC, 100 ETH each):")
    for path in s["demo_keys"]:
        console.print(f"  {path}", soft_wrap=True)
    api = s["nodes"][0]["api"]
    key = s["demo_keys"][0] if s["demo_keys"] else "KEY"
    home = s["home"]
    console.print(f"bridge: {s['bridge']}", soft_wrap=True, highlight=False)
    console.print(f"\nweb page: {s['web_page']}", soft_wrap=True)
    console.print(
        f"  (import {key} under Key to trade; load {s['genesis']} under Explorer to check proofs)",
        soft_wrap=True,
    )
    console.print("\ntry:")
    exe = perpbft_command()
    for line in (
        f"export PERPBFT_NODE={api} PERPBFT_KEY={key}",
        "perpbft book BTC-PERP",
        "perpbft order place BTC-PERP buy 0.01 --price 59000",
        "perpbft order list",
        "perpbft account",
        "perpbft watch trades BTC-PERP --count 5",
        f"perpbft proof account {s['demo_address']} --genesis {s['genesis']}",
        f"perpbft localnet oracle --crash 30% --home {home}",
        f"perpbft localnet status --home {home}",
        f"perpbft localnet down --home {home}",
    ):
        if line.startswith("perpbft "):
            line = exe + line[len("perpbft") :]
        console.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)


def perpbft_command() -> str:
    """How the user can type the command: ``perpbft`` if it is on the PATH, else the path of
    the one running (e.g. ``.venv/bin/perpbft`` right after ``make localnet``)."""
    argv0 = sys.argv[0]
    found = shutil.which("perpbft")
    if found or not argv0.endswith("perpbft"):
        return "perpbft"
    return os.path.relpath(argv0) if not argv0.startswith("/") else argv0


# ---- down, status, logs, oracle ------------------------------------------------------------


def cmd_down(args: argparse.Namespace) -> int:
    net = _net(args)
    stopped = net.down()
    print(f"stopped {len(stopped)} processes" + (f": {' '.join(stopped)}" if stopped else ""))
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    net = _net(args)
    try:
        rows = net.status()
    except LocalnetError as exc:
        raise CliError(str(exc)) from None
    helpers = net.helpers_status()
    if args.json:
        print_json({"nodes": rows, "helpers": helpers})
        return status_exit_code(rows)
    print_tables(
        table(
            f"localnet {net.home}",
            ["node", "pid", "height", "view", "peers", "mempool", "ready", "API"],
            [
                [
                    r["name"],
                    r["pid"] or "down",
                    r["height"],
                    r["view"],
                    r["peers"],
                    r["mempool_txs"],
                    "yes" if r["ready"] else "no",
                    r["api"],
                ]
                for r in rows
            ],
        ),
        table(
            "helpers", ["process", "pid"], [[n, p or "down"] for n, p in sorted(helpers.items())]
        ),
    )
    return status_exit_code(rows)


def status_exit_code(rows: list[dict[str, Any]]) -> int:
    """0 when every validator runs and says it is ready, else 1 (scripts and health checks
    test the exit code; a localnet that does not exist is a usage error, 2)."""
    healthy = all(r["pid"] and r["ready"] for r in rows)
    return EXIT_OK if healthy and rows else EXIT_REJECTED


def cmd_logs(args: argparse.Namespace) -> int:
    net = _net(args)
    procs = net.procs
    names = [args.name] if args.name else sorted(p.stem for p in procs.log_dir.glob("*.log"))
    if args.name and not procs.log_path(args.name).exists():
        raise CliError(f"no log named {args.name} in {procs.log_dir}")
    for name in names:
        for line in procs.tail(name, args.lines):
            print(f"{name}: {line}" if len(names) > 1 else line)
    if args.follow:
        follow(procs.log_path(n) for n in names)
    return EXIT_OK


def follow(paths: Any) -> None:
    files = {p.stem: open(p, errors="replace") for p in paths}  # noqa: SIM115 - closed below
    try:
        for f in files.values():
            f.seek(0, 2)
        while True:
            quiet = True
            for name, f in files.items():
                for line in f.readlines():
                    quiet = False
                    print(f"{name}: {line.rstrip()}" if len(files) > 1 else line.rstrip())
            if quiet:
                time.sleep(0.25)
    finally:
        for f in files.values():
            f.close()


def parse_percent(text: str) -> int:
    """'30%' or '30' or '2.5' -> parts per million (300,000)."""
    body = text.strip().rstrip("%")
    try:
        value = float(body)
    except ValueError:
        raise CliError(f"{text!r} is not a percentage like 30%") from None
    if not 0 <= value <= 1000:
        raise CliError("percentage must be between 0 and 1000")
    return round(value * 10_000)


def cmd_oracle(args: argparse.Namespace) -> int:
    net = _net(args)
    if not net.exists():
        raise CliError(f"no localnet in {net.home}")
    if args.show:
        print(json.dumps({"shift_ppm": read_shift_ppm(net.home)}))
        return EXIT_OK
    if args.reset:
        shift = 0
    elif args.crash is not None:
        shift = -parse_percent(args.crash)
        if shift <= -1_000_000:
            raise CliError("a crash must be less than 100%")
    else:
        shift = parse_percent(args.pump)
    write_shift_ppm(net.home, shift)
    print(f"oracle feeders now shift every price by {shift / 10_000:+g}% (from their next update)")
    if net.procs.alive("leverage"):
        exe = perpbft_command()
        api = net.api_urls()[0]
        print(f"liquidations: {exe} localnet logs leverage --home {net.home}")
        print(f"the vault:    {exe} vault --node {api}")
    return EXIT_OK
