"""The light client across validator-set changes: which set signs the QC of a height.

Theory of operation
-------------------
With staking, the set that certifies a height changes every epoch (``consensus/epochs.py``):
a block of epoch ``e`` is certified by the set of ``e``. The light client trusts only the
genesis file, which fixes the sets of epochs 0 and 1. For ``e >= 2`` the set of ``e`` is
record 0x23 (``state_machine/staking/records.py``) in the state after the last block of
``e - 2``, height ``h = (e - 1) * L`` with one epoch length ``L``. That state is certified by
block ``h + 1``, the first block of ``e - 1``, whose commit QC the set of ``e - 1`` signs.
So, by induction from genesis:

    trusted(0) = trusted(1) = genesis set
    trusted(e) = the value of key 0x23 || e, Merkle-proven against the root in the header of
                 block (e - 1) * L + 1, whose commit QC has > 2/3 of trusted(e - 1)'s power

Each step is one proof (``GET /v1/proofs/epoch_sets/{e}``), checked with the same code as any
record proof (``cli/lightclient.py``): a node cannot substitute another key, another height,
another set, or a QC of a set the client does not already trust. A forged hand-over (a set
that the previous set did not certify) stops the walk with the failure in words; nothing
after it is trusted. Honest-majority assumption: more than 2/3 of each trusted set's power is
honest for as long as the client relies on that set's signatures (the usual light-client
assumption; a set that left may sign anything later, which is why the client walks forward
from genesis and never accepts a QC of an old set for a newer height).

Epoch lengths change by governance (``SetEpochLength``): the schedule is record 0x2f in the same
state as the set (absent: the genesis length for ever), proven in the same answer. A change
only ever starts at an epoch whose set is not handed over yet, so the proven schedule must cut
every epoch the client already trusts as before (checked); it then says where epoch ``e``
ends, hence the height of the next hand-over: ``h(e + 1)`` is the last block of ``e - 1``.
The walk re-asks which epoch the target height is in after each step, with the schedule
learned so far.

Without staking (no ``staking`` genesis section) every height is certified by the genesis set
and no hand-over is fetched. A node that no longer keeps the hand-over height (pruned, not an
archive node) answers 404 ``height_not_provable``; the walk then fails with that message: ask
an archive node.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cli.lightclient import ProofCheck, genesis_validator_set, verify_record_proof
from consensus.epochs import EpochSchedule
from consensus.validators import ValidatorSet
from node.api.recordkeys import EPOCH_SET_KIND, epoch_set_key
from state_machine.genesis import Genesis
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


def set_from_value(value: Any) -> ValidatorSet | None:
    """A decoded 0x23 value ``[[key, power], ...]`` as a set, None if it is not one."""
    if not isinstance(value, list) or not value:
        return None
    try:
        pairs = [(bytes(k), int(p)) for k, p in value]
        return ValidatorSet(pairs)
    except (TypeError, ValueError):
        return None


def schedule_from_value(value: Any, genesis_length: int) -> EpochSchedule | None:
    """A decoded 0x2f value as a schedule (absent: the genesis length for ever), None if it
    is not a valid one."""
    if value is None:
        return EpochSchedule.constant(genesis_length)
    try:
        schedule = EpochSchedule.from_obj(value)
    except (TypeError, ValueError):
        return None
    return schedule if schedule.genesis_length_blocks == genesis_length else None


class TrustedSets:
    """The validator sets this client has verified, by epoch, from genesis on, and the epoch
    schedule as far as it is proven (it cuts every trusted epoch's heights right)."""

    def __init__(self, genesis: Genesis, epoch_length_blocks: int | None = None) -> None:
        self.genesis = genesis
        length = epoch_length_blocks
        if length is None:
            length = genesis_epoch_length(genesis)
        if length < 0:
            raise ValueError("epoch_length_blocks must be >= 0")
        self.epoch_length_blocks = length
        self.schedule = EpochSchedule.constant(length)
        base = genesis_validator_set(genesis)
        self.sets: dict[int, ValidatorSet] = {0: base, 1: base}

    def epoch_of(self, height: int) -> int:
        return self.schedule.epoch_of(height)

    def hand_over_height(self, epoch: int) -> int:
        """The height whose state first holds the set of ``epoch`` (>= 2): the last block of
        ``epoch - 2``, cut by the trusted schedule."""
        return self.schedule.first_height(epoch - 1) - 1

    def latest_epoch(self) -> int:
        return max(self.sets)

    def for_height(self, height: int) -> ValidatorSet | None:
        """The trusted set that certifies ``height``, None if not reached yet."""
        return self.sets.get(self.epoch_of(height))

    def accept(self, epoch: int, body: Any) -> ProofCheck:
        """Check the hand-over proof of ``epoch`` (the next one to trust) and, if it holds,
        trust the set it proves and the schedule proven with it."""
        if epoch != self.latest_epoch() + 1:
            raise ValueError(f"hand-overs are followed in order; next is {self.latest_epoch() + 1}")
        height = self.hand_over_height(epoch)
        signer = self.sets[epoch - 1]  # the set of height + 1, the certifying block's epoch
        key = epoch_set_key(epoch)
        check = verify_record_proof(
            body, self.genesis, key, EPOCH_SET_KIND, height, signer, also=(SCHEDULE_KEY,)
        )
        if not check.ok:
            return check
        validators = set_from_value(check.values.get(key.hex()))
        schedule = schedule_from_value(
            check.values.get(SCHEDULE_KEY.hex()), self.epoch_length_blocks
        )
        problem = None
        if validators is None:
            problem = f"the state at height {height} holds no valid set for epoch {epoch}"
        elif schedule is None:
            problem = f"the state at height {height} holds no valid epoch schedule"
        elif not self.schedule.agrees_through(schedule, epoch - 1):
            problem = f"the epoch schedule at height {height} moves an epoch before {epoch}"
        if problem is not None or validators is None or schedule is None:
            check.ok = False
            check.failures.append(problem or "no set")
            return check
        self.sets[epoch] = validators
        self.schedule = schedule
        return check


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
        check = trusted.accept(epoch, fetch(epoch))
        steps += 1
        if not check.ok:
            prefix = f"hand-over to epoch {epoch} (state at height {where})"
            return [f"{prefix}: {failure}" for failure in check.failures]
    return []
