"""``perpbft snapshot export|import|inspect``: state snapshots of a local data dir.

These commands work on files, not on a running node: ``--home DIR`` uses the data dir named in
``DIR/config/config.toml`` (``DIR/data`` by default), ``--data DIR`` names a data dir directly,
and without either the home is ``$PERPBFT_HOME`` or ``~/.perpbft``.

* ``export --out FILE [--height H]`` writes the state at the latest committed height, or at an
  earlier height H within the store's proof history (``[storage] proof_history_heights``). It
  only reads, inside one LMDB read transaction, so it may run beside a running node.
* ``import FILE`` verifies the file (checksum, encoding, key order, Merkle root) and creates the
  store in an empty data dir. With ``--home`` it takes the home's lock, so it refuses to run
  while a node uses that home. ``--expect-root HEX`` also requires the root to be one you got
  from a block header certified by a commit QC.
* ``inspect FILE`` verifies a file the same way and prints its header, writing nothing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cli.errors import EXIT_OK, CliError
from node.config import HomeError, load_config, lock_home, resolve_home
from node.snapshot import SnapshotError, export_snapshot, import_snapshot, read_snapshot
from node.storage import DEFAULT_MAP_SIZE_BYTES, Store, StoreError
from state_machine.genesis import GenesisError, genesis_from_json
from state_machine.merkle_state import MerkleState


def register(sub: Any) -> None:
    snap = sub.add_parser("snapshot", help="export, import and inspect state snapshots")
    snap_sub = snap.add_subparsers(dest="snapshot_command", metavar="SUBCOMMAND")
    snap_sub.required = True

    export = snap_sub.add_parser("export", help="write the latest committed state to a file")
    _add_location(export)
    export.add_argument("--out", required=True, type=Path, help="snapshot file to write")
    export.add_argument(
        "--height", type=int, default=None, help="an earlier height (default: the latest)"
    )
    export.add_argument("--json", action="store_true", help="print JSON instead of text")
    export.set_defaults(func=cmd_export)

    imp = snap_sub.add_parser("import", help="create a node's store from a snapshot file")
    imp.add_argument("file", type=Path, help="snapshot file to read")
    _add_location(imp)
    imp.add_argument("--expect-root", help="hex state root the snapshot must have")
    imp.add_argument(
        "--genesis",
        type=Path,
        default=None,
        help="genesis file the snapshot's chain must match (default: the home's genesis)",
    )
    imp.add_argument("--json", action="store_true", help="print JSON instead of text")
    imp.set_defaults(func=cmd_import)

    inspect = snap_sub.add_parser("inspect", help="verify a snapshot file and print its header")
    inspect.add_argument("file", type=Path, help="snapshot file to read")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of text")
    inspect.set_defaults(func=cmd_inspect)


def _add_location(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--home", help="node home (its config names the data dir)")
    where.add_argument("--data", type=Path, help="data dir to use directly")


def _data_dir_and_map_size(args: argparse.Namespace) -> tuple[Path, int]:
    if args.data is not None:
        return Path(args.data).expanduser().absolute(), DEFAULT_MAP_SIZE_BYTES
    home = resolve_home(args.home)
    try:
        config = load_config(home)
    except HomeError as exc:
        raise CliError(str(exc)) from None
    return config.data_path, config.storage.map_size_bytes


def _print(result: dict[str, Any], as_json: bool, text: str) -> None:
    print(json.dumps(result) if as_json else text)


def cmd_export(args: argparse.Namespace) -> int:
    data_dir, map_size = _data_dir_and_map_size(args)
    if args.height is not None and args.height < 0:
        raise CliError("--height must be 0 or more")
    try:
        with Store.open(data_dir, map_size_bytes=map_size) as store:
            info = export_snapshot(store, args.out, args.height)
    except (StoreError, SnapshotError) as exc:
        raise CliError(str(exc)) from None
    result = {
        "file": str(info.path),
        "chain_id": info.chain_id,
        "height": info.height,
        "state_root": info.state_root.hex(),
        "entries": info.entry_count,
        "bytes": info.file_bytes,
    }
    text = (
        f"exported height {info.height} ({info.entry_count} entries, {info.file_bytes} bytes) "
        f"to {info.path}\nstate root {info.state_root.hex()}"
    )
    _print(result, args.json, text)
    return EXIT_OK


def _parse_root(text: str | None) -> bytes | None:
    if text is None:
        return None
    try:
        root = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raise CliError("--expect-root must be hex") from None
    if len(root) != 32:
        raise CliError("--expect-root must be 32 bytes (64 hex characters)")
    return root


def cmd_import(args: argparse.Namespace) -> int:
    expect_root = _parse_root(args.expect_root)
    data_dir, map_size = _data_dir_and_map_size(args)
    lock = None
    genesis_path = args.genesis
    if args.data is None:
        try:
            config = load_config(resolve_home(args.home))
            lock = lock_home(config)
        except HomeError as exc:
            raise CliError(str(exc)) from None
        genesis_path = genesis_path or config.genesis_path
    try:
        expect_genesis = _genesis_identity(genesis_path) if genesis_path else None
        with import_snapshot(
            args.file,
            data_dir,
            expect_root=expect_root,
            map_size_bytes=map_size,
            expect_genesis=expect_genesis,
        ) as store:
            meta = store.meta
            entries = len(store.tree)
    except (StoreError, SnapshotError, GenesisError) as exc:
        raise CliError(str(exc)) from None
    finally:
        if lock is not None:
            lock.release()
    result = {
        "data_dir": str(data_dir),
        "chain_id": meta.chain_id,
        "height": meta.height,
        "state_root": meta.state_root.hex(),
        "entries": entries,
    }
    text = (
        f"imported height {meta.height} of chain {meta.chain_id} ({entries} entries) into "
        f"{data_dir}\nstate root {meta.state_root.hex()} (verified against the entries)"
    )
    _print(result, args.json, text)
    return EXIT_OK


def _genesis_identity(path: Path) -> tuple[str, bytes]:
    """(chain id, genesis hash) of a genesis file; a home without one cannot check a
    snapshot's chain, so the import is refused until the genesis is in place."""
    try:
        genesis = genesis_from_json(path.read_bytes())
    except FileNotFoundError:
        raise CliError(
            f"genesis file {path} does not exist: put the chain's genesis there first (or "
            "name one with --genesis) so the snapshot's chain can be checked"
        ) from None
    except OSError as exc:
        raise CliError(f"cannot read genesis file {path}: {exc.strerror}") from None
    return genesis.chain_id, genesis.hash()


def cmd_inspect(args: argparse.Namespace) -> int:
    try:
        header, entries = read_snapshot(args.file)
    except SnapshotError as exc:
        raise CliError(str(exc)) from None
    root_ok = MerkleState.from_entries(entries).root() == header.state_root
    result = {
        "file": str(args.file),
        "chain_id": header.chain_id,
        "genesis_hash": header.genesis_hash.hex(),
        "height": header.height,
        "block_hash": header.block_hash.hex(),
        "state_root": header.state_root.hex(),
        "entries": header.entry_count,
        "has_block_and_qc": bool(header.block),
        "root_verified": root_ok,
    }
    if not root_ok:
        raise CliError(f"{args.file}: the entries do not hash to the header's state root")
    text = "\n".join(f"{k}: {v}" for k, v in result.items())
    _print(result, args.json, text)
    return EXIT_OK
