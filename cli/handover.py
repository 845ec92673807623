"""The light client across validator-set changes: which set signs the QC of a height.

Theory of operation
-------------------
With staking, the set that certifies a height changes every epoch (``consensus/epochs.py``):
a block of epoch ``e`` is certified by the set of ``e``. The light client trusts only the
genesis file, which fixes the sets of epochs 0 and 1. For ``e >= 2`` the set of ``e`` is
record 0x23 (``state_machine/staking/records.py``) in the state after the last block of
``e - 2``, height ``h`` (cut by the epoch schedule trusted so far). That state is certified by
block ``h + 1``, the first block of ``e - 1``, whose commit QC the set of ``e - 1`` signs.
So, by induction from genesis:

    trusted(0) = trusted(1) = genesis set
    trusted(e) = the value of key 0x23 || e, Merkle-proven against the root in the header of
                 block h + 1, whose commit QC has > 2/3 of trusted(e - 1)'s power

Each step is one answer of ``GET /v1/proofs/epoch_sets/{e}``, read into a hand-over certificate
(header, commit QC, the set's and the schedule's values and Merkle proofs) and checked by the
one function every hand-over goes through, :func:`node.handover.handover_failures` (state sync
checks the certificates peers send with it too): a node cannot substitute another key, another
height, another set, or a QC of a set the client does not already trust. A forged hand-over (a
set that the previous set did not certify) stops the walk with the failure in words; nothing
after it is trusted. Honest-majority assumption: more than 2/3 of each trusted set's power is
honest for as long as the client relies on that set's signatures (the usual light-client
assumption; a set that left may sign anything later, which is why the client walks forward from
genesis and never accepts a QC of an old set for a newer height).

Epoch lengths change by governance (``SetEpochLength``): the schedule is record 0x2f in the same
state as the set (absent: the genesis length for ever), proven in the same answer. A change
only ever starts at an epoch whose set is not handed over yet, so the proven schedule must cut
every epoch the client already trusts as before (checked); it then says where epoch ``e``
ends, hence the height of the next hand-over: ``h(e + 1)`` is the last block of ``e - 1``.
The walk re-asks which epoch the target height is in after each step, with the schedule
learned so far.

Without staking (no ``staking`` genesis section) every height is certified by the genesis set
and no hand-over is fetched. Every node keeps the certificate of each epoch it saw hand over
(``node/handover_store.py``) and answers from it once the hand-over height's state is pruned, so
any node, not only an archive node, can answer the walk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cli.lightclient import genesis_validator_set, hex_field
from consensus.epochs import EpochSchedule
from consensus.types import BlockHeader, QuorumCert, genesis_block
from consensus.validators import ValidatorSet
from node.api.recordkeys import EPOCH_SET_KIND, epoch_set_key
from node.handover import HandoverCertificate, HandoverChain
from state_machine.codec import DecodeError
from state_machine.genesis import Genesis
from state_machine.merkle_state import StateProof
from state_machine.staking.records import SCHEDULE_KEY

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
    """The validator sets this client has verified, by epoch, from genesis on, and the epoch
    schedule as far as it is proven (it cuts every trusted epoch's heights right)."""

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

    @property
    def schedule(self) -> EpochSchedule:
        """The epoch schedule proven with the latest trusted set."""
        return self.chain.schedule

    def hand_over_height(self, epoch: int) -> int:
        return self.chain.hand_over_height(epoch)

    def latest_epoch(self) -> int:
        return self.chain.latest_epoch()

    def for_height(self, height: int) -> ValidatorSet | None:
        """The trusted set that certifies ``height``, None if not reached yet."""
        return self.chain.for_height(height)

    def accept(self, epoch: int, body: Any) -> list[str]:
        """Check the hand-over answer of ``epoch`` (the next one to trust) and, if it holds,
        trust the set it proves and the epoch schedule proven with it. Returns the failures
        (empty: trusted)."""
        if epoch != self.latest_epoch() + 1:
            raise ValueError(f"hand-overs are followed in order; next is {self.latest_epoch() + 1}")
        height = self.hand_over_height(epoch)
        cert, failures = certificate_from_answer(body, epoch, height)
        if cert is None or failures:
            return failures
        return self.chain.extend(cert)


def _entry_proof(
    entry: Any, key: bytes, failures: list[str]
) -> tuple[bytes | None, bytes] | None:
    """(value or None if absent, proof bytes) of ``entry``, which must be ``key``'s."""
    if not isinstance(entry, dict) or entry.get("key") != key.hex():
        got = entry.get("key") if isinstance(entry, dict) else entry
        failures.append(f"entry key {got!r} is not {key.hex()} (another record)")
        return None
    proof = hex_field(entry.get("proof"), f"proof of {key.hex()}", failures)
    raw = entry.get("value")
    value = None if raw is None else hex_field(raw, f"value of {key.hex()}", failures)
    if proof is None or (raw is not None and value is None):
        return None
    return value, proof


def _entries_of(
    body: dict[str, Any], epoch: int, failures: list[str]
) -> tuple[tuple[bytes, bytes], tuple[bytes | None, bytes]] | None:
    """The answer's two entries: the set of ``epoch`` (present) and the epoch schedule
    (its value, or None with a proof of its absence), in that order."""
    entries = body.get("entries")
    if not isinstance(entries, list) or len(entries) != 2:
        failures.append(
            f"answer does not hold exactly two entries: the set (key {epoch_set_key(epoch).hex()})"
            f" and the epoch schedule (key {SCHEDULE_KEY.hex()}, its value or its absence)"
        )
        return None
    validators = _entry_proof(entries[0], epoch_set_key(epoch), failures)
    schedule = _entry_proof(entries[1], SCHEDULE_KEY, failures)
    if validators is None or schedule is None:
        return None
    value, proof = validators
    if value is None:
        failures.append("the answer proves no set: the record is absent")
        return None
    return (value, proof), schedule


def certificate_from_answer(
    body: Any, epoch: int, height: int
) -> tuple[HandoverCertificate | None, list[str]]:
    """The hand-over certificate an answer of ``/v1/proofs/epoch_sets/{epoch}`` holds (its
    wire bytes, never the JSON fields beside them), and the answer's inconsistencies;
    ``height`` is the hand-over height the client's trusted schedule gives."""
    failures: list[str] = []
    if not isinstance(body, dict):
        return None, ["answer is not a JSON object"]
    if body.get("kind") != EPOCH_SET_KIND:
        failures.append(f"answer is for a record of kind {body.get('kind')!r}, not epoch_set")
    if body.get("height") != height:
        failures.append(f"answer is the state at height {body.get('height')}, not {height}")
    entries = _entries_of(body, epoch, failures)
    cert = body.get("certified_by")
    cert = cert if isinstance(cert, dict) else {}
    header_wire = hex_field((cert.get("header") or {}).get("wire"), "header wire", failures)
    qc_wire = hex_field((cert.get("commit_qc") or {}).get("wire"), "commit QC wire", failures)
    if entries is None or header_wire is None or qc_wire is None:
        return None, failures
    (value, proof), (schedule_value, schedule_proof) = entries
    try:
        header = BlockHeader.from_wire(header_wire)
        certificate = HandoverCertificate(
            epoch,
            header,
            QuorumCert.from_wire(qc_wire),
            value,
            StateProof.from_wire(proof),
            schedule_value,
            StateProof.from_wire(schedule_proof),
        )
    except DecodeError as exc:
        return None, [*failures, f"certificate does not decode: {exc}"]
    if body.get("state_root") != header.state_root.hex():
        failures.append("answer's state_root is not the one its certifying header carries")
    return certificate, failures


def follow_hand_overs(trusted: TrustedSets, height: int, fetch: Callable[[int], Any]) -> list[str]:
    """Walk the hand-overs up to the set that certifies the state at ``height`` (its QC is
    in block ``height + 1``); ``fetch(e)`` returns the node's answer for epoch ``e``. Returns
    the failures (empty: ``trusted.for_height(height + 1)`` is now known). The target epoch
    is asked again after each step: a proven schedule change moves it."""
    steps = 0
    while trusted.epoch_of(height + 1) > trusted.latest_epoch():
        if trusted.epoch_of(height + 1) - trusted.latest_epoch() > MAX_HAND_OVERS - steps:
            target = trusted.epoch_of(height + 1)
            return [f"{target} epochs to follow: more than {MAX_HAND_OVERS} hand-overs"]
        epoch = trusted.latest_epoch() + 1
        where = trusted.hand_over_height(epoch)
        failures = trusted.accept(epoch, fetch(epoch))
        steps += 1
        if failures:
            prefix = f"hand-over to epoch {epoch} (state at height {where})"
            return [f"{prefix}: {failure}" for failure in failures]
    return []
