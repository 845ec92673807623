"""Make a data dir whose state breaks conservation but is otherwise whole: what a state-machine
bug that creates money would leave on disk (the Merkle root commits to the wrong state, so every
store check passes and only the audit can tell)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from node.chain import Chain
from node.storage import DEFAULT_MAP_SIZE_BYTES, Store
from state_machine.genesis import Genesis
from state_machine.merkle_state import MerkleState

USDC = 0


def copy_with_extra_atoms(src: Path, dst: Path, genesis: Genesis, extra_atoms: int = 1) -> int:
    """Copy the state in data dir ``src`` to a new store in ``dst`` with ``extra_atoms`` more
    USDC in the first funded account; return the height."""
    chain = Chain.open_existing(src, genesis, map_size_bytes=DEFAULT_MAP_SIZE_BYTES)
    try:
        state = chain.state
        funded = next(
            acct
            for acct in state.accounts.values()
            if USDC in acct.balances and acct.balances[USDC].available_atoms > 0
        )
        funded.balances[USDC].available_atoms += extra_atoms
        entries = state.entries()
        tree = MerkleState.from_entries(entries)
        meta = chain.store.meta
        meta = dataclasses.replace(meta, state_root=tree.root(), base_height=meta.height + 1)
    finally:
        chain.close()
    Store.create_from(dst, meta, tree, entries).close()
    return meta.height
