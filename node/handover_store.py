"""The node's hand-over certificates on disk: ``DATA_DIR/handovers.lmdb``, one per epoch.

Theory of operation
-------------------
A certificate (``node/handover.py``) proves the set of an epoch from the set before it. The
proof needs the state at the hand-over height, which an ordinary node keeps for only
``[storage] proof_history_heights`` heights; the certificate, once built, needs nothing else.
So every node builds the certificate of each epoch while it still has that state
(``node/handover_run.py``) and keeps it here, where it serves the light client
(``GET /v1/proofs/epoch_sets/{e}``) and state-syncing peers (p2p) for ever.

This is node-local data, not state: nothing here is under the state root, and a certificate is
checked by whoever reads it, so the file needs no recovery beyond LMDB's own. Its own LMDB
environment (not the chain store's) keeps the chain's one-transaction-per-block commit as it is:
a certificate is written in its own small transaction after the block that completes it, and
the write is idempotent (an epoch already stored keeps its first certificate: two valid ones
differ at most in which members signed). A crash between the block's commit and this write is
made good at the next start (:meth:`node.handover_run.HandoverKeeper.backfill`).

Size: one record per epoch of a few KB (a header, one signature per member, one Merkle path of
about 3 KB and the set): 10,000 epochs are tens of MB. Values are sealed like the chain store's
(8-byte SHA-256 prefix), so damage is a clear error, not a certificate that merely fails to
verify.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lmdb

from node.handover import HandoverCertificate
from node.storage import StoreCorruptError, StoreError, seal, unseal
from state_machine.codec import DecodeError

HANDOVERS_DIRNAME = "handovers.lmdb"
MAP_SIZE_BYTES = 8 * 1024**3  # address space only; the file grows as certificates are added


def epoch_key(epoch: int) -> bytes:
    return epoch.to_bytes(8, "big")


class HandoverStore:
    """Certificates by epoch (see the module docstring). Thread-safe for one writer."""

    def __init__(self, env: Any) -> None:
        self._env = env

    @classmethod
    def open(cls, data_dir: Path) -> HandoverStore:
        path = Path(data_dir) / HANDOVERS_DIRNAME
        try:
            path.mkdir(parents=True, exist_ok=True)
            env = lmdb.open(
                str(path),
                map_size=MAP_SIZE_BYTES,
                max_dbs=0,
                subdir=True,
                sync=True,
                metasync=True,
                lock=True,
                readahead=False,
            )
        except (lmdb.Error, OSError) as exc:
            raise StoreError(f"cannot open the hand-over certificates at {path}: {exc}") from None
        return cls(env)

    def close(self) -> None:
        self._env.close()

    def put_many(self, certs: Sequence[HandoverCertificate]) -> int:
        """Store the certificates of epochs not stored yet, in one transaction; returns how
        many were new."""
        new = 0
        with self._env.begin(write=True) as txn:
            for cert in certs:
                if txn.put(epoch_key(cert.epoch), seal(cert.to_wire()), overwrite=False):
                    new += 1
        return new

    def get(self, epoch: int) -> HandoverCertificate | None:
        with self._env.begin() as txn:
            raw = txn.get(epoch_key(epoch))
        return None if raw is None else _decode(epoch, bytes(raw))

    def has(self, epoch: int) -> bool:
        with self._env.begin() as txn:
            return txn.get(epoch_key(epoch)) is not None

    def raw_run(self, from_epoch: int, count_max: int, bytes_max: int) -> list[bytes]:
        """The wire bytes of the certificates of ``from_epoch``, ``from_epoch + 1``, ... (a
        run without gaps), at most ``count_max`` and, past the first, ``bytes_max`` bytes in all
        (for serving: the reader checks each, so they are not decoded here)."""
        out: list[bytes] = []
        size = 0
        with self._env.begin() as txn:
            for epoch in range(from_epoch, from_epoch + count_max):
                raw = txn.get(epoch_key(epoch))
                if raw is None:
                    break
                wire = unseal(bytes(raw), f"hand-over certificate {epoch}")
                if out and size + len(wire) > bytes_max:
                    break  # the first always goes: a small budget slows a peer, never stops it
                out.append(wire)
                size += len(wire)
        return out

    def epochs(self) -> tuple[int, int, int]:
        """(count, lowest epoch, highest epoch) stored; (0, 0, 0) when none is."""
        with self._env.begin() as txn:
            count: int = txn.stat()["entries"]
            if count == 0:
                return 0, 0, 0
            cursor = txn.cursor()
            cursor.first()
            low = int.from_bytes(cursor.key(), "big")
            cursor.last()
            high = int.from_bytes(cursor.key(), "big")
        return count, low, high


def _decode(epoch: int, raw: bytes) -> HandoverCertificate:
    what = f"hand-over certificate {epoch}"
    try:
        cert = HandoverCertificate.from_wire(unseal(raw, what))
    except DecodeError as exc:
        raise StoreCorruptError(f"{what} does not decode: {exc}") from None
    if cert.epoch != epoch:
        raise StoreCorruptError(f"{what} is stored as epoch {cert.epoch}")
    return cert
