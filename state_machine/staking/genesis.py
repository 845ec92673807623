"""The genesis ``staking`` section: staking on from height 0.

Absent, staking is off and the genesis encodes (and hashes) as it did before the section
existed. Present, it holds the :class:`~state_machine.staking.params.StakingParams` and, for
genesis validators that want one, an operator account other than the consensus key and the
p2p address the validator record publishes. Every genesis validator is a registered validator
from height 0 with a self-stake of its genesis power in whole USDC, minted (it is not taken
from a balance: the conservation audit counts it as genesis supply), and the genesis set is the
set of epochs 0 and 1 (``consensus/epochs.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

from state_machine.codec import U16, U32, U64, Bytes, ListOf, Struct, Text, Wire, wire
from state_machine.staking.actions import ADDRESS_CHARS, MAX_P2P_ADDRESS_CHARS
from state_machine.staking.params import ATOMS_PER_POWER, StakingParams

GENESIS_OPERATORS_MAX = 1024


@wire
class GenesisOperator(Wire):
    """Who operates the genesis validator ``consensus_key`` (signs its staking actions and
    receives its self-stake when it unbonds) and where its p2p port is."""

    WIRE = (
        ("consensus_key", Bytes(exact=32)),
        ("operator", Bytes(exact=32)),
        ("p2p_address", Text(MAX_P2P_ADDRESS_CHARS, ADDRESS_CHARS)),
    )
    consensus_key: bytes
    operator: bytes
    p2p_address: str


_DEFAULTS = StakingParams()


@wire
class StakingGenesis(Wire):
    """StakingParams field by field (defaults: the mainnet-like ones in ``params.py``)."""

    WIRE = (
        ("epoch_length_blocks", U64),
        ("active_set_size", U16),
        ("min_self_stake_atoms", U64),
        ("min_delegation_atoms", U64),
        ("unbonding_blocks", U64),
        ("jail_blocks", U64),
        ("slash_bps", U16),
        ("max_commission_bps", U16),
        ("max_unbondings_per_pair", U32),
        ("max_validators", U32),
        ("operators", ListOf(Struct(GenesisOperator), GENESIS_OPERATORS_MAX)),
    )
    epoch_length_blocks: int = _DEFAULTS.epoch_length_blocks
    active_set_size: int = _DEFAULTS.active_set_size
    min_self_stake_atoms: int = _DEFAULTS.min_self_stake_atoms
    min_delegation_atoms: int = _DEFAULTS.min_delegation_atoms
    unbonding_blocks: int = _DEFAULTS.unbonding_blocks
    jail_blocks: int = _DEFAULTS.jail_blocks
    slash_bps: int = _DEFAULTS.slash_bps
    max_commission_bps: int = _DEFAULTS.max_commission_bps
    max_unbondings_per_pair: int = _DEFAULTS.max_unbondings_per_pair
    max_validators: int = _DEFAULTS.max_validators
    operators: tuple[GenesisOperator, ...] = ()

    def params(self) -> StakingParams:
        """The parameters (raises ValueError naming the broken rule)."""
        return StakingParams(
            epoch_length_blocks=self.epoch_length_blocks,
            active_set_size=self.active_set_size,
            min_self_stake_atoms=self.min_self_stake_atoms,
            min_delegation_atoms=self.min_delegation_atoms,
            unbonding_blocks=self.unbonding_blocks,
            jail_blocks=self.jail_blocks,
            slash_bps=self.slash_bps,
            max_commission_bps=self.max_commission_bps,
            max_unbondings_per_pair=self.max_unbondings_per_pair,
            max_validators=self.max_validators,
        )

    def operator_of(self, consensus_key: bytes) -> tuple[bytes, str]:
        """(operator, p2p address) of a genesis validator: its own key and no address unless
        listed."""
        for entry in self.operators:
            if entry.consensus_key == consensus_key:
                return entry.operator, entry.p2p_address
        return consensus_key, ""


def staking_genesis_problem(
    staking: StakingGenesis, validators: Sequence[tuple[bytes, int]]
) -> tuple[str, str] | None:
    """``(field path, reason)`` of the first problem of the section against the genesis
    validators ``(key, power)``, or None."""
    try:
        params = staking.params()
    except ValueError as exc:
        return "staking", str(exc)
    if len(validators) > params.max_validators:
        return "staking.max_validators", "fewer than the genesis validators"
    keys = {key for key, _ in validators}
    listed: set[bytes] = set()
    for i, entry in enumerate(staking.operators):
        path = f"staking.operators[{i}]"
        if entry.consensus_key not in keys:
            return f"{path}.consensus_key", "not a genesis validator"
        if entry.consensus_key in listed:
            return f"{path}.consensus_key", "listed twice"
        listed.add(entry.consensus_key)
    operators = [staking.operator_of(key)[0] for key, _ in validators]
    if len(set(operators)) != len(operators):
        return "staking.operators", "one operator account for two genesis validators"
    for i, (_, power) in enumerate(validators):
        if power * ATOMS_PER_POWER < params.min_self_stake_atoms:
            return (
                f"validators[{i}].power",
                "its self-stake (power in whole USDC) is below staking.min_self_stake_atoms, "
                "so it would leave the set at the first epoch change",
            )
    return None
