"""Staking records and their keys (under the exchange's Merkle root, prefixes 0x20..0x25, 0x2f).

=====  ==============================  ===============================================
prefix key                              value (msgpack array)
=====  ==============================  ===============================================
0x20   operator(32)                     validator: [consensus_key, p2p_address,
                                        commission_bps, tokens_atoms, shares, jailed,
                                        jailed_until_height, created_height]
0x21   operator(32) delegator(32)       delegation: [shares]
0x22   unbonding_id(8)                  unbonding: [delegator, operator, amount_atoms,
                                        start_height, complete_height]
0x23   epoch(8)                         the epoch's active set: [[consensus_key, power], ...]
0x24   sha256(offender, view)           evidence applied: [epoch] (kept while it could
                                        still be resubmitted)
0x25   ``25``                           staking meta: [next_unbonding_id, burnt_atoms]
0x26   ``26 00``                        governed staking parameters: the values of
                                        params.GOVERNED_FIELDS (absent until a
                                        SetStakingParams proposal runs: genesis values)
0x2f   ``2f``                           epoch schedule: [[first_epoch, first_height,
                                        length_blocks], ...] (absent while it is the
                                        genesis length for ever)
=====  ==============================  ===============================================

Each record is a small slotted object with ``state_key()`` and ``state_obj()`` (None: the key
is deleted), like the exchange's records.
"""

from __future__ import annotations

from typing import Any

from consensus.epochs import EpochSchedule
from state_machine.crypto import sha256

P_VALIDATOR = 0x20
P_DELEGATION = 0x21
P_UNBONDING = 0x22
P_EPOCH_SET = 0x23
P_EVIDENCE = 0x24
META_KEY = b"\x25\x25"
GOVERNED_PARAMS_KEY = b"\x26\x00"
P_SCHEDULE = 0x2F
SCHEDULE_KEY = b"\x2f\x2f"


def _u64(x: int) -> bytes:
    return x.to_bytes(8, "big")


class ValidatorRecord:
    """A registered validator. ``tokens_atoms`` is its bonded stake (self-stake plus
    delegations, after slashing); ``shares`` the delegations' claims on it: a delegation of
    ``s`` shares is worth ``s * tokens_atoms // shares`` atoms, so slashing is one subtraction."""

    __slots__ = (
        "commission_bps",
        "consensus_key",
        "created_height",
        "jailed",
        "jailed_until_height",
        "operator",
        "p2p_address",
        "shares",
        "tokens_atoms",
    )

    def __init__(
        self, operator: bytes, consensus_key: bytes, p2p_address: str, commission_bps: int
    ) -> None:
        self.operator = operator
        self.consensus_key = consensus_key
        self.p2p_address = p2p_address
        self.commission_bps = commission_bps
        self.tokens_atoms = 0
        self.shares = 0
        self.jailed = False
        self.jailed_until_height = 0
        self.created_height = 0

    def state_key(self) -> bytes:
        return bytes([P_VALIDATOR]) + self.operator

    def state_obj(self) -> list[Any]:
        return [
            self.consensus_key,
            self.p2p_address,
            self.commission_bps,
            self.tokens_atoms,
            self.shares,
            self.jailed,
            self.jailed_until_height,
            self.created_height,
        ]

    def value_of_shares(self, shares: int) -> int:
        return 0 if self.shares == 0 else shares * self.tokens_atoms // self.shares


class Delegation:
    __slots__ = ("delegator", "operator", "shares")

    def __init__(self, operator: bytes, delegator: bytes) -> None:
        self.operator = operator
        self.delegator = delegator
        self.shares = 0

    def state_key(self) -> bytes:
        return bytes([P_DELEGATION]) + self.operator + self.delegator

    def state_obj(self) -> list[Any] | None:
        return [self.shares] if self.shares else None


class Unbonding:
    __slots__ = (
        "amount_atoms",
        "complete_height",
        "delegator",
        "live",
        "operator",
        "start_height",
        "unbonding_id",
    )

    def __init__(
        self,
        unbonding_id: int,
        delegator: bytes,
        operator: bytes,
        amount_atoms: int,
        start_height: int,
        complete_height: int,
    ) -> None:
        self.unbonding_id = unbonding_id
        self.delegator = delegator
        self.operator = operator
        self.amount_atoms = amount_atoms
        self.start_height = start_height
        self.complete_height = complete_height
        self.live = True

    def state_key(self) -> bytes:
        return bytes([P_UNBONDING]) + _u64(self.unbonding_id)

    def state_obj(self) -> list[Any] | None:
        if not self.live:
            return None
        return [
            self.delegator,
            self.operator,
            self.amount_atoms,
            self.start_height,
            self.complete_height,
        ]


class EpochSet:
    """The active set of ``epoch``, in set order (stake descending, then key)."""

    __slots__ = ("epoch", "live", "members")

    def __init__(self, epoch: int, members: tuple[tuple[bytes, int], ...]) -> None:
        self.epoch = epoch
        self.members = members
        self.live = True

    def state_key(self) -> bytes:
        return bytes([P_EPOCH_SET]) + _u64(self.epoch)

    def state_obj(self) -> list[Any] | None:
        return [[k, p] for k, p in self.members] if self.live else None


def evidence_id(offender: bytes, view: int) -> bytes:
    """One slash per validator and view, whatever the kind or phase of the conflict."""
    return sha256(b"perpbft/evidence/v1\x00" + offender + _u64(view))


class EvidenceRecord:
    __slots__ = ("epoch", "evidence_id", "live")

    def __init__(self, evidence_id_: bytes, epoch: int) -> None:
        self.evidence_id = evidence_id_
        self.epoch = epoch
        self.live = True

    def state_key(self) -> bytes:
        return bytes([P_EVIDENCE]) + self.evidence_id

    def state_obj(self) -> list[Any] | None:
        return [self.epoch] if self.live else None


class GovernedParamsRecord:
    """The governed staking parameters in force (params.GOVERNED_FIELDS order); written by
    the first SetStakingParams that runs, so a chain without one keeps its genesis entries."""

    __slots__ = ("values",)

    def __init__(self, values: tuple[int, ...]) -> None:
        self.values = values

    def state_key(self) -> bytes:
        return GOVERNED_PARAMS_KEY

    def state_obj(self) -> list[Any]:
        return list(self.values)
class ScheduleRecord:
    """The epoch schedule (``consensus.epochs.EpochSchedule``) once governance changed the
    epoch length; deleted again if a change brings it back to the genesis length for ever, so
    a chain that never changed it has the entries and root it had before."""

    __slots__ = ("schedule",)

    def __init__(self, schedule: EpochSchedule) -> None:
        self.schedule = schedule

    def state_key(self) -> bytes:
        return SCHEDULE_KEY

    def state_obj(self) -> list[Any] | None:
        return self.schedule.to_obj() if len(self.schedule.segments) > 1 else None
