"""``perpbft config show``: the effective config of a home and where each value came from.

The same resolution as ``perpbft start`` (node/overrides.py): a flag beats the environment
(``PERPBFT_SECTION__KEY``), which beats the config file, which beats the default; so an
operator sees exactly what a node started from this shell with these flags would run with.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from cli.errors import EXIT_OK, CliError
from cli.node_cmd import CONFIG_DEST, add_config_flags, add_home_argument
from node.config import HomeError, resolve_home
from node.overrides import effective_values, env_name, resolve


def register(sub: Any) -> None:
    config = sub.add_parser("config", help="show a home's effective config")
    config_sub = config.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    config_sub.required = True
    show = config_sub.add_parser(
        "show",
        help="every config key: its effective value and where it came from",
        description="Print every config key with its effective value and its origin: flag, "
        "env (PERPBFT_SECTION__KEY), file or default. Takes the same --SECTION.KEY flags "
        "as perpbft start.",
    )
    add_home_argument(show)
    show.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_config_flags(show)
    show.set_defaults(func=cmd_show)


def cmd_show(args: argparse.Namespace) -> int:
    flags = {
        name.removeprefix(CONFIG_DEST): value
        for name, value in vars(args).items()
        if name.startswith(CONFIG_DEST)
    }
    home = resolve_home(args.home)
    try:
        config, origins = resolve(home, flags, os.environ)
    except HomeError as exc:
        raise CliError(str(exc)) from None
    values = effective_values(config)
    if args.json:
        body = {
            "home": str(home),
            "keys": {k: {"value": v, "origin": origins[k]} for k, v in values.items()},
        }
        print(json.dumps(body))
        return EXIT_OK
    print(f"# effective config of {home} (origin: flag > env > file > default)")
    width = max(len(k) for k in values)
    for dotted, value in values.items():
        origin = origins[dotted]
        note = f"  [{origin}" + (f" {env_name(dotted)}]" if origin == "env" else "]")
        print(f"{dotted:<{width}} = {json.dumps(value)}{note}")
    return EXIT_OK
