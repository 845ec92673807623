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

# Command groups, in help order. Each module has register(subparsers).
COMMAND_MODULES = (
    "cli.node_cmd",
    "cli.keys_cmd",
    "cli.snapshot_cmd",
    "cli.trade_cmd",
    "cli.watch_cmd",
    "cli.proof_cmd",
    "cli.localnet_cmd",
    "cli.bench",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perpbft",
        description="perpbft: validator node and client of a BFT exchange chain",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
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
