"""The light client across validator-set changes: which set signs the QC of a height.

Theory of operation
-------------------
With staking, the set that certifies a height changes every epoch (``consensus/epochs.py``):
a block of epoch ``e`` is certified by the set of ``e``. The light client trusts only the
genesis file, which fixes the sets of epochs 0 and 1. For ``e >= 2`` the set of ``e`` is
record 0x23 (``state_machine/staking/records.py``) in the state after the last block of
``e - 2``, height ``h = (e - 1) * L``. That state is certified by block ``h + 1``, the first
block of ``e - 1``, whose commit QC the set of ``e - 1`` signs. So, by induction from genesis:

    trusted(0) = trusted(1) = genesis set
    trusted(e) = the value of key 0x23 || e, Merkle-proven against the root in the header of
                 block (e - 1) * L + 1, whose commit QC has > 2/3 of trusted(e - 1)'s power

Each step is one answer of ``GET /v1/proofs/epoch_sets/{e}``, read into a hand-over certificate
(header, commit QC, the record's value and Merkle proof) and checked by the one function every
hand-over goes through, :func:`node.handover.handover_failures` (state sync checks the
certificates peers send with it too): a node cannot substitute another key, another height,
another set, or a QC of a set the client does not already trust. A forged hand-over (a set
that the previous set did not certify) stops the walk with the failure in words; nothing
after it is trusted. Honest-majority assumption: more than 2/3 of each trusted set's power is
honest for as long as the client relies on that set's signatures (the usual light-client
assumption; a set that left may sign anything later, which is why the client walks forward
from genesis and never accepts a QC of an old set for a newer height).

Without staking (no ``staking`` genesis section) every height is certified by the genesis set
and no hand-over is fetched. Every node keeps the certificate of each epoch it saw hand over
(``node/handover_store.py``) and answers from it once the hand-over height's state is pruned, so
any node, not only an archive node, can answer the walk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cli.lightclient import genesis_validator_set
from consensus.types import BlockHeader, QuorumCert, genesis_block
from consensus.validators import ValidatorSet
from node.api.recordkeys import EPOCH_SET_KIND, epoch_set_key, hand_over_height
from node.handover import HandoverCertificate, HandoverChain
from state_machine.codec import DecodeError
from state_machine.genesis import Genesis
from state_machine.merkle_state import StateProof

# A set proof per epoch is fetched; a client that is this far behind should start from a
# checkpoint it trusts instead (not built yet), rather than make a node answer for hours.
MAX_HAND_OVERS = 100_000


def genesis_epoch_length(genesis: Genesis) -> int:
    """Blocks per epoch from the trusted genesis: its optional ``staking`` section (absent:
    one set for ever, 0)."""
    staking = getattr(genesis, "staking", None)
    length = 0 if staking is None else getattr(staking, "epoch_length_blocks", 0)
    return int(length)


class TrustedSets:
    """The validator sets this client has verified, by epoch, from genesis on."""

    def __init__(self, genesis: Genesis, epoch_length_blocks: int | None = None) -> None:
        self.genesis = genesis
        length = epoch_length_blocks
        if length is None:
            length = genesis_epoch_length(genesis)
        genesis_hash = genesis_block(genesis.genesis_time_ms).block_hash()
        self.chain = HandoverChain(
            genesis_validator_set(genesis), length, genesis.chain_id, genesis_hash
        )
        self.epoch_length_blocks = length

    @property
    def sets(self) -> dict[int, ValidatorSet]:
        return self.chain.sets

    def epoch_of(self, height: int) -> int:
        return self.chain.epoch_of(height)

    def latest_epoch(self) -> int:
        return self.chain.latest_epoch()

    def for_height(self, height: int) -> ValidatorSet | None:
        """The trusted set that certifies ``height``, None if not reached yet."""
        return self.chain.for_height(height)

    def accept(self, epoch: int, body: Any) -> list[str]:
        """Check the hand-over answer of ``epoch`` (the next one to trust) and, if it holds,
        trust the set it proves. Returns the failures (empty: trusted)."""
        if epoch != self.latest_epoch() + 1:
            raise ValueError(f"hand-overs are followed in order; next is {self.latest_epoch() + 1}")
        cert, failures = certificate_from_answer(body, epoch, self.epoch_length_blocks)
        if cert is None or failures:
            return failures
        return self.chain.extend(cert)


def _hex(value: Any, what: str, failures: list[str]) -> bytes | None:
    if not isinstance(value, str):
        failures.append(f"{what} is missing or not a hex string")
        return None
    try:
        return bytes.fromhex(value)
    except ValueError:
        failures.append(f"{what} is not valid hex")
        return None


def _entry_of(body: dict[str, Any], key: bytes, failures: list[str]) -> tuple[bytes, bytes] | None:
    """(value, proof bytes) of the answer's one entry, which must be ``key``'s."""
    entries = body.get("entries")
    if not isinstance(entries, list) or len(entries) != 1 or not isinstance(entries[0], dict):
        failures.append("answer does not hold exactly one entry")
        return None
    entry = entries[0]
    if entry.get("key") != key.hex():
        failures.append(f"entry key {entry.get('key')!r} is not {key.hex()} (another record)")
        return None
    if entry.get("value") is None:
        failures.append("the answer proves no set: the record is absent")
        return None
    value = _hex(entry.get("value"), "entry value", failures)
    proof = _hex(entry.get("proof"), "entry proof", failures)
    return None if value is None or proof is None else (value, proof)


def certificate_from_answer(
    body: Any, epoch: int, epoch_length_blocks: int
) -> tuple[HandoverCertificate | None, list[str]]:
    """The hand-over certificate an answer of ``/v1/proofs/epoch_sets/{epoch}`` holds (its
    wire bytes, never the JSON fields beside them), and the answer's inconsistencies."""
    failures: list[str] = []
    if not isinstance(body, dict):
        return None, ["answer is not a JSON object"]
    height = hand_over_height(epoch, epoch_length_blocks)
    if body.get("kind") != EPOCH_SET_KIND:
        failures.append(f"answer is for a record of kind {body.get('kind')!r}, not epoch_set")
    if body.get("height") != height:
        failures.append(f"answer is the state at height {body.get('height')}, not {height}")
    entry = _entry_of(body, epoch_set_key(epoch), failures)
    cert = body.get("certified_by")
    cert = cert if isinstance(cert, dict) else {}
    header_wire = _hex((cert.get("header") or {}).get("wire"), "header wire", failures)
    qc_wire = _hex((cert.get("commit_qc") or {}).get("wire"), "commit QC wire", failures)
    if entry is None or header_wire is None or qc_wire is None:
        return None, failures
    try:
        header = BlockHeader.from_wire(header_wire)
        certificate = HandoverCertificate(
            epoch, header, QuorumCert.from_wire(qc_wire), entry[0], StateProof.from_wire(entry[1])
        )
    except DecodeError as exc:
        return None, [*failures, f"certificate does not decode: {exc}"]
    if body.get("state_root") != header.state_root.hex():
        failures.append("answer's state_root is not the one its certifying header carries")
    return certificate, failures


def follow_hand_overs(trusted: TrustedSets, height: int, fetch: Callable[[int], Any]) -> list[str]:
    """Walk the hand-overs up to the set that certifies the state at ``height`` (its QC is
    in block ``height + 1``); ``fetch(e)`` returns the node's answer for epoch ``e``. Returns
    the failures (empty: ``trusted.for_height(height + 1)`` is now known)."""
    target = trusted.epoch_of(height + 1)
    if target - trusted.latest_epoch() > MAX_HAND_OVERS:
        return [f"{target} epochs to follow: more than {MAX_HAND_OVERS} hand-overs"]
    for epoch in range(trusted.latest_epoch() + 1, target + 1):
        failures = trusted.accept(epoch, fetch(epoch))
        if failures:
            where = hand_over_height(epoch, trusted.epoch_length_blocks)
            prefix = f"hand-over to epoch {epoch} (state at height {where})"
            return [f"{prefix}: {failure}" for failure in failures]
    return []
