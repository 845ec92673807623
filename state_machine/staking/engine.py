"""The staking state machine: validators, delegations, unbonding, epochs, evidence.

Theory of operation
-------------------
Stake is USDC, moved from and back to the owner's available balance through a
:class:`Ledger` (the exchange's balances; the hook in ``hook.py``). A validator's bonded stake
(``tokens_atoms``) is shared among its delegations by shares, so slashing burns a fraction of
every delegation in one subtraction. Undelegated stake sits in an unbonding entry for
``unbonding_blocks`` and can still be slashed for evidence of an epoch it was bonded in; then
it returns to the balance at the start of the block that completes it.

Epochs (``consensus/epochs.py``): executing the last block of epoch ``e`` computes the active
set of epoch ``e + 2``: the top ``active_set_size`` validators by stake that are not jailed and
keep the minimum self-stake, power = whole USDC of stake, ordered by stake then key. If none is
eligible the set of ``e + 1`` carries over (a chain with no set could never commit again).
Sets are kept in the state for the evidence window, so the light client and full nodes can
read each epoch's set, certified by the previous set's QCs.

Evidence: two conflicting signatures of one validator in one view (``consensus.types``). It is
checked against the set of the epoch it names; the offender is jailed at once (out of every
set computed from now on: the set of the epoch after next at the latest, since the next one is
fixed already and its members may be connecting), and ``slash_bps`` of its stake, delegations
and unbonding entries started in or after that epoch is burnt. Evidence about an epoch older
than the unbonding period is refused (nothing bonded then is left), and each (offender, view)
is applied once. A jailed validator returns with :class:`Unjail` after ``jail_blocks``.

Every refusal is a result code and changes nothing. No floats, no hash-order iteration (dicts
here are insertion-ordered and iterated only where that order is deterministic).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from consensus.epochs import EpochSchedule
from consensus.types import ProposalEquivocation, VoteEquivocation
from consensus.validators import ValidatorSet
from consensus.verify import evidence_valid
from state_machine.codec import decode_raw, encode
from state_machine.invariants import check
from state_machine.staking import codes
from state_machine.staking.actions import (
    CreateValidator,
    Delegate,
    EditValidator,
    SubmitEvidence,
    Undelegate,
    Unjail,
)
from state_machine.staking.codes import STAKING_EVENT_FIELDS  # noqa: F401  (re-export)
from state_machine.staking.params import ATOMS_PER_POWER, BPS, StakingParams, with_governed
from state_machine.staking.records import (
    GOVERNED_PARAMS_KEY,
    META_KEY,
    P_DELEGATION,
    P_EPOCH_SET,
    P_EVIDENCE,
    P_SCHEDULE,
    P_UNBONDING,
    P_VALIDATOR,
    Delegation,
    EpochSet,
    EvidenceRecord,
    GovernedParamsRecord,
    ScheduleRecord,
    Unbonding,
    ValidatorRecord,
    evidence_id,
)
from state_machine.units import decimal_text


def usdc_text(atoms: int) -> str:
    """Stake in the trader's units (stake is USDC: 6 decimals, ``ATOMS_PER_POWER`` a unit)."""
    return f"{decimal_text(atoms, ATOMS_PER_POWER)} USDC"


class Ledger(Protocol):
    """Where stake comes from and goes back to (USDC available balances)."""

    def movable_atoms(self, owner: bytes) -> int: ...

    def debit_atoms(self, owner: bytes, amount_atoms: int) -> None: ...

    def credit_atoms(self, owner: bytes, amount_atoms: int) -> None: ...


class Result:
    __slots__ = ("code", "message")

    def __init__(self, code: str, message: str = "") -> None:
        self.code = code
        self.message = message

    @property
    def ok(self) -> bool:
        return self.code == codes.OK

    def __repr__(self) -> str:
        return f"Result({self.code!r}, {self.message!r})"


OK = Result(codes.OK, "ok")


class StakingState:
    """All staking records, with dirty tracking like the exchange state."""

    def __init__(self, chain_id: str, params: StakingParams) -> None:
        self.chain_id = chain_id
        # The parameters in force: every staking rule reads them here. The genesis values,
        # with the governed fields replaced once a SetStakingParams ran (``governed``).
        self.params = params
        self.governed: GovernedParamsRecord | None = None
        self.height = 0
        self.validators: dict[bytes, ValidatorRecord] = {}  # by operator, in creation order
        self.by_consensus_key: dict[bytes, bytes] = {}  # consensus key -> operator
        self.delegations: dict[tuple[bytes, bytes], Delegation] = {}  # (operator, delegator)
        self.unbondings: dict[int, Unbonding] = {}  # by id: ascending id, ascending completion
        self.open_unbondings: dict[tuple[bytes, bytes], int] = {}  # (delegator, operator)
        self.epoch_sets: dict[int, EpochSet] = {}
        # Heights to epochs: the genesis length until governance changes it (SetEpochLength).
        self.schedule = EpochSchedule.constant(params.epoch_length_blocks)
        self.evidence: dict[bytes, EvidenceRecord] = {}
        self.next_unbonding_id = 1
        self.burnt_atoms = 0
        self.events: list[tuple[Any, ...]] = []
        self._dirty: dict[bytes, Any] = {}

    @classmethod
    def from_genesis(
        cls,
        chain_id: str,
        params: StakingParams,
        validators: Sequence[tuple[bytes, int]],
        operators: Mapping[bytes, tuple[bytes, str]] | None = None,
    ) -> StakingState:
        """Genesis validators are registered with self-stake of their genesis power (minted,
        not taken from a balance); they are epochs 0 and 1. ``operators`` maps a consensus
        key to its (operator, p2p address); by default a validator operates itself."""
        st = cls(chain_id, params)
        for key, power in validators:
            operator, address = (operators or {}).get(key, (key, ""))
            record = ValidatorRecord(operator, key, address, 0)
            st._add_validator(record)
            st._bond(record, operator, power * ATOMS_PER_POWER)
        members = tuple((k, p) for k, p in validators)
        for epoch in (0, 1):
            st._put_epoch_set(EpochSet(epoch, members))
        st.events = []
        return st

    @classmethod
    def from_entries(
        cls,
        chain_id: str,
        params: StakingParams,
        entries: Sequence[tuple[bytes, bytes]],
        height: int,
    ) -> StakingState:
        """Rebuild from stored entries (prefixes 0x20..0x25) at ``height`` (the exchange's
        meta holds the height)."""
        st = cls(chain_id, params)
        st.height = height
        for key, value in entries:
            load_entry(st, key, decode_raw(value))
        if st.governed is not None:  # applied after every entry: whatever other record
            st.params = with_governed(st.params, st.governed.values)  # shares params
        st.open_unbondings = {}
        for entry in st.unbondings.values():
            pair = (entry.delegator, entry.operator)
            st.open_unbondings[pair] = st.open_unbondings.get(pair, 0) + 1
        return st

    # ---- records -----------------------------------------------------------------------------

    def touch(self, record: Any) -> None:
        self._dirty[record.state_key()] = record

    def meta_obj(self) -> list[int]:
        return [self.next_unbonding_id, self.burnt_atoms]

    def take_writes(self) -> list[tuple[bytes, bytes | None]]:
        out: dict[bytes, bytes | None] = {META_KEY: encode(self.meta_obj())}
        for key, record in self._dirty.items():
            value = record.state_obj()
            out[key] = None if value is None else encode(value)
        self._dirty = {}
        return sorted(out.items())

    def entries(self) -> list[tuple[bytes, bytes]]:
        records: list[Any] = [
            *self.validators.values(),
            *self.delegations.values(),
            *self.unbondings.values(),
            *self.epoch_sets.values(),
            *self.evidence.values(),
        ]
        if self.governed is not None:
            records.append(self.governed)
        out = [(META_KEY, encode(self.meta_obj()))]
        out += [(r.state_key(), encode(r.state_obj())) for r in records]
        schedule = ScheduleRecord(self.schedule).state_obj()
        if schedule is not None:
            out.append((ScheduleRecord(self.schedule).state_key(), encode(schedule)))
        return sorted(out)

    def change_epoch_length(self, length_blocks: int) -> tuple[int, int]:
        """Epochs from the first one whose set is not fixed yet (the epoch after next: the
        set of the next one is fixed already) are ``length_blocks`` long. The schedule goes to
        consensus with the set of that epoch, at the end of this epoch. Returns (first epoch,
        first height) of the new length."""
        epoch = self.schedule.epoch_of(self.height) + 2
        self.schedule = self.schedule.changed_from(epoch, length_blocks)
        self.touch(ScheduleRecord(self.schedule))
        return epoch, self.schedule.first_height(epoch)

    @property
    def evidence_max_age_epochs(self) -> int:
        """Evidence about an epoch older than this many epochs is refused (every stake bonded
        then has finished unbonding). Counted in the shortest epochs the schedule ever had, so
        a length change never shortens the window below the unbonding period."""
        shortest = min(s.length_blocks for s in self.schedule.segments)
        return self.params.unbonding_blocks // shortest

    def validator_set(self, epoch: int) -> ValidatorSet | None:
        record = self.epoch_sets.get(epoch)
        return None if record is None else ValidatorSet(record.members)

    def power_of(self, consensus_key: bytes, epoch: int) -> int:
        """Voting power of ``consensus_key`` in ``epoch``'s set (0 if absent): the weight of
        its oracle submissions in that epoch."""
        record = self.epoch_sets.get(epoch)
        if record is None:
            return 0
        return next((p for k, p in record.members if k == consensus_key), 0)

    def self_stake_atoms(self, record: ValidatorRecord) -> int:
        own = self.delegations.get((record.operator, record.operator))
        return 0 if own is None else record.value_of_shares(own.shares)

    def delegation_atoms(self, operator: bytes, delegator: bytes) -> int:
        record = self.validators.get(operator)
        delegation = self.delegations.get((operator, delegator))
        if record is None or delegation is None:
            return 0
        return record.value_of_shares(delegation.shares)

    def _add_validator(self, record: ValidatorRecord) -> None:
        record.created_height = self.height
        self.validators[record.operator] = record
        self.by_consensus_key[record.consensus_key] = record.operator
        self.touch(record)

    def _bond(self, record: ValidatorRecord, delegator: bytes, amount_atoms: int) -> None:
        """Add ``amount_atoms`` of stake to ``record`` for ``delegator`` (shares at the
        current rate; the first stake sets one share per atom)."""
        check(record.tokens_atoms > 0 or record.shares == 0, "shares without tokens")
        new_shares = (
            amount_atoms
            if record.shares == 0
            else amount_atoms * record.shares // record.tokens_atoms
        )
        key = (record.operator, delegator)
        delegation = self.delegations.get(key)
        if delegation is None:
            delegation = Delegation(record.operator, delegator)
            self.delegations[key] = delegation
        delegation.shares += new_shares
        record.shares += new_shares
        record.tokens_atoms += amount_atoms
        self.touch(delegation)
        self.touch(record)

    def _put_epoch_set(self, record: EpochSet) -> None:
        self.epoch_sets[record.epoch] = record
        self.touch(record)


def load_entry(st: StakingState, key: bytes, v: Any) -> None:
    """One stored record back into ``st`` (the inverse of each record's ``state_obj``)."""
    p = key[0]
    if key == META_KEY:
        st.next_unbonding_id, st.burnt_atoms = v
    elif p == P_VALIDATOR:
        record = ValidatorRecord(key[1:33], v[0], v[1], v[2])
        record.tokens_atoms, record.shares, record.jailed = v[3], v[4], v[5]
        record.jailed_until_height, record.created_height = v[6], v[7]
        st.validators[record.operator] = record
        st.by_consensus_key[record.consensus_key] = record.operator
    elif p == P_DELEGATION:
        delegation = Delegation(key[1:33], key[33:65])
        delegation.shares = v[0]
        st.delegations[(delegation.operator, delegation.delegator)] = delegation
    elif p == P_UNBONDING:
        uid = int.from_bytes(key[1:9], "big")
        st.unbondings[uid] = Unbonding(uid, v[0], v[1], v[2], v[3], v[4])
    elif p == P_EPOCH_SET:
        epoch = int.from_bytes(key[1:9], "big")
        st.epoch_sets[epoch] = EpochSet(epoch, tuple((k, power) for k, power in v))
    elif p == P_EVIDENCE:
        st.evidence[key[1:]] = EvidenceRecord(key[1:], v[0])
    elif key == GOVERNED_PARAMS_KEY:
        st.governed = GovernedParamsRecord(tuple(v))
    elif p == P_SCHEDULE:
        st.schedule = EpochSchedule.from_obj(v)
    else:
        check(False, f"not a staking key prefix: {p}")


# ---- blocks ---------------------------------------------------------------------------------


def set_governed_params(st: StakingState, values: tuple[int, ...]) -> None:
    """Put governed staking parameters in force (a SetStakingParams proposal, checked by
    params.governed_params_problem). What is in flight keeps what it got: unbonding entries
    their completion height, jailed validators their jail end (docs/ARCHITECTURE.md)."""
    st.params = with_governed(st.params, values)
    st.governed = GovernedParamsRecord(values)
    st.touch(st.governed)


def begin_block(st: StakingState, ledger: Ledger, height: int) -> None:
    """Pay out the unbonding entries that complete at this height (ascending id order, which
    is completion order: see unbonding_complete_height)."""
    check(height == st.height + 1, f"staking: block {height} after {st.height}")
    st.height = height
    while st.unbondings:
        entry = next(iter(st.unbondings.values()))
        if entry.complete_height > height:
            break
        _remove_unbonding(st, entry)
        if entry.amount_atoms:
            ledger.credit_atoms(entry.delegator, entry.amount_atoms)
        st.events.append(("unbonded", entry.delegator, entry.operator, entry.amount_atoms))


def end_block(st: StakingState) -> ValidatorSet | None:
    """At the last block of an epoch: compute the set of the epoch after next (returned, for
    consensus), and forget sets and evidence older than the evidence window."""
    schedule = st.schedule
    if not schedule.is_epoch_end(st.height):
        return None
    epoch = schedule.epoch_of(st.height) + 2
    members = next_active_set(st)
    if not members:
        members = st.epoch_sets[epoch - 1].members
    st._put_epoch_set(EpochSet(epoch, members))
    st.events.append(("epoch_set", epoch, [[k, p] for k, p in members]))
    _prune_old_epochs(st, schedule.epoch_of(st.height))
    return ValidatorSet(members)


def next_active_set(st: StakingState) -> tuple[tuple[bytes, int], ...]:
    """Top ``active_set_size`` eligible validators by stake (ties: consensus key order)."""
    p = st.params
    eligible = [
        r
        for r in st.validators.values()
        if not r.jailed
        and r.tokens_atoms >= ATOMS_PER_POWER
        and st.self_stake_atoms(r) >= p.min_self_stake_atoms
    ]
    eligible.sort(key=lambda r: (-r.tokens_atoms, r.consensus_key))
    return tuple(
        (r.consensus_key, r.tokens_atoms // ATOMS_PER_POWER) for r in eligible[: p.active_set_size]
    )


def _prune_old_epochs(st: StakingState, current_epoch: int) -> None:
    oldest = current_epoch - st.evidence_max_age_epochs - 1
    for epoch in [e for e in st.epoch_sets if e < oldest]:
        record = st.epoch_sets.pop(epoch)
        record.live = False
        st.touch(record)
    for key in [k for k, r in st.evidence.items() if r.epoch < oldest]:
        record_e = st.evidence.pop(key)
        record_e.live = False
        st.touch(record_e)


# ---- actions --------------------------------------------------------------------------------


def process_create_validator(
    st: StakingState, ledger: Ledger, signer: bytes, a: CreateValidator
) -> Result:
    p = st.params
    if signer in st.validators:
        return Result(codes.VALIDATOR_EXISTS, "the signer already runs a validator")
    if a.consensus_key in st.by_consensus_key:
        return Result(codes.CONSENSUS_KEY_IN_USE, "that consensus key is registered already")
    if len(st.validators) >= p.max_validators:
        return Result(codes.TOO_MANY_VALIDATORS, f"at most {p.max_validators} validators")
    if a.commission_bps > p.max_commission_bps:
        return Result(codes.COMMISSION_TOO_HIGH, f"commission above {p.max_commission_bps} bps")
    if not _address_ok(a.p2p_address):
        return Result(codes.BAD_P2P_ADDRESS, "p2p address must be host:port")
    if a.self_stake_atoms < p.min_self_stake_atoms:
        minimum = usdc_text(p.min_self_stake_atoms)
        return Result(codes.STAKE_TOO_SMALL, f"self-stake below {minimum}")
    if ledger.movable_atoms(signer) < a.self_stake_atoms:
        return Result(codes.INSUFFICIENT_BALANCE, "not enough available USDC")
    record = ValidatorRecord(signer, a.consensus_key, a.p2p_address, a.commission_bps)
    st._add_validator(record)
    ledger.debit_atoms(signer, a.self_stake_atoms)
    st._bond(record, signer, a.self_stake_atoms)
    st.events.append(("validator_created", signer, a.consensus_key, a.self_stake_atoms))
    return OK


def _address_ok(address: str) -> bool:
    host, sep, port = address.rpartition(":")
    return bool(sep and host and port.isdigit() and 0 < int(port) < 65_536)


def process_edit_validator(st: StakingState, signer: bytes, a: EditValidator) -> Result:
    record = st.validators.get(signer)
    if record is None:
        return Result(codes.NOT_A_VALIDATOR, "the signer runs no validator")
    if a.commission_bps > st.params.max_commission_bps:
        return Result(codes.COMMISSION_TOO_HIGH, "commission too high")
    if not _address_ok(a.p2p_address):
        return Result(codes.BAD_P2P_ADDRESS, "p2p address must be host:port")
    record.p2p_address = a.p2p_address
    record.commission_bps = a.commission_bps
    st.touch(record)
    st.events.append(("validator_edited", signer))
    return OK


def process_delegate(st: StakingState, ledger: Ledger, signer: bytes, a: Delegate) -> Result:
    record = st.validators.get(a.operator)
    if record is None:
        return Result(codes.UNKNOWN_VALIDATOR, "no validator with that operator")
    if a.amount_atoms < st.params.min_delegation_atoms:
        return Result(
            codes.STAKE_TOO_SMALL, f"below the minimum {usdc_text(st.params.min_delegation_atoms)}"
        )
    if record.shares and not record.tokens_atoms:
        return Result(codes.VALIDATOR_SLASHED_OUT, "the validator's stake was slashed to zero")
    if ledger.movable_atoms(signer) < a.amount_atoms:
        return Result(codes.INSUFFICIENT_BALANCE, "not enough available USDC")
    ledger.debit_atoms(signer, a.amount_atoms)
    st._bond(record, signer, a.amount_atoms)
    st.events.append(("delegated", signer, a.operator, a.amount_atoms))
    return OK


def process_undelegate(st: StakingState, signer: bytes, a: Undelegate) -> Result:
    record = st.validators.get(a.operator)
    delegation = st.delegations.get((a.operator, signer))
    if record is None or delegation is None:
        return Result(codes.NO_DELEGATION, "nothing delegated to that validator")
    if a.amount_atoms == 0:
        return Result(codes.INVALID_AMOUNT, "amount must be positive")
    held = record.value_of_shares(delegation.shares)
    if a.amount_atoms > held:
        return Result(codes.INSUFFICIENT_DELEGATION, f"only {usdc_text(held)} delegated")
    pair = (signer, a.operator)
    if st.open_unbondings.get(pair, 0) >= st.params.max_unbondings_per_pair:
        return Result(codes.TOO_MANY_UNBONDINGS, "wait for an unbonding to complete")
    # Round the shares removed up, so rounding never pays out more than the shares are worth.
    shares = -(-a.amount_atoms * record.shares // record.tokens_atoms)
    shares = min(shares, delegation.shares)
    delegation.shares -= shares
    record.shares -= shares
    record.tokens_atoms -= a.amount_atoms
    if delegation.shares == 0:
        del st.delegations[(a.operator, signer)]
    st.touch(delegation)
    st.touch(record)
    _add_unbonding(st, signer, a.operator, a.amount_atoms)
    st.events.append(("undelegated", signer, a.operator, a.amount_atoms))
    return OK


def unbonding_complete_height(st: StakingState) -> int:
    """When an unbonding started now completes: after the unbonding period in force, but never
    before an earlier entry. Entries then complete in id order, which begin_block relies on,
    even after governance shortened the period (an entry keeps its completion height)."""
    complete = st.height + st.params.unbonding_blocks
    if st.unbondings:
        last = next(reversed(st.unbondings.values()))
        complete = max(complete, last.complete_height)
    return complete


def _add_unbonding(st: StakingState, delegator: bytes, operator: bytes, amount: int) -> None:
    entry = Unbonding(
        st.next_unbonding_id,
        delegator,
        operator,
        amount,
        st.height,
        unbonding_complete_height(st),
    )
    st.next_unbonding_id += 1
    st.unbondings[entry.unbonding_id] = entry
    pair = (delegator, operator)
    st.open_unbondings[pair] = st.open_unbondings.get(pair, 0) + 1
    st.touch(entry)


def _remove_unbonding(st: StakingState, entry: Unbonding) -> None:
    del st.unbondings[entry.unbonding_id]
    pair = (entry.delegator, entry.operator)
    left = st.open_unbondings[pair] - 1
    if left:
        st.open_unbondings[pair] = left
    else:
        del st.open_unbondings[pair]
    entry.live = False
    st.touch(entry)


def process_unjail(st: StakingState, signer: bytes, a: Unjail) -> Result:
    record = st.validators.get(signer)
    if record is None:
        return Result(codes.NOT_A_VALIDATOR, "the signer runs no validator")
    if not record.jailed:
        return Result(codes.NOT_JAILED, "the validator is not jailed")
    if st.height < record.jailed_until_height:
        return Result(codes.STILL_JAILED, f"jailed until height {record.jailed_until_height}")
    if st.self_stake_atoms(record) < st.params.min_self_stake_atoms:
        return Result(codes.STAKE_TOO_SMALL, "self-stake below the minimum after slashing")
    record.jailed = False
    st.touch(record)
    st.events.append(("unjailed", signer))
    return OK


# ---- evidence -------------------------------------------------------------------------------


def offender_and_view(evidence: VoteEquivocation | ProposalEquivocation) -> tuple[bytes, int]:
    if isinstance(evidence, VoteEquivocation):
        return evidence.vote_a.voter, evidence.vote_a.view
    return evidence.proposer, evidence.view


def evidence_problem(st: StakingState, a: SubmitEvidence) -> Result | None:
    """The first reason to refuse ``a`` (specific codes, cheapest checks first), or None."""
    epoch_of = st.schedule.epoch_of
    current = epoch_of(st.height)
    if a.epoch > current:
        return Result(codes.EVIDENCE_FROM_FUTURE, f"epoch {a.epoch} has not started")
    validators = st.validator_set(a.epoch)
    if current - a.epoch > st.evidence_max_age_epochs or validators is None:
        return Result(codes.EVIDENCE_TOO_OLD, "older than the unbonding period")
    e = a.evidence
    if isinstance(e, VoteEquivocation):
        va, vb = e.vote_a, e.vote_b
        if va.voter != vb.voter:
            return Result(codes.EVIDENCE_MISMATCHED, "the two votes have different voters")
        if (va.phase, va.view) != (vb.phase, vb.view):
            return Result(codes.EVIDENCE_MISMATCHED, "the votes are of different views")
        if epoch_of(va.height) != a.epoch or epoch_of(vb.height) != a.epoch:
            return Result(codes.EVIDENCE_MISMATCHED, "the votes are not of that epoch")
        conflicting = va.block_hash != vb.block_hash
    else:
        conflicting = e.block_hash_a != e.block_hash_b
    if not conflicting:
        return Result(codes.EVIDENCE_NOT_CONFLICTING, "the same message twice is no conflict")
    offender, view = offender_and_view(e)
    if offender not in validators or offender not in st.by_consensus_key:
        return Result(codes.EVIDENCE_NOT_VALIDATOR, "not a validator of that epoch")
    if not evidence_valid(e, st.chain_id, validators):
        return Result(codes.EVIDENCE_BAD_SIGNATURE, "a signature does not verify")
    if evidence_id(offender, view) in st.evidence:
        return Result(codes.EVIDENCE_DUPLICATE, "already applied")
    return None


def process_submit_evidence(st: StakingState, signer: bytes, a: SubmitEvidence) -> Result:
    problem = evidence_problem(st, a)
    if problem is not None:
        return problem
    offender, view = offender_and_view(a.evidence)
    record_e = EvidenceRecord(evidence_id(offender, view), a.epoch)
    st.evidence[record_e.evidence_id] = record_e
    st.touch(record_e)
    record = st.validators[st.by_consensus_key[offender]]
    burnt = slash(st, record, a.epoch)
    record.jailed = True
    record.jailed_until_height = st.height + st.params.jail_blocks
    st.touch(record)
    st.events.append(("slashed", record.operator, offender, view, burnt, signer))
    return OK


def slash(st: StakingState, record: ValidatorRecord, epoch: int) -> int:
    """Burn ``slash_bps`` of the validator's stake (every delegation through the shares) and
    of its unbonding entries started in or after ``epoch``. Returns the atoms burnt."""
    bps = st.params.slash_bps
    burnt = record.tokens_atoms * bps // BPS
    record.tokens_atoms -= burnt
    start = st.schedule.first_height(epoch) if epoch else 0
    for entry in st.unbondings.values():
        if entry.operator == record.operator and entry.start_height >= start:
            cut = entry.amount_atoms * bps // BPS
            entry.amount_atoms -= cut
            burnt += cut
            st.touch(entry)
    st.burnt_atoms += burnt
    return burnt
