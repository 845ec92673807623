"""``perpbft start``: load a home, take its lock, run the node with its API and metrics.

SIGINT and SIGTERM stop the node gracefully: the servers and peers close, the storage closes
after the last commit. A kill -9 loses nothing committed either, since every committed block is
one LMDB transaction (see node/storage.py).
"""

from __future__ import annotations

import gc
import resource
import signal
from collections.abc import Sequence
from pathlib import Path

import trio
from hypercorn.config import Config as HyperConfig

from consensus.signing import SigningFailed
from nativebuild import loader as native
from node.api.app import build_app, build_metrics_app
from node.api.server import serve_api
from node.bridge.keyfile import read_bridge_key
from node.chain import ChainError
from node.config import Config, HomeError, load_config, lock_home
from node.diskwatch import start_space_problem
from node.fatal import FatalExit, NodeFatal, first_of
from node.keys import KeyFileError, read_key_file
from node.logs import configure_logging, fields, get_logger
from node.node import Node
from node.overrides import Override, apply_overrides
from node.signer import RemoteSigner
from node.storage import StoreError
from p2p.tls import make_tls_contexts
from state_machine.crypto import Keypair
from state_machine.genesis import Genesis, GenesisError, genesis_from_json

log = get_logger("runner")

# Young-generation threshold once the node runs. A block allocates hundreds of thousands of
# short-lived objects (orders, events, results); at CPython's default of 700 the collector runs
# hundreds of times per block, each pass also walking the surviving young objects.
GC_GEN0_THRESHOLD = 50_000
# Descriptors besides the API's and the peers' connections: LMDB, logs, listeners, threads.
OTHER_FILES = 256


class StartError(Exception):
    """A node that cannot start; the message says why in one line."""


def load_genesis(path: Path) -> Genesis:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StartError(f"genesis file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StartError(f"cannot read genesis file {path}: {exc}") from None
    try:
        return genesis_from_json(text)
    except GenesisError as exc:
        raise StartError(f"{path}: {exc}") from None


def hyper_config(listen: str) -> HyperConfig:
    config = HyperConfig()
    config.bind = [listen]
    config.accesslog = None
    config.errorlog = None
    config.keep_alive_timeout = 30
    config.h11_max_incomplete_size = 16 * 1024
    config.websocket_max_message_size = 64 * 1024
    config.graceful_timeout = 2
    return config


async def serve_node(
    node: Node, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run the node, its API and (if enabled) metrics until cancelled or signalled."""
    config = node.config
    async with trio.open_nursery() as nursery:
        # The servers start first: opening a big store (page walk, root recomputation) takes a
        # while, and meanwhile /livez says the process is alive and the rest answer 503
        # "starting" instead of refusing connections.
        binds: list[str] = []
        if config.role.api_enabled:  # off: a validator that only its sentries talk to
            binds += await nursery.start(
                serve_api, build_app(node), hyper_config(config.api.listen)
            )
        if config.metrics.enabled:
            metrics_binds: list[str] = await nursery.start(
                serve_api, build_metrics_app(node), hyper_config(config.metrics.listen)
            )
            binds += metrics_binds
        log.info("api_listening", extra=fields(binds=binds))
        await nursery.start(node.run)
        if config.bridge.rpc_url:
            nursery.start_soon(run_bridge, node)
        tune_gc_after_load()
        task_status.started(binds)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                log.info("stopping", extra=fields(signal=signal.Signals(signum).name))
                nursery.cancel_scope.cancel()
                break


async def run_bridge(node: Node) -> None:
    """The validator's bridge duties ([bridge], node/bridge/service.py)."""
    # Imported here, not at the top: web3 takes about a second and tens of MB to import, and
    # only a validator with a [bridge] rpc_url needs it.
    from node.bridge.service import BridgeService

    key = read_bridge_key(node.config.bridge_key_path)
    await BridgeService(node, node.config.bridge, key).run()


def check_bridge_key(config: Config) -> None:
    """A configured bridge whose key cannot be read is a start error, not a silent no-op."""
    if config.bridge.rpc_url:
        try:
            read_bridge_key(config.bridge_key_path)
        except KeyFileError as exc:
            raise StartError(f"[bridge] {exc}") from None


def tune_gc_after_load() -> None:
    """Move the loaded state out of the collector's sight and make young collections rare.

    The exchange state (every open order, account and book level) lives for the whole run;
    without this, each full collection walks all of it, which was about a quarter of block
    execution time in ``perpbft bench matching``. Frozen objects are still freed by reference
    counting when they die; only cyclic garbage among them would be kept, and the state holds
    no cycles that outlive their objects' removal.
    """
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)
    log.info("gc_frozen", extra=fields(frozen_objects=gc.get_freeze_count()))


def prepare(home: Path, overrides: Sequence[Override] = ()) -> tuple[Config, Genesis, Node]:
    try:
        config = apply_overrides(load_config(home), overrides)
    except HomeError as exc:
        raise StartError(str(exc)) from None
    genesis = load_genesis(config.genesis_path)
    try:
        key = read_key_file(config.node_key_path)
    except KeyFileError as exc:
        raise StartError(str(exc)) from None
    check_bridge_key(config)
    signer = connect_signer(config, key)
    node = Node(config, genesis, key, signer)
    return config, genesis, node


def connect_signer(config: Config, key: Keypair) -> RemoteSigner | None:
    """The configured remote signer, reachable and holding this node's key, or none; a signer
    that is down at start is a start error (the node would never vote)."""
    if not config.signer.address:
        return None
    try:
        tls = None
        if config.signer.address.startswith("tls://"):
            tls = make_tls_contexts(key.seed).client  # pins the signer to the validator key
        signer = RemoteSigner(config.signer.address, config.signer.timeout_ms, tls, key.public_key)
    except (ValueError, SigningFailed) as exc:
        raise StartError(f"remote signer: {exc}") from None
    if signer.public_key != key.public_key:
        signer.close()
        raise StartError(
            f"the remote signer holds key {signer.public_key.hex()[:16]}, not this node's "
            f"{key.public_key.hex()[:16]}"
        )
    return signer


def raise_open_files_limit(config: Config) -> None:
    """Lift the soft open-files limit (often 1,024) toward what the connection caps allow, so
    a full API cannot starve the peers or the store of descriptors; the hard limit bounds it,
    and a warning says when the caps cannot all be honoured."""
    needed = config.api.connections_max + config.p2p.connections_max + OTHER_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        log.warning(
            "open_files_limit_low",
            extra=fields(
                hard_limit=hard, needed=needed, api_connections_max=config.api.connections_max
            ),
        )


def log_state_machine_build() -> None:
    """Which build of the state machine runs (nativebuild/loader.py); a warning when a compiled
    build is there but not used (stale after an update without ``make native``)."""
    info = fields(build=native.build_name(), reason=native.build_reason())
    if native.unused_build():
        log.warning("state_machine_build_unused", extra=info)
    else:
        log.info("state_machine_build", extra=info)


def run_home(home: Path, overrides: Sequence[Override] = ()) -> None:
    """Run the node of ``home`` with its config file and ``overrides`` (flags, environment:
    node/overrides.py) until a signal stops it."""
    config, _, node = prepare(home, overrides)
    configure_logging(config.log.format, config.log.level, context=node.log_context)
    raise_open_files_limit(config)
    try:
        lock = lock_home(config)
    except HomeError as exc:
        raise StartError(str(exc)) from None
    with lock:
        check_free_space(config)
        # After the start-up refusals, which are one line each.
        log_state_machine_build()
        try:
            trio.run(serve_node, node)
        except Exception as exc:
            raise stop_reason(exc) from None


def check_free_space(config: Config) -> None:
    """Refuse to start below ``[storage] disk_free_start_min_bytes`` (node/diskwatch.py)."""
    try:
        problem = start_space_problem(config.data_path, config.storage.disk_free_start_min_bytes)
    except OSError as exc:
        raise StartError(f"cannot read the free space of {config.data_path}: {exc}") from None
    if problem is not None:
        raise StartError(problem)


def stop_reason(error: Exception) -> Exception:
    """What a node that ended with ``error`` exits with: a fatal failure is logged as its one
    structured event (node/fatal.py) and exits with its code; a start-up failure is a
    one-line StartError; anything else is a bug and keeps its traceback."""
    fatal = first_of(error, NodeFatal)
    if isinstance(fatal, NodeFatal):
        log.critical(fatal.event, extra=fields(**fatal.fields, exit_code=fatal.exit_code))
        return FatalExit(fatal.exit_code)
    chain_error = first_of(error, ChainError) or first_of(error, StoreError)
    if chain_error is not None:
        return StartError(str(chain_error))
    os_error = first_of(error, OSError)
    if os_error is not None:
        return StartError(f"cannot start: {os_error}")
    return error
