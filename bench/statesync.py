"""State sync of a large state: one node serves a snapshot, a new node fetches it over p2p.

Two real nodes in this process (mutual TLS on 127.0.0.1, one event loop: they share one core,
so the figure is an upper bound for two machines on a fast LAN). The serving node holds a state
of ``--accounts`` funded accounts at height 2, certified by a one-validator genesis, with a
snapshot at height 1; the new node starts with an empty data dir and ``[statesync] enabled``.
Measured: snapshot export, then from the new node's start to its store being written and
opened (discovery, chunk fetch and checks, whole-root check, store creation, state rebuild),
then to block 2 (block sync).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from consensus.types import (
    COMMIT,
    Block,
    BlockHeader,
    QCSignature,
    QuorumCert,
    genesis_block,
    payload_root,
    vote_signing_bytes,
)
from node.chain import genesis_state_root
from node.config import Config, P2PSettings, RoleSettings, StateSyncSettings
from node.node import Node
from p2p.address import PeerAddress
from state_machine.crypto import Keypair, sha256
from state_machine.genesis import Genesis, default_genesis

CHAIN_ID = "perpbft-bench-statesync"
TIMEOUT_S = 1800.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--accounts", type=int, default=100_000, help="funded accounts")
    parser.add_argument("--base-port", type=int, default=36_100, help="two p2p ports from here")


def run(args: argparse.Namespace) -> dict[str, Any]:
    if not 1 <= args.accounts <= 2_000_000:
        raise SystemExit("--accounts must be between 1 and 2,000,000")
    with tempfile.TemporaryDirectory(prefix="perpbft-bench-statesync-") as tmp:
        return trio.run(_bench, Path(tmp), args.accounts, args.base_port)


def _signed_qc(header: BlockHeader, validator: Keypair) -> QuorumCert:
    block_hash = header.block_hash()
    message = vote_signing_bytes(CHAIN_ID, COMMIT, header.height, header.height, block_hash)
    signature = QCSignature(validator.public_key, validator.sign(message))
    return QuorumCert(COMMIT, header.height, header.height, block_hash, (signature,))


def _config(home: Path, port: int, other: bytes, other_port: int | None) -> Config:
    peers = () if other_port is None else (str(PeerAddress(other, "127.0.0.1", other_port)),)
    return Config(
        home=home,
        p2p=P2PSettings(listen=f"127.0.0.1:{port}", peers=peers, full_nodes=(other.hex(),)),
        role=RoleSettings(mode="full"),
        statesync=StateSyncSettings(enabled=other_port is not None, discovery_ms=500),
    )


async def _build_server(node: Node, genesis: Genesis, validator: Keypair) -> float:
    """Two certified empty blocks on the server's chain, and a snapshot at height 1;
    returns the export's seconds."""
    chain = node.chain = await trio.to_thread.run_sync(node.open_chain)
    parent, root = genesis_block(genesis.genesis_time_ms).block_hash(), genesis_state_root(genesis)
    for height in (1, 2):
        header = BlockHeader(
            height,
            height,
            parent,
            genesis.genesis_time_ms + 1000 * height,
            validator.public_key,
            payload_root(()),
            root,
        )
        stored = await node._follow_store(
            b"", Block(header, ()), _signed_qc(header, validator), "sync"
        )
        if not stored:
            raise RuntimeError(f"block {height} was refused")
        parent, root = header.block_hash(), chain.state_root
    t0 = time.perf_counter()
    await trio.to_thread.run_sync(node.statesync._export_and_index, 1)
    export_s = time.perf_counter() - t0
    await trio.to_thread.run_sync(chain.close)
    node.chain = None
    return export_s


async def _bench(tmp: Path, accounts: int, base_port: int) -> dict[str, Any]:
    validator = Keypair(sha256(b"bench-statesync-validator"))
    server_key, syncer_key = Keypair(sha256(b"bench-server")), Keypair(sha256(b"bench-syncer"))
    funded = [sha256(b"account-%d" % i) for i in range(accounts)]
    t0 = time.perf_counter()
    genesis = default_genesis(
        CHAIN_ID, [(validator.public_key, 1)], funded, int(time.time() * 1000) - 60_000
    )
    genesis_s = time.perf_counter() - t0
    server_port, syncer_port = base_port, base_port + 1
    server = Node(
        _config(tmp / "server", server_port, syncer_key.public_key, None), genesis, server_key
    )
    t0 = time.perf_counter()
    export_s = await _build_server(server, genesis, validator)
    build_s = time.perf_counter() - t0 - export_s
    server = Node(server.config, genesis, server_key)  # a fresh process's worth of state
    syncer_config = _config(tmp / "syncer", syncer_port, server_key.public_key, server_port)
    syncer = Node(syncer_config, genesis, syncer_key)
    with trio.fail_after(TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            started = time.perf_counter()
            nursery.start_soon(syncer.run)
            await syncer.ready.wait()
            restored_s = time.perf_counter() - started
            assert syncer.chain is not None
            while syncer.chain.height < 2:
                await trio.sleep(0.01)
            caught_up_s = time.perf_counter() - started
            nursery.cancel_scope.cancel()
    snapshot = next(iter(dataclasses.asdict(s) for s in server.statesync.local.values()))
    snapshot_bytes = Path(snapshot["path"]).stat().st_size
    result = {
        "bench": "statesync",
        "accounts": accounts,
        "entries": snapshot["entry_count"],
        "chunks": len(snapshot["chunk_hashes"]),
        "snapshot_bytes": snapshot_bytes,
        "genesis_build_s": round(genesis_s, 2),
        "server_store_build_s": round(build_s, 2),
        "snapshot_export_s": round(export_s, 2),
        "state_sync_s": round(restored_s, 2),
        "state_sync_to_head_s": round(caught_up_s, 2),
    }
    print(
        f"{accounts} accounts: {result['entries']} entries in {result['chunks']} chunks "
        f"({snapshot_bytes / 2**20:.1f} MiB); export {export_s:.2f} s; "
        f"state sync {restored_s:.2f} s (to the head: {caught_up_s:.2f} s)"
    )
    return result
