"""The node's side of validator-set changes (``node/validator_sets.py``, ``node/evidence.py``):
sets read back from the stored staking state, the set an epoch's last block fixes, the sets
execution fixed before the replica takes them, and evidence checked against its epoch's set."""

from __future__ import annotations

from consensus import PREPARE
from consensus.epochs import EpochSets
from consensus.types import VoteEquivocation
from consensus.validators import ValidatorSet
from consensus.verify import sign_vote
from node.evidence import EvidenceBook, EvidenceVerdict
from node.validator_sets import NodeSets, member_addresses, next_set_after, sets_from_state
from p2p.address import PeerAddress
from state_machine.crypto import Keypair, sha256
from state_machine.exchange import BlockContext, ExchangeState, apply_block
from state_machine.genesis import default_genesis
from state_machine.staking.actions import CreateValidator
from state_machine.staking.genesis import StakingGenesis
from state_machine.tx import sign_transaction

USDC = 1_000_000
L = 4
KEYS = [Keypair(sha256(b"node-sets-%d" % i)) for i in range(4)]
JOINER = Keypair(sha256(b"node-sets-joiner"))
STAKING = StakingGenesis(
    epoch_length_blocks=L, min_self_stake_atoms=1_000 * USDC, unbonding_blocks=4 * L
)
GENESIS = default_genesis(
    "node-sets", [(k.public_key, 1_000) for k in KEYS], [JOINER.public_key], staking=STAKING
)


def run_block(state: ExchangeState, txs: list[object] = ()) -> None:  # type: ignore[assignment]
    apply_block(state, BlockContext(state.height + 1, state.timestamp_ms + 500), list(txs))  # type: ignore[arg-type]


def joined_state() -> ExchangeState:
    """The joiner staked in block 1; the end of epoch 0 (block L) fixed epoch 2 with it."""
    state = ExchangeState.from_genesis(GENESIS)
    create = CreateValidator(JOINER.public_key, "127.0.0.1:31999", 0, 2_000 * USDC)
    run_block(state, [sign_transaction(JOINER, GENESIS.chain_id, state.timestamp_ms + 1, [create])])
    for _ in range(L - 1):
        assert next_set_after(state, state.height) is None
        run_block(state)
    return state


def test_the_last_block_of_an_epoch_fixes_the_set_after_next_and_the_state_keeps_it() -> None:
    state = joined_state()
    fixed = next_set_after(state, L)
    assert fixed is not None and JOINER.public_key in fixed
    assert fixed.power_of(JOINER.public_key) == 2_000
    sets = sets_from_state(ExchangeState.from_entries(GENESIS, state.entries()))
    assert sets.epoch_length_blocks == L and sets.latest_epoch() == 2
    assert sets.for_height(L) == ValidatorSet([(k.public_key, 1_000) for k in KEYS])
    assert sets.for_height(2 * L + 1) == fixed
    assert member_addresses(state, (JOINER.public_key, KEYS[0].public_key)) == [
        PeerAddress(JOINER.public_key, "127.0.0.1", 31999)  # genesis validators publish none
    ]


def test_without_staking_one_set_for_ever() -> None:
    genesis = default_genesis("node-sets", [(k.public_key, 1) for k in KEYS])
    state = ExchangeState.from_genesis(genesis)
    sets = sets_from_state(state)
    assert sets.epoch_length_blocks == 0 and sets.for_height(10**6) is not None
    assert next_set_after(state, 0) is None


def test_node_sets_see_what_execution_fixed_before_the_replica_takes_it() -> None:
    genesis_set = ValidatorSet([(k.public_key, 1_000) for k in KEYS])
    with_joiner = ValidatorSet([*genesis_set.members(), (JOINER.public_key, 1_000)])
    node_sets = NodeSets(EpochSets.from_genesis(L, genesis_set))
    # At height L (epoch 1 next) the joiner is in no known set: not a member yet.
    assert not node_sets.is_member(L, JOINER.public_key)
    node_sets.learned(2, with_joiner)  # block L executed; the replica has not taken it
    assert node_sets.is_member(L, JOINER.public_key)  # pinned a whole epoch before it votes
    assert node_sets.current(L) == genesis_set and node_sets.current(2 * L) == with_joiner
    node_sets.sets.add(2, with_joiner)  # the replica took it: the same answers
    assert node_sets.is_member(L, JOINER.public_key) and node_sets.current(2 * L) == with_joiner
    # Two epochs on, a set without a genesis validator: it is no member any more.
    node_sets.learned(3, with_joiner)
    node_sets.learned(4, ValidatorSet([(k.public_key, 1_000) for k in (*KEYS[1:], JOINER)]))
    assert node_sets.is_member(3 * L, KEYS[0].public_key)
    assert not node_sets.is_member(4 * L, KEYS[0].public_key)


def test_evidence_is_checked_against_the_set_of_its_epoch() -> None:
    genesis_set = ValidatorSet([(k.public_key, 1_000) for k in KEYS])
    sets = EpochSets.from_genesis(L, genesis_set)
    book = EvidenceBook(GENESIS.chain_id, sets)

    def equivocation(key: Keypair, view: int, height: int) -> VoteEquivocation:
        a = sign_vote(key, GENESIS.chain_id, PREPARE, view, height, b"\x0a" * 32)
        b = sign_vote(key, GENESIS.chain_id, PREPARE, view, height, b"\x0b" * 32)
        return VoteEquivocation(a, b)

    # The joiner is not in epoch 0's set: its conflicting votes there prove nothing.
    assert book.consider(equivocation(JOINER, 3, 2)) is EvidenceVerdict.FORGED
    # A height of an epoch whose set we do not know: not checkable, nobody's fault.
    assert book.consider(equivocation(JOINER, 30, 5 * L)) is EvidenceVerdict.UNKNOWN_EPOCH
    sets.add(2, ValidatorSet([*genesis_set.members(), (JOINER.public_key, 1_000)]))
    assert book.consider(equivocation(JOINER, 12, 2 * L + 1)) is EvidenceVerdict.NEW
    assert book.consider(equivocation(KEYS[0], 4, 3)) is EvidenceVerdict.NEW
