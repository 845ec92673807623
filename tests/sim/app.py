"""A small deterministic application for the simulator: a key-value store with a hash-chained
state root. Transactions are ``b"key=value"``; anything else is ignored (but still hashed)."""

from __future__ import annotations

from consensus.types import Block
from state_machine.codec import encode
from state_machine.crypto import sha256

GENESIS_ROOT = sha256(b"perpbft-sim-kv-genesis")


class KVApp:
    """State after the last executed block; ``root`` chains every block's effect."""

    def __init__(self) -> None:
        self.kv: dict[bytes, bytes] = {}
        self.root = GENESIS_ROOT
        self.height = 0

    def copy(self) -> KVApp:
        other = KVApp()
        other.kv = dict(self.kv)
        other.root = self.root
        other.height = self.height
        return other

    def apply(self, block: Block) -> bytes:
        header = block.header
        if header.height != self.height + 1:
            raise RuntimeError(f"KVApp: executing {header.height} after {self.height}")
        for tx in block.payload:
            key, sep, value = tx.partition(b"=")
            if sep:
                self.kv[key] = value
        body = encode([header.height, header.timestamp_ms, header.proposer, header.payload_root])
        self.root = sha256(self.root + body)
        self.height = header.height
        return self.root


def check_payload(block: Block) -> bool:
    """The simulator's application check: every transaction is short and ``key=value``."""
    return all(len(tx) <= 64 and b"=" in tx for tx in block.payload)
