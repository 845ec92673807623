"""Staking actions: wire types users sign inside a transaction (tags from 32 on, clear of the
exchange's). Amounts are USDC atoms (6 decimals)."""

from __future__ import annotations

from typing import ClassVar

from consensus.types import EVIDENCE, Evidence
from state_machine.codec import U16, U64, Bytes, Text, Wire, wire

PUBKEY = Bytes(exact=32)
MAX_P2P_ADDRESS_CHARS = 128
ADDRESS_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]"


@wire
class CreateValidator(Wire):
    """Register the signer as a validator operator with its consensus key, its p2p address
    (host:port) and commission, bonding ``self_stake_atoms`` from its USDC balance."""

    TAG: ClassVar[int] = 32
    WIRE = (
        ("consensus_key", PUBKEY),
        ("p2p_address", Text(MAX_P2P_ADDRESS_CHARS, ADDRESS_CHARS)),
        ("commission_bps", U16),
        ("self_stake_atoms", U64),
    )
    consensus_key: bytes
    p2p_address: str
    commission_bps: int
    self_stake_atoms: int


@wire
class EditValidator(Wire):
    """Change the signer's validator p2p address and commission."""

    TAG: ClassVar[int] = 33
    WIRE = (
        ("p2p_address", Text(MAX_P2P_ADDRESS_CHARS, ADDRESS_CHARS)),
        ("commission_bps", U16),
    )
    p2p_address: str
    commission_bps: int


@wire
class Delegate(Wire):
    """Bond ``amount_atoms`` to the validator run by ``operator`` (to yourself: self-stake)."""

    TAG: ClassVar[int] = 34
    WIRE = (("operator", PUBKEY), ("amount_atoms", U64))
    operator: bytes
    amount_atoms: int


@wire
class Undelegate(Wire):
    """Start unbonding ``amount_atoms``; they return to the balance after the unbonding period
    (and can be slashed until then)."""

    TAG: ClassVar[int] = 35
    WIRE = (("operator", PUBKEY), ("amount_atoms", U64))
    operator: bytes
    amount_atoms: int


@wire
class Unjail(Wire):
    """Ask to be considered for the active set again, after the minimum jail time."""

    TAG: ClassVar[int] = 36
    WIRE = ()


@wire
class SubmitEvidence(Wire):
    """Two conflicting signed consensus messages of one validator in one view, in ``epoch``
    (whose set must have held the offender). Anyone may submit; it is applied once."""

    TAG: ClassVar[int] = 37
    WIRE = (("epoch", U64), ("evidence", EVIDENCE))
    epoch: int
    evidence: Evidence


StakingAction = CreateValidator | EditValidator | Delegate | Undelegate | Unjail | SubmitEvidence
STAKING_ACTIONS = (CreateValidator, EditValidator, Delegate, Undelegate, Unjail, SubmitEvidence)
