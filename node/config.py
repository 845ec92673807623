"""A node's home directory: where it is, what ``perpbft init`` writes, how config is loaded.

Layout (paths in the config file are relative to the home)::

    <home>/config/config.toml     settings (commented; every key with its default and range)
    <home>/config/node_key.json   the node's Ed25519 key (mode 0600): p2p identity and validator
    <home>/config/genesis.json    the chain's genesis (written by ``perpbft testnet``)
    <home>/data/                  LMDB and everything else the node writes
    <home>/data/LOCK              flock'ed by the running node; holds its pid

The home is ``--home`` if given, else ``$PERPBFT_HOME`` if set and non-empty, else
``~/.perpbft``.

Loading is strict, because a typo in a config key that is silently ignored is a validator
running with a setting its operator did not choose: an unknown key, a wrong type or a value
out of range is a :class:`ConfigError` whose one-line message names the file and the key
(``.../config.toml: p2p.frame_bytes_max = 0 is out of range (1024..1073741824)``). Missing
keys take their defaults, so a file from an older version still loads.

The schema is the dataclasses below: each field's default, doc line and range live in one
place, and the template written by ``init`` is rendered from them, so the two cannot drift.
"""

from __future__ import annotations

import dataclasses
import difflib
import fcntl
import json
import os
import re
import socket
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from node.keys import KeyFileError, generate_keypair, read_key_file, write_key_file
from node.storage import DEFAULT_PROOF_HISTORY_HEIGHTS, PROOF_HISTORY_HEIGHTS_MAX
from p2p.address import PeerAddress, parse_host_port, parse_public_key
from p2p.config import TransportConfig
from state_machine.crypto import Keypair

HOME_ENV = "PERPBFT_HOME"
DEFAULT_HOME = "~/.perpbft"
CONFIG_FILE = Path("config") / "config.toml"
NODE_KEY_FILE = Path("config") / "node_key.json"
DATA_DIR = Path("data")
LOCK_FILE_NAME = "LOCK"

CONFIG_FILE_BYTES_MAX = 1024 * 1024
STRING_CHARS_MAX = 4096
LIST_ITEMS_MAX = 1000
MONIKER_CHARS_MAX = 64
MIB = 1024 * 1024
_MONIKER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class HomeError(Exception):
    """A problem with the home directory or its files; the message is one line."""


class ConfigError(HomeError):
    """An invalid config file; the message names the file and the key."""


class HomeLockedError(HomeError):
    """Another process holds the home's lock."""


# --------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------


def _key(
    default: Any,
    doc: str,
    *,
    lo: int | None = None,
    hi: int | None = None,
    choices: tuple[str, ...] | None = None,
    parse: Callable[[str], object] | None = None,
) -> Any:
    """A config key: default, one-line doc, and its allowed range or values."""
    metadata = {"doc": doc, "lo": lo, "hi": hi, "choices": choices, "parse": parse}
    return dataclasses.field(default=default, metadata=metadata)


def _parse_moniker(text: str) -> str:
    if len(text) > MONIKER_CHARS_MAX or not _MONIKER_RE.fullmatch(text):
        raise ValueError(f"must be 1..{MONIKER_CHARS_MAX} characters of [A-Za-z0-9._-]")
    return text


def _parse_path(text: str) -> str:
    if not text or "\x00" in text:
        raise ValueError("must be a non-empty path")
    return text


def _parse_origin(text: str) -> str:
    """A config entry of ``cors_allowed_origins``: ``*`` or ``scheme://host[:port]``."""
    if text == "*":
        return text
    scheme, sep, rest = text.partition("://")
    if (
        scheme not in ("http", "https")
        or not sep
        or not rest
        or any(c in rest for c in "/?#@ \t")
        or text != text.lower()
    ):
        raise ValueError("must be '*' or a lowercase origin like http://127.0.0.1:8080 (no path)")
    return text


@dataclasses.dataclass(frozen=True, slots=True)
class NodeSettings:
    """Top-level keys."""

    moniker: str = _key("node", "a human-readable name for this node", parse=_parse_moniker)
    data_dir: str = _key("data", "where the node keeps its data", parse=_parse_path)
    genesis_file: str = _key("config/genesis.json", "the chain's genesis file", parse=_parse_path)
    node_key_file: str = _key(
        "config/node_key.json", "the node's Ed25519 key, mode 0600", parse=_parse_path
    )


@dataclasses.dataclass(frozen=True, slots=True)
class P2PSettings:
    """Validator-to-validator transport (mutual TLS 1.3, pinned Ed25519 keys)."""

    listen: str = _key("0.0.0.0:26656", "host:port to accept peers on", parse=parse_host_port)
    peers: tuple[str, ...] = _key(
        (), "peers to dial, each <public key hex>@<host>:<port>", parse=PeerAddress.parse
    )
    full_nodes: tuple[str, ...] = _key(
        (),
        "public keys (hex) of full nodes allowed to connect, besides genesis validators",
        parse=parse_public_key,
    )
    frame_bytes_max: int = _key(
        4 * MIB, "largest message; a bigger frame disconnects the sender", lo=1024, hi=1024 * MIB
    )
    inbound_queue_frames: int = _key(
        4096, "messages from all peers waiting to be handled", lo=1, hi=1_000_000
    )
    inbound_queue_bytes_max: int = _key(
        64 * MIB, "bytes from all peers waiting to be handled", lo=1024, hi=64 * 1024 * MIB
    )
    outbound_queue_frames: int = _key(
        1024, "messages waiting to be sent to one peer (oldest dropped)", lo=1, hi=1_000_000
    )
    outbound_queue_bytes_max: int = _key(
        32 * MIB, "bytes waiting to be sent to one peer", lo=1024, hi=64 * 1024 * MIB
    )
    handshake_timeout_ms: int = _key(3_000, "TCP connect + TLS handshake limit", lo=10, hi=600_000)
    handshake_silent_timeout_ms: int = _key(
        1_000, "an inbound connection that sends nothing this long is closed", lo=10, hi=600_000
    )
    idle_timeout_ms: int = _key(
        30_000, "a peer silent this long is disconnected", lo=10, hi=3_600_000
    )
    keepalive_interval_ms: int = _key(
        5_000, "send a keepalive after this long without traffic", lo=5, hi=3_600_000
    )
    write_timeout_ms: int = _key(
        15_000, "a peer that takes longer to accept a write is disconnected", lo=10, hi=3_600_000
    )
    dial_backoff_base_ms: int = _key(100, "first redial delay", lo=1, hi=600_000)
    dial_backoff_max_ms: int = _key(10_000, "longest redial delay", lo=1, hi=3_600_000)
    connections_max: int = _key(256, "most peer connections", lo=1, hi=100_000)
    handshakes_pending_max: int = _key(
        64, "most inbound handshakes at once from hosts not known as validators'", lo=1, hi=100_000
    )
    handshakes_per_host_max: int = _key(
        4, "most inbound handshakes at once from one such host", lo=1, hi=100_000
    )
    handshakes_reserved_max: int = _key(
        32, "most inbound handshakes at once from known validators' hosts", lo=1, hi=100_000
    )
    penalty_threshold: int = _key(
        100, "penalty points (10 per invalid message) that ban a peer", lo=1, hi=1_000_000
    )
    penalty_decay_per_s: int = _key(1, "penalty points forgiven per second", lo=0, hi=1_000_000)
    ban_ms: int = _key(600_000, "how long a banned peer is refused", lo=0, hi=30 * 86_400_000)
    gossip_flush_ms: int = _key(
        10,
        "admitted transactions gathered this long into one gossip frame (0: at once)",
        lo=0,
        hi=1_000,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class SyncSettings:
    """Block sync served to peers (a small request can ask for megabytes: metered per peer)."""

    serve_bytes_per_s: int = _key(
        16 * MIB, "block sync bytes served to one peer per second", lo=1024, hi=64 * 1024 * MIB
    )
    serve_burst_bytes: int = _key(
        32 * MIB, "block sync bytes one peer may take at once", lo=64 * 1024, hi=64 * 1024 * MIB
    )


@dataclasses.dataclass(frozen=True, slots=True)
class ApiSettings:
    """Public HTTP + WebSocket API."""

    listen: str = _key("127.0.0.1:26657", "host:port of the HTTP API", parse=parse_host_port)
    # Limits per client address; behind a reverse proxy every client has the proxy's address.
    client_rate_per_s: int = _key(
        200, "requests per second per client address (token bucket refill)", lo=1, hi=1_000_000
    )
    client_burst: int = _key(400, "requests a client address may send at once", lo=1, hi=10_000_000)
    connections_max: int = _key(
        2_000, "open HTTP and WebSocket connections in all", lo=1, hi=1_000_000
    )
    connections_per_client_max: int = _key(
        64, "open HTTP and WebSocket connections per client address", lo=1, hi=1_000_000
    )
    websocket_connections_max: int = _key(
        1_000, "open WebSocket connections in all", lo=1, hi=1_000_000
    )
    websocket_connections_per_client_max: int = _key(
        16, "open WebSocket connections per client address", lo=1, hi=1_000_000
    )
    websocket_messages_per_s: int = _key(
        20, "messages per second a WebSocket client may send (token bucket)", lo=1, hi=1_000_000
    )
    websocket_message_burst: int = _key(
        40, "messages a WebSocket client may send at once", lo=1, hi=10_000_000
    )
    websocket_write_timeout_ms: int = _key(
        10_000,
        "a WebSocket client that takes longer to accept one message is disconnected",
        lo=10,
        hi=3_600_000,
    )
    cors_allowed_origins: tuple[str, ...] = _key(
        (),
        'origins (scheme://host[:port]) whose web pages may call this API, or "*" for any; '
        "none: no CORS headers (the page at /app on this node needs none)",
        parse=_parse_origin,
    )
    shed_loop_lag_ms: int = _key(
        200,
        "answer 503 overloaded (health probes excepted) while the event loop lags this much "
        "(smoothed); 0 never sheds",
        lo=0,
        hi=60_000,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class MetricsSettings:
    """Prometheus metrics."""

    enabled: bool = _key(True, "serve /metrics")
    listen: str = _key("127.0.0.1:26660", "host:port of /metrics", parse=parse_host_port)


@dataclasses.dataclass(frozen=True, slots=True)
class ConsensusSettings:
    """Consensus timing (chain-wide limits come from genesis)."""

    block_interval_ms: int = _key(500, "time between proposals", lo=0, hi=600_000)
    view_timeout_base_ms: int = _key(
        2_000, "first view timeout; doubles on each failed view", lo=10, hi=3_600_000
    )
    view_timeout_cap_ms: int = _key(60_000, "longest view timeout", lo=10, hi=86_400_000)
    max_block_txs: int = _key(
        4_000,
        "most transactions a proposal carries (bounds each block's execution time, so a "
        "burst cannot outlast the view timeout)",
        lo=1,
        hi=100_000,
    )
    max_block_actions: int = _key(
        25_000,
        "most actions (orders, cancels, ...) a proposal carries: batched transactions cost "
        "execution per action, so the block bound counts them",
        lo=64,
        hi=10_000_000,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class MempoolSettings:
    """Pending transactions."""

    txs_max: int = _key(50_000, "most transactions held", lo=1, hi=10_000_000)
    bytes_max: int = _key(64 * MIB, "most bytes held", lo=1024, hi=64 * 1024 * MIB)
    per_signer_max: int = _key(1_000, "most transactions held per signer", lo=1, hi=1_000_000)


@dataclasses.dataclass(frozen=True, slots=True)
class LogSettings:
    """Logging."""

    format: str = _key(
        "auto", "json, text, or auto (text on a terminal)", choices=("auto", "json", "text")
    )
    level: str = _key(
        "info", "debug, info, warning or error", choices=("debug", "info", "warning", "error")
    )


@dataclasses.dataclass(frozen=True, slots=True)
class StorageSettings:
    """LMDB storage."""

    pruning_keep_blocks: int = _key(0, "committed blocks to keep (0 = keep all)", lo=0, hi=2**62)
    map_size_bytes: int = _key(
        64 * 1024 * MIB, "LMDB map size (address space, not disk)", lo=MIB, hi=2**50
    )
    proof_history_heights: int = _key(
        DEFAULT_PROOF_HISTORY_HEIGHTS,
        "past heights whose state stays provable (0 = the latest only)",
        lo=0,
        hi=PROOF_HISTORY_HEIGHTS_MAX,
    )
    archive: bool = _key(
        False,
        "archive node: keep every height provable (no undo record or block is ever deleted; "
        "needs pruning_keep_blocks = 0)",
    )
    disk_free_start_min_bytes: int = _key(
        256 * MIB,
        "refuse to start with less free space on the data dir's file system (0 = no check)",
        lo=0,
        hi=2**62,
    )
    disk_free_ready_min_bytes: int = _key(
        1024 * MIB,
        "/readyz says not ready with less free space than this (0 = no check)",
        lo=0,
        hi=2**62,
    )
    audit_every_blocks: int = _key(
        1_000,
        "run the whole-state conservation audit every N blocks; it always runs at start-up "
        "(0 = start-up only)",
        lo=0,
        hi=1_000_000_000,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class IndexerSettings:
    """The history indexer (node/indexer/): committed blocks' events in a database."""

    mode: str = _key(
        "in_process",
        "in_process: the node indexes its blocks; external: `perpbft indexer` does and the "
        "node serves history from its database; off: recent in-memory history only",
        choices=("in_process", "external", "off"),
    )
    backend: str = _key(
        "sqlite", "database: sqlite (one file) or postgresql", choices=("sqlite", "postgresql")
    )
    sqlite_file: str = _key(
        "data/index.sqlite3", "SQLite database file (relative to the home)", parse=_parse_path
    )
    postgresql_dsn: str = _key(
        "", "PostgreSQL connection string (libpq form), for backend = postgresql"
    )
    blocks_per_commit_max: int = _key(
        200, "blocks written in one database transaction while catching up", lo=1, hi=100_000
    )


@dataclasses.dataclass(frozen=True, slots=True)
class RoleSettings:
    """What this node is: a validator that votes, or a full node that follows the chain."""

    mode: str = _key(
        "validator",
        "validator (votes if the node key is in the validator set, else follows) or full "
        "(never votes: follows, serves the API, forwards transactions)",
        choices=("validator", "full"),
    )
    api_enabled: bool = _key(
        True, "serve the public HTTP API (a validator behind sentry full nodes turns it off)"
    )


def _parse_signer_address(text: str) -> str:
    if text and not (text.startswith("unix://") and len(text) > len("unix://")):
        host, _, port = text.removeprefix("tls://").rpartition(":")
        if not (text.startswith("tls://") and host and port.isdigit() and 0 < int(port) < 65536):
            raise ValueError("must be empty, unix:///path/to/signer.sock or tls://host:port")
    return text


@dataclasses.dataclass(frozen=True, slots=True)
class SignerSettings:
    """A remote signer for the validator key (``perpbft signer``, node/signer.py)."""

    address: str = _key(
        "",
        "unix:///path or tls://host:port of a perpbft signer holding the validator key "
        "(empty = sign with the node key file)",
        parse=_parse_signer_address,
    )
    timeout_ms: int = _key(
        1_000,
        "a signature not received in this time is skipped (the replica stays silent)",
        lo=1,
        hi=60_000,
    )


def _parse_trust_hash(text: str) -> str:
    if text and (len(text) != 64 or any(c not in "0123456789abcdef" for c in text)):
        raise ValueError("must be empty or a block hash of 64 lowercase hex characters")
    return text


@dataclasses.dataclass(frozen=True, slots=True)
class StateSyncSettings:
    """State sync: start an empty node from a peer's snapshot; take snapshots for others."""

    enabled: bool = _key(
        False, "on an empty data dir, fetch a recent snapshot from peers before block sync"
    )
    trust_height: int = _key(
        0,
        "with trust_hash: take only the snapshot at this height (0 = any snapshot certified "
        "by the genesis validators)",
        lo=0,
        hi=2**62,
    )
    trust_hash: str = _key(
        "",
        "hex hash of the block at trust_height, from a source you trust",
        parse=_parse_trust_hash,
    )
    discovery_ms: int = _key(
        3_000, "how long to collect peers' snapshot offers before choosing", lo=10, hi=600_000
    )
    chunk_timeout_ms: int = _key(
        10_000, "a chunk not received in this time is asked of another peer", lo=10, hi=600_000
    )
    snapshot_interval: int = _key(
        0, "take a snapshot every this many heights (0 = take none)", lo=0, hi=2**62
    )
    snapshot_keep_recent: int = _key(2, "snapshots kept; older ones are deleted", lo=1, hi=1_000)


def _parse_rpc_url(text: str) -> str:
    if text and not (text.startswith(("http://", "https://")) and len(text) > len("https://")):
        raise ValueError("must be empty or an http(s):// JSON-RPC URL of the EVM chain")
    return text


@dataclasses.dataclass(frozen=True, slots=True)
class BridgeSettings:
    """A validator's bridge duties (docs/BRIDGE.md); off while rpc_url is empty."""

    rpc_url: str = _key(
        "", "JSON-RPC URL of the EVM chain's node (empty = no bridge duties)", parse=_parse_rpc_url
    )
    key_file: str = _key(
        "config/bridge.key",
        "the secp256k1 bridge key: its 32 bytes in hex on one line (mode 0600)",
        parse=_parse_path,
    )
    poll_ms: int = _key(2_000, "how often to read the EVM chain", lo=100, hi=600_000)
    start_block: int = _key(
        0, "first EVM block to scan for deposits (the contract's deployment)", lo=0, hi=2**62
    )
    scan_blocks_max: int = _key(
        2_000, "most EVM blocks read per deposit query (providers cap log ranges)", lo=1, hi=10**6
    )
    actions_max: int = _key(64, "most attestations and signatures sent per poll", lo=1, hi=1_000)


# Table name -> settings class, in file order; "" is the top level.
SECTIONS: dict[str, type] = {
    "": NodeSettings,
    "p2p": P2PSettings,
    "api": ApiSettings,
    "metrics": MetricsSettings,
    "consensus": ConsensusSettings,
    "mempool": MempoolSettings,
    "log": LogSettings,
    "storage": StorageSettings,
    "sync": SyncSettings,
    "indexer": IndexerSettings,
    "role": RoleSettings,
    "statesync": StateSyncSettings,
    "signer": SignerSettings,
    "bridge": BridgeSettings,
}


@dataclasses.dataclass(frozen=True, slots=True)
class Config:
    """A loaded, validated config. Paths are resolved against ``home`` by the properties."""

    home: Path
    node: NodeSettings = NodeSettings()
    p2p: P2PSettings = P2PSettings()
    api: ApiSettings = ApiSettings()
    metrics: MetricsSettings = MetricsSettings()
    consensus: ConsensusSettings = ConsensusSettings()
    mempool: MempoolSettings = MempoolSettings()
    log: LogSettings = LogSettings()
    storage: StorageSettings = StorageSettings()
    sync: SyncSettings = SyncSettings()
    indexer: IndexerSettings = IndexerSettings()
    role: RoleSettings = RoleSettings()
    statesync: StateSyncSettings = StateSyncSettings()
    signer: SignerSettings = SignerSettings()
    bridge: BridgeSettings = BridgeSettings()

    def path(self, relative: str) -> Path:
        return self.home / Path(relative).expanduser()

    @property
    def data_path(self) -> Path:
        return self.path(self.node.data_dir)

    @property
    def genesis_path(self) -> Path:
        return self.path(self.node.genesis_file)

    @property
    def node_key_path(self) -> Path:
        return self.path(self.node.node_key_file)

    @property
    def bridge_key_path(self) -> Path:
        return self.path(self.bridge.key_file)

    @property
    def lock_path(self) -> Path:
        return self.data_path / LOCK_FILE_NAME

    def peer_addresses(self) -> list[PeerAddress]:
        return [PeerAddress.parse(text) for text in self.p2p.peers]

    def full_node_keys(self) -> list[bytes]:
        return [parse_public_key(text) for text in self.p2p.full_nodes]

    def transport_config(self) -> TransportConfig:
        host, port = parse_host_port(self.p2p.listen)
        p2p = self.p2p
        return TransportConfig(
            listen_host=host,
            listen_port=port,
            frame_bytes_max=p2p.frame_bytes_max,
            inbound_queue_frames=p2p.inbound_queue_frames,
            inbound_queue_bytes_max=p2p.inbound_queue_bytes_max,
            outbound_queue_frames=p2p.outbound_queue_frames,
            outbound_queue_bytes_max=p2p.outbound_queue_bytes_max,
            handshake_timeout_ms=p2p.handshake_timeout_ms,
            handshake_silent_timeout_ms=p2p.handshake_silent_timeout_ms,
            idle_timeout_ms=p2p.idle_timeout_ms,
            keepalive_interval_ms=p2p.keepalive_interval_ms,
            write_timeout_ms=p2p.write_timeout_ms,
            dial_backoff_base_ms=p2p.dial_backoff_base_ms,
            dial_backoff_max_ms=p2p.dial_backoff_max_ms,
            connections_max=p2p.connections_max,
            handshakes_pending_max=p2p.handshakes_pending_max,
            handshakes_per_host_max=p2p.handshakes_per_host_max,
            handshakes_reserved_max=p2p.handshakes_reserved_max,
            penalty_threshold=p2p.penalty_threshold,
            penalty_decay_per_s=p2p.penalty_decay_per_s,
            ban_ms=p2p.ban_ms,
        )


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _dotted(section: str, key: str) -> str:
    return f"{section}.{key}" if section else key


def _all_keys() -> list[str]:
    keys = [name for name in SECTIONS if name]
    for section, cls in SECTIONS.items():
        keys.extend(_dotted(section, f.name) for f in dataclasses.fields(cls))
    return keys


def _unknown(where: str, dotted: str) -> ConfigError:
    close = difflib.get_close_matches(dotted, _all_keys(), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return ConfigError(f"{where}: unknown key {dotted}{hint}")


def _check_string(where: str, dotted: str, value: Any, meta: Mapping[str, Any]) -> str:
    if type(value) is not str:
        raise ConfigError(f"{where}: {dotted} must be a string, got {_toml_type(value)}")
    if len(value) > STRING_CHARS_MAX:
        raise ConfigError(f"{where}: {dotted} is longer than {STRING_CHARS_MAX} characters")
    choices = meta["choices"]
    if choices is not None and value not in choices:
        raise ConfigError(f"{where}: {dotted} = {value!r} must be one of {', '.join(choices)}")
    parse = meta["parse"]
    if parse is not None:
        try:
            parse(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {dotted} = {value!r}: {exc}") from None
    return value


def _check_value(where: str, dotted: str, value: Any, field: dataclasses.Field[Any]) -> Any:
    default, meta = field.default, field.metadata
    if type(default) is bool:
        if type(value) is not bool:
            raise ConfigError(f"{where}: {dotted} must be true or false, got {_toml_type(value)}")
        return value
    if type(default) is int:
        if type(value) is not int:
            raise ConfigError(f"{where}: {dotted} must be an integer, got {_toml_type(value)}")
        lo, hi = meta["lo"], meta["hi"]
        if not lo <= value <= hi:
            raise ConfigError(f"{where}: {dotted} = {value} is out of range ({lo}..{hi})")
        return value
    if type(default) is tuple:
        if type(value) is not list:
            raise ConfigError(f"{where}: {dotted} must be a list, got {_toml_type(value)}")
        if len(value) > LIST_ITEMS_MAX:
            raise ConfigError(f"{where}: {dotted} has more than {LIST_ITEMS_MAX} entries")
        items = tuple(
            _check_string(where, f"{dotted}[{i}]", item, meta) for i, item in enumerate(value)
        )
        if len(set(items)) != len(items):
            raise ConfigError(f"{where}: {dotted} lists an entry twice")
        return items
    return _check_string(where, dotted, value, meta)


def _toml_type(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}
    names.update({list: "a list", dict: "a table"})
    return names.get(type(value), type(value).__name__)


def _build_section(where: str, section: str, table: Mapping[str, Any]) -> Any:
    cls = SECTIONS[section]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        dotted = _dotted(section, key)
        if section == "" and key in SECTIONS:
            continue  # a table, handled by the caller
        if key not in fields:
            raise _unknown(where, dotted)
        values[key] = _check_value(where, dotted, value, fields[key])
    return cls(**values)


def _check_cross_fields(where: str, config: Config) -> None:
    """Rules between keys; each error names the key to change."""
    try:
        config.transport_config().validate()
    except ValueError as exc:
        raise ConfigError(f"{where}: p2p.{exc}") from None
    if config.consensus.view_timeout_cap_ms < config.consensus.view_timeout_base_ms:
        raise ConfigError(
            f"{where}: consensus.view_timeout_cap_ms must be at least view_timeout_base_ms"
        )
    listeners = {"p2p.listen": config.p2p.listen, "api.listen": config.api.listen}
    if config.metrics.enabled:
        listeners["metrics.listen"] = config.metrics.listen
    seen: dict[tuple[str, int], str] = {}
    for key, text in listeners.items():
        host_port = parse_host_port(text)
        if host_port[1] != 0 and host_port in seen:
            raise ConfigError(f"{where}: {key} = {text!r} is already used by {seen[host_port]}")
        seen[host_port] = key
    indexer = config.indexer
    if indexer.mode != "off" and indexer.backend == "postgresql" and not indexer.postgresql_dsn:
        raise ConfigError(f"{where}: indexer.backend = postgresql needs indexer.postgresql_dsn")
    if config.storage.archive and config.storage.pruning_keep_blocks != 0:
        raise ConfigError(
            f"{where}: storage.archive keeps every block: set storage.pruning_keep_blocks = 0"
        )
    if bool(config.statesync.trust_height) != bool(config.statesync.trust_hash):
        raise ConfigError(f"{where}: statesync.trust_height and trust_hash go together")
    peer_keys = [address.public_key for address in config.peer_addresses()]
    if len(set(peer_keys)) != len(peer_keys):
        raise ConfigError(f"{where}: p2p.peers lists one public key twice")


def parse_config(text: str, home: Path, where: str = "config.toml") -> Config:
    """Parse and validate config text; ``where`` names the file in error messages."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: invalid TOML: {exc}") from None
    sections: dict[str, Any] = {}
    for name, value in document.items():
        if name in SECTIONS and name:
            if type(value) is not dict:
                raise ConfigError(f"{where}: {name} must be a table ([{name}])")
            sections[name] = _build_section(where, name, value)
    # Top-level keys; anything that is neither a known key nor a table is reported here.
    sections["node"] = _build_section(where, "", document)
    config = Config(home=home, **sections)
    _check_cross_fields(where, config)
    return config


def load_config(home: Path) -> Config:
    """Read and validate ``<home>/config/config.toml``."""
    path = home / CONFIG_FILE
    try:
        size = path.stat().st_size
        if size > CONFIG_FILE_BYTES_MAX:
            raise ConfigError(f"{path}: larger than {CONFIG_FILE_BYTES_MAX} bytes")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist (run: perpbft init --home {home})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    return parse_config(text, home, str(path))


# --------------------------------------------------------------------------------------------
# Rendering (the commented template written by init)
# --------------------------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is int:
        return f"{value:_}" if abs(value) >= 10_000 else str(value)
    if type(value) is str:
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if type(value) is tuple:
        if not value:
            return "[]"
        return "[\n" + "".join(f"    {json.dumps(item)},\n" for item in value) + "]"
    raise TypeError(f"cannot render {type(value).__name__}")


def _range_note(field: dataclasses.Field[Any]) -> str:
    meta = field.metadata
    if meta["lo"] is not None:
        return f" ({meta['lo']:_}..{meta['hi']:_}; default {_toml_value(field.default)})"
    if meta["choices"] is not None:
        return f" (default {_toml_value(field.default)})"
    if type(field.default) is tuple:
        return ""
    return f" (default {_toml_value(field.default)})"


def render_config(config: Config) -> str:
    """The config file for ``config``: every key, each with a comment, defaults noted."""
    lines = [
        "# perpbft node configuration.",
        "# Paths are relative to the node's home directory. Unknown keys are errors.",
        "",
    ]
    for section, cls in SECTIONS.items():
        settings = config.node if section == "" else getattr(config, section)
        if section:
            lines += [f"# {(cls.__doc__ or '').strip()}", f"[{section}]"]
        for field in dataclasses.fields(cls):
            lines.append(f"# {field.metadata['doc']}{_range_note(field)}")
            lines.append(f"{field.name} = {_toml_value(getattr(settings, field.name))}")
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Home directory, init, lock
# --------------------------------------------------------------------------------------------


def resolve_home(cli_home: str | Path | None, environ: Mapping[str, str] | None = None) -> Path:
    """``--home`` beats ``$PERPBFT_HOME`` beats ``~/.perpbft``; an absolute path."""
    env = os.environ if environ is None else environ
    if cli_home is not None and str(cli_home) != "":
        chosen = Path(cli_home)
    elif env.get(HOME_ENV):
        chosen = Path(env[HOME_ENV])
    else:
        chosen = Path(DEFAULT_HOME)
    return chosen.expanduser().absolute()


def default_moniker() -> str:
    """The host name, cut to the moniker alphabet, or "node"."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:MONIKER_CHARS_MAX]
    return name if _MONIKER_RE.fullmatch(name) else "node"


@dataclasses.dataclass(frozen=True, slots=True)
class InitResult:
    home: Path
    config_path: Path
    node_key_path: Path
    data_path: Path
    node_id: bytes
    key_created: bool


def _write_private_text(path: Path, text: str, mode: int) -> None:
    """Write ``text`` atomically (temporary file + rename) with ``mode``."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # the umask may have narrowed the mode
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def init_home(
    home: Path,
    *,
    moniker: str | None = None,
    force: bool = False,
    config: Config | None = None,
    role: str | None = None,
) -> InitResult:
    """Create a node home: config/config.toml, config/node_key.json (0600) and data/.

    Refuses an initialised home unless ``force``; with ``force`` the config file is rewritten
    and an existing node key is KEPT: a validator key is an identity that cannot be recovered,
    so getting a new one takes deleting the old file on purpose. Refuses a home whose node is
    running (its lock is held), force or not.
    """
    if config is None:
        config = Config(home=home)
        chosen = moniker if moniker is not None else default_moniker()
        try:
            _parse_moniker(chosen)
        except ValueError as exc:
            raise ConfigError(f"moniker {chosen!r} {exc}") from None
        config = dataclasses.replace(config, node=dataclasses.replace(config.node, moniker=chosen))
    if role is not None:  # ``perpbft init --full-node``
        config = dataclasses.replace(config, role=dataclasses.replace(config.role, mode=role))
    if home.exists() and not home.is_dir():
        raise HomeError(f"{home} exists and is not a directory")
    config_path = home / CONFIG_FILE
    key_path = config.node_key_path
    existing = [p for p in (config_path, key_path) if p.exists()]
    if existing and not force:
        raise HomeError(
            f"{home} is already initialised ({existing[0]} exists); use --force to rewrite "
            "the config (the node key is kept)"
        )
    try:
        for directory in (home, config_path.parent, key_path.parent, config.data_path):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise HomeError(f"cannot create {home}: {exc.strerror}") from None
    with lock_home(config):  # a running node must not have its home rewritten under it
        key, created = _ensure_node_key(key_path)
        text = render_config(config)
        parse_config(text, home, str(config_path))  # never write a file we would not load
        try:
            _write_private_text(config_path, text, 0o644)
        except OSError as exc:
            raise HomeError(f"cannot write {config_path}: {exc.strerror}") from None
    return InitResult(
        home=home,
        config_path=config_path,
        node_key_path=key_path,
        data_path=config.data_path,
        node_id=key.public_key,
        key_created=created,
    )


def _ensure_node_key(path: Path) -> tuple[Keypair, bool]:
    try:
        if path.exists():
            return read_key_file(path), False
        key = generate_keypair()
        write_key_file(path, key)
        return key, True
    except KeyFileError as exc:
        raise HomeError(str(exc)) from None


class HomeLock:
    """An exclusive ``flock`` on ``data/LOCK``, held while a node uses the home.

    flock (not fcntl record locks) because it belongs to the open file, so the kernel releases
    it when the process dies however it dies, and two opens in one process conflict too. The
    file keeps the holder's pid for the error message; it is never deleted, since deleting a
    lock file while another process opens it would let both "hold" it.
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> HomeLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def lock_home(config: Config) -> HomeLock:
    """Take the home's lock or raise HomeLockedError naming the holder's pid."""
    path = config.lock_path
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:
        raise HomeError(
            f"{path.parent} does not exist (run: perpbft init --home {config.home})"
        ) from None
    except OSError as exc:
        raise HomeError(f"cannot open lock file {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_pid(fd)
        os.close(fd)
        raise HomeLockedError(
            f"{config.home} is in use by another perpbft node (pid {holder}, lock {path})"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    os.fsync(fd)
    return HomeLock(path, fd)


def _read_pid(fd: int) -> str:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return text if text.isdigit() else "unknown"
