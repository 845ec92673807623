"""The genesis ``staking`` section: absent it changes nothing (encoding, hash, state); present,
the genesis validators are registered and staked from height 0, the state survives a rebuild
from its entries, and USDC conservation counts bonded, unbonding, minted and burnt stake."""

from __future__ import annotations

import dataclasses

import pytest

from state_machine.audit import check_conservation, supply_totals
from state_machine.codec import DecodeError, encode
from state_machine.crypto import Keypair, sha256
from state_machine.exchange import BlockContext, ExchangeState, apply_block
from state_machine.genesis import (
    Genesis,
    GenesisError,
    default_genesis,
    genesis_from_json,
    validate_genesis,
)
from state_machine.invariants import InvariantError
from state_machine.staking.actions import CreateValidator, Undelegate
from state_machine.staking.genesis import GenesisOperator, StakingGenesis
from state_machine.staking.records import P_EPOCH_SET, P_VALIDATOR
from state_machine.tx import sign_transaction

USDC = 1_000_000
KEYS = [Keypair(sha256(b"staking-genesis-node-%d" % i)) for i in range(4)]
OPERATOR = Keypair(sha256(b"staking-genesis-operator"))
JOINER = Keypair(sha256(b"staking-genesis-joiner"))
SECTION = StakingGenesis(
    epoch_length_blocks=4,
    min_self_stake_atoms=1_000 * USDC,
    unbonding_blocks=8,
    jail_blocks=4,
    operators=(GenesisOperator(KEYS[0].public_key, OPERATOR.public_key, "10.0.0.1:26656"),),
)


def genesis(staking: StakingGenesis | None = SECTION, power: int = 1_000) -> Genesis:
    return default_genesis(
        "staking-genesis",
        [(k.public_key, power) for k in KEYS],
        [JOINER.public_key],
        staking=staking,
    )


def test_without_the_section_the_encoding_and_the_state_are_unchanged() -> None:
    g = genesis(staking=None, power=1)
    assert len(g.to_obj()) == 7  # the seven fields genesis had before the section existed
    assert "\"staking\":" not in g.to_json()
    assert Genesis.from_wire(g.to_wire()) == g and genesis_from_json(g.to_json()) == g
    state = ExchangeState.from_genesis(g)
    assert state.staking is None
    assert not any(key[0] in range(0x20, 0x30) for key, _ in state.entries())


def test_an_explicit_absent_section_is_not_canonical() -> None:
    g = genesis(staking=None, power=1)
    with pytest.raises(DecodeError, match="left out"):
        Genesis.from_wire(encode([*g.to_obj(), None]))


def test_the_section_round_trips_and_registers_the_genesis_validators() -> None:
    g = genesis()
    assert Genesis.from_wire(g.to_wire()) == g and genesis_from_json(g.to_json()) == g
    state = ExchangeState.from_genesis(g)
    staking = state.staking
    assert staking is not None and staking.params == SECTION.params()
    record = staking.validators[OPERATOR.public_key]
    assert record.consensus_key == KEYS[0].public_key and record.p2p_address == "10.0.0.1:26656"
    assert staking.self_stake_atoms(record) == 1_000 * USDC
    for key in KEYS[1:]:  # not listed: its own operator
        assert staking.validators[key.public_key].tokens_atoms == 1_000 * USDC
    assert [e for e in sorted(staking.epoch_sets)] == [0, 1]
    keys = [k for k, _ in state.entries()]
    assert any(k[0] == P_VALIDATOR for k in keys) and any(k[0] == P_EPOCH_SET for k in keys)
    check_conservation(state)
    rebuilt = ExchangeState.from_entries(g, state.entries())
    assert rebuilt.staking is not None and rebuilt.digest() == state.digest()


def test_json_may_omit_staking_fields() -> None:
    text = genesis(staking=None).to_json().rstrip().rstrip("}") + ', "staking": {}}'
    g = genesis_from_json(text)
    assert g.staking == StakingGenesis()


@pytest.mark.parametrize(
    ("section", "power", "field"),
    [
        (StakingGenesis(epoch_length_blocks=0), 1_000, "staking"),
        (StakingGenesis(min_self_stake_atoms=1_000 * USDC), 999, "validators[0].power"),
        (
            StakingGenesis(operators=(GenesisOperator(JOINER.public_key, JOINER.public_key, ""),)),
            1_000,
            "staking.operators[0].consensus_key",
        ),
        (
            StakingGenesis(
                operators=(GenesisOperator(KEYS[0].public_key, KEYS[1].public_key, "h:1"),)
            ),
            1_000,
            "staking.operators",
        ),
    ],
)
def test_a_bad_section_is_refused_naming_the_field(
    section: StakingGenesis, power: int, field: str
) -> None:
    g = dataclasses.replace(genesis(staking=None, power=power), staking=section)
    with pytest.raises(GenesisError) as info:
        validate_genesis(g)
    assert str(info.value).startswith(f"{field}:"), info.value


def block(state: ExchangeState, txs: list[object]) -> object:
    ctx = BlockContext(state.height + 1, state.timestamp_ms + 500)
    return apply_block(state, ctx, txs)  # type: ignore[arg-type]


def test_conservation_counts_bonded_and_unbonding_stake() -> None:
    """Stake leaves the balance for staking and comes back after unbonding; the audit holds
    at every step, and fails if the staking terms are left out."""
    g = genesis()
    state = ExchangeState.from_genesis(g)
    create = CreateValidator(JOINER.public_key, "10.0.0.9:26656", 0, 2_000 * USDC)
    tx = sign_transaction(JOINER, g.chain_id, state.timestamp_ms + 1, [create])
    block(state, [tx])
    check_conservation(state)
    actual, expected = supply_totals(state)[0]
    assert actual == expected
    undelegate = Undelegate(JOINER.public_key, 500 * USDC)
    tx = sign_transaction(JOINER, g.chain_id, state.timestamp_ms + 2, [undelegate])
    block(state, [tx])
    check_conservation(state)
    assert state.staking is not None and state.staking.unbondings
    for _ in range(SECTION.unbonding_blocks + 1):
        block(state, [])
        check_conservation(state)
    assert not state.staking.unbondings
    # Without the staking terms the same state fails the audit: they are what balances it.
    assert state.staking.validators[JOINER.public_key].tokens_atoms == 1_500 * USDC
    state.staking.validators[JOINER.public_key].tokens_atoms += 1
    with pytest.raises(InvariantError):
        check_conservation(state)
