"""Where the node gets its validator sets: genesis, then the staking state.

Theory of operation
-------------------
Consensus takes the set of each height as an input (``consensus/epochs.py``); the staking
state machine computes them (``state_machine/staking``): executing the last block of epoch
``e`` writes the set of epoch ``e + 2`` (record 0x23) and emits it as an ``epoch_set`` event.
The node is the wire between the two:

* at start, :func:`sets_from_state` rebuilds the known sets from the stored 0x23 records
  (without staking: the genesis set for ever), so a restarted replica holds the sets of its
  tip's epoch, the next one and, if the tip ended an epoch, the one after;
* after each executed block, :func:`next_set_after` gives the set the block fixed (only on
  an epoch's last block), which goes to the replica in ``BlockExecuted.next_set``, or, on a
  full node, straight into its :class:`EpochSets`; :class:`NodeSets` holds it meanwhile;
  the epoch schedule of the state (:func:`state_schedule`, changed by governance's
  ``SetEpochLength``) goes with it in ``BlockExecuted.schedule``;
* :meth:`NodeSets.pinned_keys` and :func:`member_addresses` say whom p2p accepts and dials:
  the members of the current and the next epoch (the next set's members connect a whole
  epoch before they vote), with the p2p address each published in its validator record.

Every node derives the same sets from the same committed blocks, so nothing here is sent
over the network: the sets are read from our own executed state.
"""

from __future__ import annotations

from consensus.epochs import MAX_KNOWN_EPOCHS, EpochSchedule, EpochSets
from consensus.validators import ValidatorSet
from p2p.address import PeerAddress, parse_host_port
from state_machine.exchange import ExchangeState
from state_machine.genesis import Genesis


def genesis_set(genesis: Genesis) -> ValidatorSet:
    return ValidatorSet([(v.pubkey, v.power) for v in genesis.validators])


def epoch_length_blocks(genesis: Genesis) -> int:
    """Blocks per epoch (0: one set for ever, staking off)."""
    return 0 if genesis.staking is None else genesis.staking.epoch_length_blocks


def sets_from_genesis(genesis: Genesis) -> EpochSets:
    return EpochSets.from_genesis(epoch_length_blocks(genesis), genesis_set(genesis))


def sets_from_state(state: ExchangeState) -> EpochSets:
    """The sets the stored state knows (the most recent :data:`MAX_KNOWN_EPOCHS`)."""
    staking = state.staking
    if staking is None:
        return sets_from_genesis(state.genesis)
    epochs = sorted(staking.epoch_sets)[-MAX_KNOWN_EPOCHS:]
    known = {e: ValidatorSet(staking.epoch_sets[e].members) for e in epochs}
    return EpochSets(staking.schedule, known)


def state_schedule(state: ExchangeState) -> EpochSchedule:
    """The epoch schedule in ``state`` (the genesis length, or none, until governance changes
    it): our own execution's, so never behind the replica's."""
    staking = state.staking
    if staking is None:
        return EpochSchedule.constant(epoch_length_blocks(state.genesis))
    return staking.schedule


def next_set_after(state: ExchangeState, height: int) -> ValidatorSet | None:
    """The set that executing block ``height`` fixed (epoch ``epoch(height) + 2``), on the
    last block of an epoch; else None."""
    staking = state.staking
    if staking is None:
        return None
    schedule = staking.schedule
    if not schedule.is_epoch_end(height):
        return None
    validators = staking.validator_set(schedule.epoch_of(height) + 2)
    if validators is None:
        raise RuntimeError(f"block {height} ended an epoch but stored no set for the next")
    return validators


class NodeSets:
    """The node's view of the sets: the replica's :class:`EpochSets` (the replica adds a set
    when it takes the ``BlockExecuted`` of an epoch's last block) plus the sets our execution
    fixed that the replica has not taken yet. A catch-up executes many blocks before the
    replica sees the first ``BlockExecuted``, and p2p pinning must not wait for it."""

    __slots__ = ("_members", "_members_key", "schedule", "sets", "unseen")

    def __init__(self, sets: EpochSets) -> None:
        self.sets = sets
        self.unseen: dict[int, ValidatorSet] = {}
        # The schedule our execution handed over last (the replica's may lag behind it).
        self.schedule: EpochSchedule | None = None
        self._members: frozenset[bytes] = frozenset()
        self._members_key: tuple[int, int, int] | None = None

    @property
    def epoch_length_blocks(self) -> int:
        return self.sets.epoch_length_blocks

    def learned(
        self, epoch: int, validators: ValidatorSet, schedule: EpochSchedule | None = None
    ) -> None:
        """Our execution fixed the set of ``epoch`` and the schedule up to it (the replica
        takes both later)."""
        self.unseen[epoch] = validators
        if schedule is not None:
            self.schedule = schedule
        while len(self.unseen) > MAX_KNOWN_EPOCHS:
            del self.unseen[min(self.unseen)]

    def for_epoch(self, epoch: int) -> ValidatorSet | None:
        known = self.sets.for_epoch(epoch)
        return known if known is not None else self.unseen.get(epoch)

    def current_epoch(self, height: int) -> int:
        """The epoch of the next block to decide after ``height``."""
        schedule = self.schedule if self.schedule is not None else self.sets.schedule
        return schedule.epoch_of(height + 1)

    def current(self, height: int) -> ValidatorSet:
        """The set of the next height (the latest known before it while catching up)."""
        epoch = self.current_epoch(height)
        found = self.for_epoch(epoch)
        return found if found is not None else self.sets.at_or_before(epoch)

    def pinned_keys(self, height: int) -> tuple[bytes, ...]:
        """Members of the current and the next epoch's sets (in epoch, then set order)."""
        epoch = self.current_epoch(height)
        seen: dict[bytes, None] = {}
        for e in (epoch, epoch + 1):
            validators = self.for_epoch(e)
            if validators is not None:
                seen.update(dict.fromkeys(validators.keys))
        return tuple(seen)

    def is_member(self, height: int, key: bytes) -> bool:
        """In the current or the next set (cached per epoch and sets known: this runs for
        every consensus message)."""
        cache_key = (self.current_epoch(height), self.sets.latest_epoch(), len(self.unseen))
        if cache_key != self._members_key:
            self._members = frozenset(self.pinned_keys(height))
            self._members_key = cache_key
        return key in self._members


def member_addresses(state: ExchangeState, keys: tuple[bytes, ...]) -> list[PeerAddress]:
    """Where to dial the members ``keys`` whose validator record has a p2p address (genesis
    validators without one are dialed from the configured peers only)."""
    staking = state.staking
    if staking is None:
        return []
    out: list[PeerAddress] = []
    for key in keys:
        operator = staking.by_consensus_key.get(key)
        record = None if operator is None else staking.validators.get(operator)
        if record is None or not record.p2p_address:
            continue
        try:
            host, port = parse_host_port(record.p2p_address)
        except ValueError:
            continue  # the chain accepted it (host:port); a name we cannot parse is skipped
        out.append(PeerAddress(key, host, port))
    return out
