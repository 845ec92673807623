"""Hand-over certificates: the proof, from genesis, of which validator set certifies an epoch.

Theory of operation
-------------------
With staking, a block of epoch ``e`` is certified by the set of ``e`` (``consensus/epochs.py``).
Genesis fixes the sets of epochs 0 and 1. For ``e >= 2`` the set of ``e`` is record 0x23 || e in
the state after height ``h``, the last block of epoch ``e - 2``; that state's root is carried by
the header of block ``h + 1``, the first block of ``e - 1``, whose commit QC the set of ``e - 1``
signs. Epoch lengths change by governance (``SetEpochLength``): the epoch schedule is record 0x2f
in the same state (absent: the genesis length for ever), and ``h`` is cut by the schedule trusted
so far. A :class:`HandoverCertificate` for ``e`` is exactly: the header of block ``h + 1``, its
commit QC, the Merkle proof of 0x23 || e with its value, and the Merkle proof of 0x2f with its
value or of its absence, both against the root that header carries. So, by induction from genesis:

    trusted(0) = trusted(1) = the genesis set; schedule(1) = the genesis length for ever
    trusted(e) = the set a certificate for e proves, iff its QC has more than 2/3 of
                 trusted(e - 1)'s power (:func:`handover_failures`)
    schedule(e) = the schedule it proves, iff it cuts every epoch through e - 1 as
                  schedule(e - 1) does (a change only ever starts at an epoch whose set is
                  not handed over yet, ``consensus/epochs.py``)

:func:`handover_failures` is the one check of that step. The light client (``cli/handover.py``,
from the answers of ``GET /v1/proofs/epoch_sets/{e}``) and state sync (``node/statesync_run.py``,
from certificates peers send) both go through it, with :class:`HandoverChain` holding the sets
trusted so far. Nothing in a certificate is trusted but what this check derives from the sets
already trusted: a node cannot substitute another epoch, another height, another set, or a QC of
a set not trusted yet. Honest-majority assumption: more than 2/3 of each set's power is honest
while anyone relies on its signatures (a set that left may sign anything later, which is why the
walk goes forward from genesis and never accepts an old set's QC for a newer height).

A certificate is a few KB (a header, one signature per member, one Merkle path and the set);
every node builds and keeps one per epoch (``node/handover_store.py``), so hand-overs stay
provable after the node pruned the state of the hand-over heights. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any, ClassVar

from consensus.epochs import MAX_KNOWN_EPOCHS, EpochSchedule, EpochSets
from consensus.quorum import qc_valid
from consensus.types import COMMIT, BlockHeader, QuorumCert
from consensus.validators import ValidatorSet
from node.api.recordkeys import epoch_set_key, hand_over_height
from state_machine.codec import U64, Bytes, DecodeError, Optional, Struct, Wire, decode_raw, wire
from state_machine.merkle_state import StateProof, verify_proof
from state_machine.staking.records import SCHEDULE_KEY

# An encoded set of at most MAX_VALIDATORS members: [[32-byte key, power], ...] (~45 B each).
SET_VALUE_BYTES_MAX = 64 * 1024
# An encoded schedule of at most MAX_SCHEDULE_SEGMENTS segments of three integers.
SCHEDULE_VALUE_BYTES_MAX = 4 * 1024
# Bounds one decode: header, a QC of up to 256 signatures, a proof and the set value.
CERTIFICATE_BYTES_MAX = 512 * 1024
# Trusted sets a :class:`HandoverChain` keeps (the latest ones: a check needs the previous).
SETS_KEPT = MAX_KNOWN_EPOCHS


@wire
class HandoverCertificate(Wire):
    """The proof that the set of ``epoch`` follows from the set of ``epoch - 1`` (module doc)."""

    MAX_BYTES: ClassVar[int] = CERTIFICATE_BYTES_MAX
    WIRE = (
        ("epoch", U64),
        ("header", Struct(BlockHeader)),  # block (epoch - 1) * L + 1
        ("commit_qc", Struct(QuorumCert)),  # signed by the set of epoch - 1
        ("value", Bytes(max_len=SET_VALUE_BYTES_MAX)),  # record 0x23 || epoch
        ("proof", Struct(StateProof)),  # of that record against header.state_root
        ("schedule_value", Optional(Bytes(max_len=SCHEDULE_VALUE_BYTES_MAX))),  # 0x2f, or nil
        ("schedule_proof", Struct(StateProof)),  # of 0x2f (or its absence), same root
    )
    epoch: int
    header: BlockHeader
    commit_qc: QuorumCert
    value: bytes
    proof: StateProof
    schedule_value: bytes | None
    schedule_proof: StateProof

    @property
    def height(self) -> int:
        """The height whose state the proof is of (the header's parent)."""
        return self.header.height - 1


def set_from_value(value: Any) -> ValidatorSet | None:
    """A decoded 0x23 value ``[[key, power], ...]`` as a set, None if it is not one."""
    if not isinstance(value, list) or not value:
        return None
    try:
        pairs = [(bytes(k), int(p)) for k, p in value]
        return ValidatorSet(pairs)
    except (TypeError, ValueError):
        return None


def proven_set(cert: HandoverCertificate) -> ValidatorSet | None:
    """The set a certificate's value encodes (None: not a set). Trust it only after
    :func:`handover_failures` found nothing."""
    try:
        return set_from_value(decode_raw(cert.value, SET_VALUE_BYTES_MAX))
    except DecodeError:
        return None


def schedule_from_value(value: Any, genesis_length_blocks: int) -> EpochSchedule | None:
    """A decoded 0x2f value as a schedule (None, the record absent: the genesis length for
    ever); None if it is not a valid one of this chain's genesis length."""
    if value is None:
        return EpochSchedule.constant(genesis_length_blocks)
    try:
        schedule = EpochSchedule.from_obj(value)
    except (TypeError, ValueError):
        return None
    return schedule if schedule.genesis_length_blocks == genesis_length_blocks else None


def proven_schedule(cert: HandoverCertificate, genesis_length_blocks: int) -> EpochSchedule | None:
    """The schedule a certificate's 0x2f value (or its absence) encodes, None if it is not
    one. Trust it only after :func:`handover_failures` found nothing."""
    if cert.schedule_value is None:
        return schedule_from_value(None, genesis_length_blocks)
    try:
        value = decode_raw(cert.schedule_value, SCHEDULE_VALUE_BYTES_MAX)
    except DecodeError:
        return None
    return schedule_from_value(value, genesis_length_blocks)


def handover_failures(
    cert: HandoverCertificate,
    *,
    epoch: int,
    schedule: EpochSchedule,
    signers: ValidatorSet,
    chain_id: str,
    genesis_hash: bytes,
) -> list[str]:
    """Every reason ``cert`` does not prove the set of ``epoch`` given ``signers``, the trusted
    set of ``epoch - 1``, and ``schedule``, the trusted schedule (empty: it does; the set is
    :func:`proven_set`, the schedule from then on :func:`proven_schedule`)."""
    if epoch < 2 or not schedule.has_epochs:
        return [f"epoch {epoch} has no hand-over (the genesis set, or no epochs)"]
    failures: list[str] = []
    height = hand_over_height(epoch, schedule)
    header, qc = cert.header, cert.commit_qc
    if cert.epoch != epoch:
        failures.append(f"certificate is for epoch {cert.epoch}, not {epoch}")
    if header.height != height + 1:
        failures.append(f"certifying header is at height {header.height}, not {height + 1}")
    if qc.phase != COMMIT:
        failures.append(f"QC phase is {qc.phase}, not COMMIT")
    if qc.block_hash != header.block_hash() or qc.height != header.height:
        failures.append("commit QC certifies a different block than the certifying header")
    elif not qc_valid(qc, chain_id, signers, genesis_hash):
        failures.append(
            f"commit QC is not signed by more than 2/3 of the power of the set of epoch "
            f"{epoch - 1} (bad signature, unknown signer or too few signers)"
        )
    key = epoch_set_key(epoch)
    if not verify_proof(header.state_root, key, cert.value, cert.proof):
        failures.append(
            f"Merkle proof of key {key.hex()} does not match the root the header carries"
        )
    elif proven_set(cert) is None:
        failures.append(f"the state at height {height} holds no valid set for epoch {epoch}")
    failures += _schedule_failures(cert, epoch, schedule, height)
    return failures


def _schedule_failures(
    cert: HandoverCertificate, epoch: int, schedule: EpochSchedule, height: int
) -> list[str]:
    """The schedule record (or its absence) must be proven against the same root, be a valid
    schedule, and cut every epoch through ``epoch - 1`` as the trusted one does."""
    state = "absence" if cert.schedule_value is None else "value"
    root = cert.header.state_root
    if not verify_proof(root, SCHEDULE_KEY, cert.schedule_value, cert.schedule_proof):
        return [
            f"Merkle proof of the {state} of key {SCHEDULE_KEY.hex()} (the epoch schedule) "
            f"does not match root {root.hex()}, the one the header carries"
        ]
    proven = proven_schedule(cert, schedule.genesis_length_blocks)
    if proven is None:
        return [f"the state at height {height} holds no valid epoch schedule"]
    if not schedule.agrees_through(proven, epoch - 1):
        return [f"the epoch schedule at height {height} moves an epoch before {epoch}"]
    return []


class HandoverChain:
    """The sets trusted so far, by epoch, from genesis on, and the epoch schedule proven with
    the latest; extended one certificate at a time. Only the latest :data:`SETS_KEPT` sets are
    kept (the walk only ever needs the newest)."""

    def __init__(
        self,
        genesis_set: ValidatorSet,
        epoch_length_blocks: int,
        chain_id: str,
        genesis_hash: bytes,
    ) -> None:
        if epoch_length_blocks < 0:
            raise ValueError("epoch_length_blocks must be >= 0")
        self.schedule = EpochSchedule.constant(epoch_length_blocks)
        self.chain_id = chain_id
        self.genesis_hash = genesis_hash
        self.sets: dict[int, ValidatorSet] = {0: genesis_set, 1: genesis_set}

    @property
    def epoch_length_blocks(self) -> int:
        """The genesis epoch length (later ones are in :attr:`schedule`)."""
        return self.schedule.genesis_length_blocks

    def epoch_of(self, height: int) -> int:
        """The epoch of ``height`` as the trusted schedule cuts it (a later certificate may
        move epochs beyond the latest trusted one)."""
        return self.schedule.epoch_of(height)

    def hand_over_height(self, epoch: int) -> int:
        return hand_over_height(epoch, self.schedule)

    def latest_epoch(self) -> int:
        """The last epoch whose set is trusted (with no epochs: every height is epoch 0)."""
        return max(self.sets)

    def for_height(self, height: int) -> ValidatorSet | None:
        """The trusted set that certifies ``height``, None if not reached yet (or older than
        the sets kept)."""
        return self.sets.get(self.epoch_of(height))

    def epoch_sets(self) -> EpochSets:
        """The trusted sets as consensus's lookup (``consensus/follow.py:verifying_set``)."""
        if not self.schedule.has_epochs:
            return EpochSets.fixed(self.sets[0])
        return EpochSets(self.schedule, dict(self.sets))

    def extend(self, cert: HandoverCertificate) -> list[str]:
        """Check ``cert`` as the hand-over to the next epoch; trust its set if it holds.
        Returns the failures (empty: :meth:`latest_epoch` moved on by one)."""
        epoch = self.latest_epoch() + 1
        failures = handover_failures(
            cert,
            epoch=epoch,
            schedule=self.schedule,
            signers=self.sets[epoch - 1],
            chain_id=self.chain_id,
            genesis_hash=self.genesis_hash,
        )
        if failures:
            return failures
        validators = proven_set(cert)
        schedule = proven_schedule(cert, self.epoch_length_blocks)
        if validators is None or schedule is None:  # handover_failures checked both
            raise AssertionError("a certificate without a set or schedule passed the check")
        self.sets[epoch] = validators
        self.schedule = schedule
        for old in [e for e in self.sets if e < epoch - SETS_KEPT + 1]:
            del self.sets[old]  # a walk over 100,000 epochs holds a few sets, not all
        return []
