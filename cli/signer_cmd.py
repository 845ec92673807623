"""``perpbft signer``: run the remote signer process for a validator key (node/signer.py)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from cli.errors import EXIT_OK, CliError
from node.keys import KeyFileError, read_key_file
from node.signer import SignerCore, TlsServer, parse_signer_address, serve
from p2p.tls import make_tls_contexts


def register(sub: Any) -> None:
    signer = sub.add_parser(
        "signer", help="hold the validator key and sign consensus messages for a node"
    )
    signer.add_argument("--key", required=True, type=Path, help="validator key file")
    signer.add_argument("--chain-id", required=True, help="the only chain this signer signs for")
    signer.add_argument(
        "--listen",
        required=True,
        help="unix:///path/to/signer.sock, or tls://host:port (mutual TLS, needs --allow-node)",
    )
    signer.add_argument(
        "--allow-node",
        action="append",
        default=[],
        metavar="HEX",
        help="public key (hex) of a node allowed to connect over TLS; repeat for each",
    )
    signer.add_argument(
        "--state",
        required=True,
        type=Path,
        help="the signer's safety record (last signed view per phase); created if absent",
    )
    signer.set_defaults(func=cmd_signer)


def cmd_signer(args: argparse.Namespace) -> int:
    try:
        path = parse_signer_address(args.listen)
        key = read_key_file(args.key)
        core = SignerCore(key, args.chain_id, args.state)
        tls = tls_server(key.seed, args.allow_node) if path.path is None else None
    except (ValueError, KeyFileError, OSError) as exc:
        raise CliError(str(exc)) from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"signer {key.public_key.hex()} listening on {path}", file=sys.stderr, flush=True)
    try:
        serve(core, path, stop, tls)
    except OSError as exc:
        raise CliError(f"cannot listen on {path}: {exc}") from None
    return EXIT_OK


def tls_server(seed: bytes, allowed_hex: list[str]) -> TlsServer:
    """The signer presents the validator key and accepts only the listed node keys."""
    if not allowed_hex:
        raise ValueError("a tls:// listener needs at least one --allow-node KEY")
    allowed = frozenset(bytes.fromhex(k) for k in allowed_hex)
    if any(len(k) != 32 for k in allowed):
        raise ValueError("--allow-node takes a 64-hex-character public key")
    return TlsServer(make_tls_contexts(seed).server, allowed)
