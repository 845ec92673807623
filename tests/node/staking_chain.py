"""A real node store with staking on, whose blocks are certified by the set of their epoch.

The node is the real store and execution path (``Node._execute``), in archive mode so every
past height is provable; staking is switched on at the open state, before block 1 (the chain's
genesis has no staking section: its first staking records are written by block 1). Each
block's commit QC is signed by every member of the set the *state* says certifies its height,
with the real keys, so the QCs a light client checks are the ones a real chain would make.

``build_set_changes`` drives three hand-overs: Alice and Bob register validators (epoch 2:
the genesis validator, whose one-USDC stake is below the minimum, is out); Bob's stake grows
past Alice's (epoch 3: the majority moves); Alice undelegates below the minimum self-stake
(epoch 4: Bob alone).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from consensus.events import Execute
from consensus.types import COMMIT, Block, BlockHeader, QCSignature, QuorumCert, payload_root
from consensus.verify import sign_vote
from node.config import Config, StorageSettings
from node.handover import HandoverCertificate
from node.node import Node, now_ms
from state_machine.crypto import Keypair
from state_machine.genesis import Genesis
from state_machine.staking.actions import CreateValidator, Delegate, Undelegate
from state_machine.staking.engine import StakingState
from state_machine.staking.hook import enable_staking
from state_machine.staking.params import ATOMS_PER_POWER, StakingParams
from state_machine.tx import Action, sign_transaction
from tests.node.test_api_pieces import ALICE, BOB, GENESIS, VALIDATOR

USDC = ATOMS_PER_POWER
EPOCH_BLOCKS = 3
PARAMS = StakingParams(
    epoch_length_blocks=EPOCH_BLOCKS,
    active_set_size=4,
    min_self_stake_atoms=1_000 * USDC,
    min_delegation_atoms=10 * USDC,
    unbonding_blocks=4 * EPOCH_BLOCKS,
    jail_blocks=EPOCH_BLOCKS,
)
ALICE_CONSENSUS = Keypair(b"\x11" * 32)
BOB_CONSENSUS = Keypair(b"\x12" * 32)
SIGNING_KEYS = {k.public_key: k for k in (VALIDATOR, ALICE_CONSENSUS, BOB_CONSENSUS)}


ARCHIVE = StorageSettings(archive=True, proof_history_heights=0)


@contextmanager
def staking_node(
    home: Path,
    params: StakingParams = PARAMS,
    storage: StorageSettings = ARCHIVE,
    genesis: Genesis = GENESIS,
) -> Iterator[Node]:
    n = Node(Config(home=home, storage=storage), genesis, VALIDATOR)
    n.chain = n.open_chain()
    enable_staking(n.chain.state, params)
    n._adopt_stored_sets(n.chain)  # the epoch sets of the state staking was switched on in
    n.ready.set()
    try:
        yield n
    finally:
        n.sigpool.close()
        n.chain.close()


def staking_of(n: Node) -> StakingState:
    assert n.chain is not None
    st: StakingState | None = n.chain.state.staking
    assert st is not None
    return st


async def execute_epoch_signed(n: Node, payload: list[bytes]) -> None:
    """Commit and execute the next block, its commit QC signed by its epoch's whole set."""
    assert n.chain is not None
    height = n.chain.height + 1
    st = staking_of(n)
    members = st.epoch_sets[st.schedule.epoch_of(height)].members
    header = BlockHeader(
        height,
        height,
        b"\x00" * 32,
        now_ms(),
        members[0][0],
        payload_root(payload),
        n.chain.state_root,
    )
    block = Block(header, tuple(payload))
    qc = commit_qc_by(header, [SIGNING_KEYS[key] for key, _ in members])
    await n._execute(Execute(block, qc))


def commit_qc_by(header: BlockHeader, signers: list[Keypair]) -> QuorumCert:
    """A commit QC for ``header`` with ``signers``' real signatures (whoever they are)."""
    block_hash = header.block_hash()
    sigs = tuple(
        QCSignature(
            k.public_key,
            sign_vote(
                k, GENESIS.chain_id, COMMIT, header.height, header.height, block_hash
            ).signature,
        )
        for k in signers
    )
    return QuorumCert(COMMIT, header.height, header.height, block_hash, sigs)


def stored_handovers(n: Node, epochs: int = 12) -> dict[int, HandoverCertificate]:
    """The hand-over certificates ``n`` keeps for epochs 0 .. ``epochs`` - 1, by epoch."""
    store = n.handovers.store
    assert store is not None
    return {e: c for e in range(epochs) if (c := store.get(e)) is not None}


def signed(key: Keypair, nonce: int, *actions: Action) -> bytes:
    return sign_transaction(key, GENESIS.chain_id, nonce, list(actions)).to_wire()


async def run_to(n: Node, height: int) -> None:
    assert n.chain is not None
    while n.chain.height < height:
        await execute_epoch_signed(n, [])


async def build_set_changes(n: Node) -> None:
    """Heights 1..16: the set changes at epochs 2, 3 and 4 (module doc)."""
    nonce = now_ms()
    create_a = CreateValidator(ALICE_CONSENSUS.public_key, "10.0.0.1:26656", 500, 10_000 * USDC)
    create_b = CreateValidator(BOB_CONSENSUS.public_key, "10.0.0.2:26656", 1_000, 5_000 * USDC)
    await execute_epoch_signed(n, [signed(ALICE, nonce, create_a), signed(BOB, nonce, create_b)])
    await run_to(n, 3)  # end of epoch 0: the set of epoch 2
    await execute_epoch_signed(n, [signed(BOB, nonce + 1, Delegate(BOB.public_key, 20_000 * USDC))])
    await run_to(n, 6)  # end of epoch 1: the set of epoch 3
    undelegate = Undelegate(ALICE.public_key, 9_500 * USDC)
    await execute_epoch_signed(n, [signed(ALICE, nonce + 2, undelegate)])
    await run_to(n, 16)  # epoch 4 (heights 13..15) and the first block of epoch 5
