"""The mempool: admitted, signature-checked transactions waiting for a block.

Theory of operation
-------------------
Admission runs in two steps so the expensive part can leave the event loop:

1. :meth:`Mempool.prepare` (cheap, on the loop): size limit, strict decode, version, chain id,
   expiry, nonce window against the committed nonces plus the ones pending here, duplicates by
   tx id. It returns a :class:`Prepared` or a rejection code.
2. The caller gets each ``Prepared``'s signature verdict (the node takes it from its decode
   cache or verifies the batch on the signature pool, ``node.sigpool``), then
   :meth:`Mempool.insert` admits the good ones subject to the global count/byte limits and the
   per-signer cap.

The mempool keeps no signature verdicts. The node's decode cache
(:class:`node.chain.DecodeCache`) holds them, keyed by the raw transaction bytes, which include
the signature. A tx id is the hash of the signing bytes only, so a copy of a transaction with
another signature has the same id; a verdict cached by id would vouch for that copy too.

Proposals take transactions round robin across signers in arrival order, so a flood from one
signer (already bounded by the per-signer cap) cannot starve the others. Committed and expired
transactions are removed. All limits are explicit; a full mempool rejects with ``mempool_full``.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from enum import StrEnum

from state_machine.codec import DecodeError
from state_machine.nonces import NonceCheck, check_nonce_window
from state_machine.tx import MAX_TX_BYTES, TX_DOMAIN_TAG, TX_VERSION, Transaction


class Admit(StrEnum):
    OK = "ok"
    DUPLICATE = "duplicate"
    OVERSIZE = "oversize"
    MALFORMED = "malformed"
    WRONG_CHAIN = "wrong_chain"
    EXPIRED = "expired"
    NONCE_USED = "nonce_used"
    NONCE_TOO_LOW = "nonce_too_low"
    NONCE_OUT_OF_WINDOW = "nonce_out_of_window"
    BAD_SIGNATURE = "bad_signature"
    MEMPOOL_FULL = "mempool_full"
    SIGNER_LIMIT = "signer_limit"


NONCE_ADMIT = {
    NonceCheck.USED: Admit.NONCE_USED,
    NonceCheck.TOO_LOW: Admit.NONCE_TOO_LOW,
    NonceCheck.OUT_OF_WINDOW: Admit.NONCE_OUT_OF_WINDOW,
}


@dataclasses.dataclass(frozen=True, slots=True)
class MempoolLimits:
    txs_max: int = 50_000
    bytes_max: int = 64 * 1024 * 1024
    per_signer_max: int = 1_000
    tx_bytes_max: int = MAX_TX_BYTES

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"mempool limit {field.name} must be a positive integer")


@dataclasses.dataclass(frozen=True, slots=True)
class Prepared:
    tx: Transaction
    raw: bytes
    tx_id: bytes
    signing_bytes: bytes


@dataclasses.dataclass(slots=True)
class Entry:
    tx: Transaction
    raw: bytes
    tx_id: bytes
    admitted_at_ms: int


# (signer, nonce, now_ms) -> verdict of the committed state's nonce tracker
CommittedNonceCheck = Callable[[bytes, int, int], NonceCheck]


def signing_bytes_of_wire(raw: bytes, tx: Transaction) -> bytes:
    """``tx.signing_bytes()`` without encoding the transaction again.

    ``Transaction.from_wire`` accepts only the canonical encoding, so ``raw`` is exactly the
    msgpack of ``[version, chain_id, signer, nonce, expires_at_ms, actions, signature]``: a
    one-byte array header (0x97), the six unsigned fields, then the 64-byte signature as
    bin 8 (0xc4 0x40 + 64 bytes). The signed body is the msgpack of the six unsigned fields,
    i.e. header 0x96 and the same field bytes. Anything else falls back to encoding.
    """
    if len(raw) > 67 and raw[0] == 0x97 and raw[-66:-64] == b"\xc4\x40":
        return TX_DOMAIN_TAG + tx.chain_id.encode("ascii") + b"\x00\x96" + raw[1:-66]
    return tx.signing_bytes()


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise AssertionError(msg)


class Mempool:
    def __init__(
        self,
        chain_id: str,
        committed_nonce_check: CommittedNonceCheck,
        limits: MempoolLimits | None = None,
    ) -> None:
        self.chain_id = chain_id
        self.limits = limits or MempoolLimits()
        self._committed_nonce_check = committed_nonce_check
        self._entries: dict[bytes, Entry] = {}
        self._by_signer: OrderedDict[bytes, deque[bytes]] = OrderedDict()
        self._pending_nonces: dict[bytes, set[int]] = {}
        self._bytes = 0
        self.rejected: dict[str, int] = {}
        self.admitted_total = 0

    # ---- admission ---------------------------------------------------------------------------

    def prepare(
        self, raw: bytes, now_ms: int, decoded: Transaction | None = None
    ) -> Prepared | Admit:
        """Cheap checks; returns what still needs a signature check, or the rejection.
        ``decoded`` is ``Transaction.from_wire(raw)`` when the caller already has it (the API
        decodes a submission to rate-limit its signer), so it is not decoded twice."""
        if len(raw) > self.limits.tx_bytes_max:
            return self._reject(Admit.OVERSIZE)
        try:
            tx = Transaction.from_wire(raw) if decoded is None else decoded
        except DecodeError:
            return self._reject(Admit.MALFORMED)
        _check(tx.version == TX_VERSION, "decoder admitted an unknown version")
        if tx.chain_id != self.chain_id:
            return self._reject(Admit.WRONG_CHAIN)
        if tx.expires_at_ms and tx.expires_at_ms <= now_ms:
            return self._reject(Admit.EXPIRED)
        signing = signing_bytes_of_wire(raw, tx)
        prepared = Prepared(tx, bytes(raw), tx.tx_id_from(signing), signing)
        if prepared.tx_id in self._entries:
            return self._reject(Admit.DUPLICATE)
        nonce_verdict = self._nonce_verdict(tx.signer, tx.nonce, now_ms)
        if nonce_verdict is not Admit.OK:
            return self._reject(nonce_verdict)
        return prepared

    def _nonce_verdict(self, signer: bytes, nonce: int, now_ms: int) -> Admit:
        if not check_nonce_window(nonce, now_ms):
            return Admit.NONCE_OUT_OF_WINDOW
        if nonce in self._pending_nonces.get(signer, ()):
            return Admit.NONCE_USED
        committed = self._committed_nonce_check(signer, nonce, now_ms)
        return NONCE_ADMIT.get(committed, Admit.OK)

    def signature_items(self, batch: Iterable[Prepared]) -> list[tuple[bytes, bytes, bytes]]:
        return [(p.tx.signer, p.signing_bytes, p.tx.signature) for p in batch]

    def insert(self, prepared: Prepared, signature_ok: bool, now_ms: int) -> Admit:
        """Admit a prepared transaction given its signature verdict. Re-checks what may have
        changed while the signature was being verified (duplicates, nonces, capacity)."""
        if not signature_ok:
            return self._reject(Admit.BAD_SIGNATURE)
        if prepared.tx_id in self._entries:
            return self._reject(Admit.DUPLICATE)
        tx = prepared.tx
        nonce_verdict = self._nonce_verdict(tx.signer, tx.nonce, now_ms)
        if nonce_verdict is not Admit.OK:
            return self._reject(nonce_verdict)
        queue = self._by_signer.get(tx.signer)
        if queue is not None and len(queue) >= self.limits.per_signer_max:
            return self._reject(Admit.SIGNER_LIMIT)
        if (
            len(self._entries) >= self.limits.txs_max
            or self._bytes + len(prepared.raw) > self.limits.bytes_max
        ):
            return self._reject(Admit.MEMPOOL_FULL)
        self._add(Entry(tx, prepared.raw, prepared.tx_id, now_ms))
        self.admitted_total += 1
        return Admit.OK

    def _add(self, entry: Entry) -> None:
        self._entries[entry.tx_id] = entry
        self._by_signer.setdefault(entry.tx.signer, deque()).append(entry.tx_id)
        self._pending_nonces.setdefault(entry.tx.signer, set()).add(entry.tx.nonce)
        self._bytes += len(entry.raw)

    def _reject(self, code: Admit) -> Admit:
        self.rejected[code.value] = self.rejected.get(code.value, 0) + 1
        return code

    # ---- proposals and removal ---------------------------------------------------------------

    def take_batch(
        self, txs_max: int, bytes_max: int, actions_max: int | None = None
    ) -> list[Entry]:
        """Up to ``txs_max`` transactions, ``bytes_max`` bytes and ``actions_max`` actions,
        round robin across signers in arrival order. The transactions stay in the mempool
        until committed or expired."""
        out: list[Entry] = []
        used_bytes = 0
        actions_left = actions_max if actions_max is not None else 2**62
        cursors = {signer: 0 for signer in self._by_signer}
        active = list(self._by_signer)
        while active and len(out) < txs_max:
            still = []
            for signer in active:
                queue = self._by_signer[signer]
                i = cursors[signer]
                if i >= len(queue):
                    continue
                entry = self._entries[queue[i]]
                if used_bytes + len(entry.raw) > bytes_max:
                    return out
                actions_left -= len(entry.tx.actions)
                if actions_left < 0 and out:
                    return out
                out.append(entry)
                used_bytes += len(entry.raw)
                cursors[signer] = i + 1
                if len(out) >= txs_max:
                    return out
                still.append(signer)
            active = still
        return out

    def remove(self, tx_ids: Iterable[bytes]) -> int:
        removed = 0
        touched: set[bytes] = set()
        for tx_id in tx_ids:
            entry = self._entries.pop(tx_id, None)
            if entry is None:
                continue
            removed += 1
            self._bytes -= len(entry.raw)
            signer = entry.tx.signer
            touched.add(signer)
            nonces = self._pending_nonces.get(signer)
            if nonces is not None:
                nonces.discard(entry.tx.nonce)
        for signer in sorted(touched):
            queue = self._by_signer.get(signer)
            if queue is None:
                continue
            kept = deque(t for t in queue if t in self._entries)
            if kept:
                self._by_signer[signer] = kept
            else:
                del self._by_signer[signer]
                self._pending_nonces.pop(signer, None)
        _check(self._bytes >= 0, "mempool byte count went negative")
        return removed

    def remove_stale(self, now_ms: int) -> int:
        """Drop expired transactions and those whose nonce the committed state now refuses."""
        stale = [
            e.tx_id
            for e in self._entries.values()
            if (e.tx.expires_at_ms and e.tx.expires_at_ms <= now_ms)
            or self._committed_nonce_check(e.tx.signer, e.tx.nonce, now_ms) is not NonceCheck.OK
        ]
        return self.remove(stale)

    # ---- introspection -----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, tx_id: bytes) -> bool:
        return tx_id in self._entries

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, tx_id: bytes) -> Entry | None:
        return self._entries.get(tx_id)

    def signer_count(self, signer: bytes) -> int:
        queue = self._by_signer.get(signer)
        return 0 if queue is None else len(queue)
