"""Voting power for governance: the one function every tally and vote asks.

With staking on, a validator operator votes with its bonded stake (self-stake plus its
delegations: delegators vote through their validator), jailed validators not at all. With
staking off, the genesis validators vote with their genesis power.
"""

from __future__ import annotations

from state_machine.state import ExchangeCore


def voting_power(st: ExchangeCore) -> dict[bytes, int]:
    """Voter key -> power now (only voters with power > 0)."""
    staking = st.staking
    if staking is None:
        return {v.pubkey: v.power for v in st.genesis.validators}
    return {
        op: rec.tokens_atoms
        for op, rec in staking.validators.items()
        if not rec.jailed and rec.tokens_atoms > 0
    }
