"""``perpbft init``: create a node's home directory.

``perpbft start`` (running the node) is added here by the node driver.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from cli.errors import EXIT_OK, CliError
from node.config import HOME_ENV, Config, HomeError, init_home, load_config, resolve_home


def add_home_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--home",
        default=None,
        help=f"node home directory (default: ${HOME_ENV}, else ~/.perpbft)",
    )


def load_home_config(home_arg: str | None) -> Config:
    """Resolve the home (``--home``, ``$PERPBFT_HOME``, ``~/.perpbft``) and load its config;
    any problem is a one-line CliError (exit code 2) naming the file and the key."""
    try:
        return load_config(resolve_home(home_arg))
    except HomeError as exc:
        raise CliError(str(exc)) from None


def register(sub: Any) -> None:
    init = sub.add_parser(
        "init",
        help="create a node home: config/config.toml, config/node_key.json (0600), data/",
    )
    add_home_argument(init)
    init.add_argument("--moniker", help="human-readable node name (default: the host name)")
    init.add_argument(
        "--force",
        action="store_true",
        help="rewrite config/config.toml of an initialised home (an existing node key is kept)",
    )
    init.add_argument("--json", action="store_true", help="print JSON instead of text")
    init.set_defaults(func=cmd_init)


def cmd_init(args: argparse.Namespace) -> int:
    home = resolve_home(args.home)
    try:
        result = init_home(home, moniker=args.moniker, force=args.force)
    except HomeError as exc:
        raise CliError(str(exc)) from None
    summary = {
        "home": str(result.home),
        "node_id": result.node_id.hex(),
        "config": str(result.config_path),
        "node_key": str(result.node_key_path),
        "node_key_created": result.key_created,
        "data": str(result.data_path),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        key_note = "" if result.key_created else " (existing key kept)"
        print(f"initialised {result.home}")
        print(f"node id   {summary['node_id']}{key_note}")
        print(f"config    {result.config_path}")
        print(f"node key  {result.node_key_path}")
        print(f"data      {result.data_path}")
    return EXIT_OK
