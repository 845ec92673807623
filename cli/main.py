"""The ``perpbft`` command: one argparse tree, one module per command group.

Each command module exposes ``register(subparsers)`` that adds its sub-commands and sets
``func`` on them; ``func(args) -> int`` returns the exit code. Failures a user can cause raise
:class:`cli.errors.CliError` and print one line, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

from cli.errors import EXIT_USAGE, CliError
from node.version import version_line

# Command groups, in help order. Each module has register(subparsers).
COMMAND_MODULES = (
    "cli.node_cmd",
    "cli.config_cmd",
    "cli.maintenance_cmd",
    "cli.keys_cmd",
    "cli.signer_cmd",
    "cli.snapshot_cmd",
    "cli.indexer_cmd",
    "cli.genesis_cmd",
    "cli.trade_cmd",
    "cli.staking_cmd",
    "cli.gov_cmd",
    "cli.accounts_cmd",
    "cli.algo_cmd",
    "cli.bridge_cmd",
    "cli.watch_cmd",
    "cli.proof_cmd",
    "cli.localnet_cmd",
    "cli.bench",
    "cli.completion_cmd",
)


# Trader commands whose module is imported alone when one of them is run: importing every
# command module (node, storage, p2p, TLS) costs more than the trader command itself.
LIGHT_COMMANDS = {
    **dict.fromkeys(
        ("order", "orders", "account", "book", "trades", "funding", "transfer", "withdraw-request",
         "leverage", "tx", "vault"),
        "cli.trade_cmd",
    ),
    "gov": "cli.gov_cmd",
    **dict.fromkeys(("subaccount", "agent", "fees"), "cli.accounts_cmd"),
    "twap": "cli.algo_cmd",
    "tpsl": "cli.algo_cmd",
    "watch": "cli.watch_cmd",
    "proof": "cli.proof_cmd",
    **dict.fromkeys(("validator", "delegate", "undelegate", "delegations"), "cli.staking_cmd"),
    "deposit": "cli.bridge_cmd",
    "withdraw": "cli.bridge_cmd",
}  # fmt: skip


def build_parser(modules: Sequence[str] = COMMAND_MODULES) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perpbft",
        description="perpbft: validator node and client of a BFT exchange chain",
    )
    parser.add_argument("--version", action="version", version=version_line())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in modules:
        importlib.import_module(name).register(sub)
    parser.set_defaults(root_parser=parser)  # for `perpbft completion`
    return parser


def parser_for(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The whole parser, or only the light module's when the command is a trader command."""
    module = LIGHT_COMMANDS.get(argv[0]) if argv else None
    return build_parser((module,) if module else COMMAND_MODULES)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = parser_for(argv)
    args = parser.parse_args(argv)
    func: Callable[[Any], int] = args.func
    try:
        return func(args)
    except CliError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
