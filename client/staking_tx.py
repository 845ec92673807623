"""Staking transactions a validator operator signs (the node side's needs: joining a
localnet by staking). ``perpbft validator ...`` and ``perpbft stake ...`` build theirs on the
same actions (``state_machine/staking/actions.py``)."""

from __future__ import annotations

from state_machine.crypto import Keypair
from state_machine.staking.actions import CreateValidator
from state_machine.tx import Transaction, sign_transaction


def create_validator_tx(
    operator: Keypair,
    chain_id: str,
    nonce: int,
    *,
    p2p_address: str,
    self_stake_atoms: int,
    commission_bps: int = 0,
    consensus_key: bytes | None = None,
) -> Transaction:
    """Register ``operator`` as a validator whose consensus key is ``consensus_key`` (by
    default the operator's own key: one key for a node that operates itself), reachable at
    ``p2p_address`` (host:port), bonding ``self_stake_atoms`` USDC atoms of its balance."""
    action = CreateValidator(
        operator.public_key if consensus_key is None else consensus_key,
        p2p_address,
        commission_bps,
        self_stake_atoms,
    )
    return sign_transaction(operator, chain_id, nonce, [action])
