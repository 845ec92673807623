"""``perpbft reset`` and ``perpbft rollback``: repair a node's data dir (CometBFT's
``unsafe-reset-all`` and ``rollback``). Both take the home's lock, so neither runs beside the
node, and both keep the consensus safety record, so a validator that is reset or rolled back
still refuses to vote again in any view it voted in: it cannot double-sign afterwards.

* ``reset`` deletes the chain data (everything in the data dir but its lock) and recreates
  the genesis state with the old safety record in it; the node then syncs the chain from its
  peers. It asks for confirmation (``--yes`` for scripts). A store too damaged to read its
  safety record is reset only with ``--unsafe-forget-safety``, which says what it risks.
* ``rollback`` undoes the last committed block (node/storage.py ``roll_back_one_height``):
  for a node that executed a block wrongly (a bug fixed by an upgrade), it executes it again
  after the restart, as fetched from its peers.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from typing import Any

from cli.errors import EXIT_OK, CliError
from cli.node_cmd import add_home_argument, load_home_config
from node.config import LOCK_FILE_NAME, Config, HomeError, lock_home

# node.chain, node.runner and node.storage (LMDB, the exchange, the API server) are imported
# by the commands that use them: every `perpbft` command imports this module to build its
# parser, and most never touch a store.


def register(sub: Any) -> None:
    reset = sub.add_parser(
        "reset", help="delete a node's chain data (keeps config, keys and the safety record)"
    )
    add_home_argument(reset)
    reset.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    reset.add_argument(
        "--unsafe-forget-safety",
        action="store_true",
        help="reset even if the safety record cannot be read (a validator could double-sign)",
    )
    reset.add_argument("--json", action="store_true", help="print JSON instead of text")
    reset.set_defaults(func=cmd_reset)

    rollback = sub.add_parser(
        "rollback", help="undo the last committed block of a stopped node (safety record kept)"
    )
    add_home_argument(rollback)
    rollback.add_argument("--json", action="store_true", help="print JSON instead of text")
    rollback.set_defaults(func=cmd_rollback)


def confirm_reset(args: argparse.Namespace, config: Config) -> None:
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise CliError("reset deletes the chain data: confirm with --yes when not on a terminal")
    answer = input(f"delete all chain data in {config.data_path}? type 'reset' to confirm: ")
    if answer.strip() != "reset":
        raise CliError("reset cancelled; nothing was deleted")


def read_safety_record(config: Config, forget: bool) -> bytes | None:
    """The stored safety record (None: no store, or --unsafe-forget-safety on a bad one)."""
    from node.storage import Store, StoreError, StoreMissingError

    try:
        with Store.open(config.data_path, map_size_bytes=config.storage.map_size_bytes) as s:
            return s.read_safety_data()
    except StoreMissingError:
        return None
    except StoreError as exc:
        if forget:
            return None
        raise CliError(
            f"cannot read the safety record ({exc}); reset anyway with --unsafe-forget-safety "
            "only if this node never voted, or after it has been offline long enough"
        ) from None


def cmd_reset(args: argparse.Namespace) -> int:
    from node.chain import Chain, ChainError
    from node.runner import StartError, load_genesis
    from node.storage import StoreError

    config = load_home_config(args.home)
    confirm_reset(args, config)
    try:
        genesis = load_genesis(config.genesis_path)
        with lock_home(config):
            safety = read_safety_record(config, args.unsafe_forget_safety)
            deleted = delete_chain_data(config)
            chain = Chain.open(
                config.data_path, genesis, map_size_bytes=config.storage.map_size_bytes
            )
            try:
                if safety is not None:
                    chain.store.write_safety_data(safety)
            finally:
                chain.close()
    except (HomeError, StartError, ChainError, StoreError, OSError) as exc:
        raise CliError(f"reset failed: {exc}") from None
    result = {
        "data_dir": str(config.data_path),
        "deleted": deleted,
        "safety_record_kept": safety is not None,
    }
    kept = "kept" if safety is not None else "none to keep"
    text = (
        f"reset {config.data_path}: chain data deleted, genesis state written "
        f"(safety record {kept})"
    )
    print(json.dumps(result) if args.json else text)
    return EXIT_OK


def delete_chain_data(config: Config) -> list[str]:
    """Delete everything in the data dir but its lock file; return the names deleted."""
    deleted = []
    for child in sorted(config.data_path.iterdir()):
        if child.name == LOCK_FILE_NAME:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
        deleted.append(child.name)
    return deleted


def cmd_rollback(args: argparse.Namespace) -> int:
    from node.chain import Chain, ChainError
    from node.runner import StartError, load_genesis
    from node.storage import StoreError

    config = load_home_config(args.home)
    map_size = config.storage.map_size_bytes
    try:
        genesis = load_genesis(config.genesis_path)
        with lock_home(config):
            chain = Chain.open_existing(config.data_path, genesis, map_size_bytes=map_size)
            try:
                before = chain.height
                chain.store.roll_back_one_height()
            finally:
                chain.close()
            # Reopened as the node will: the exchange state rebuilt from the entries must give
            # the rolled-back root.
            chain = Chain.open_existing(config.data_path, genesis, map_size_bytes=map_size)
            height, root = chain.height, chain.state_root
            chain.close()
    except (HomeError, StartError, ChainError, StoreError) as exc:
        raise CliError(f"rollback failed: {exc}") from None
    result = {"height_before": before, "height": height, "state_root": root.hex()}
    text = (
        f"rolled back from height {before} to {height}, state root {root.hex()} "
        "(safety record kept: the node executes the block again after it syncs it)"
    )
    print(json.dumps(result) if args.json else text)
    return EXIT_OK
