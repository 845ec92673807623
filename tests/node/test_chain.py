"""Chain opening refuses data it cannot trust, with a one-line reason."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest

from node.chain import Chain, ChainError
from node.storage import Store
from state_machine.crypto import Keypair
from state_machine.exchange import ExchangeState
from state_machine.genesis import Genesis, default_genesis

KEY = Keypair(b"\x03" * 32)


def test_undecodable_safety_record_is_a_clear_error(tmp_path: Path) -> None:
    genesis = default_genesis("perpbft-test", [(KEY.public_key, 1)])
    chain = Chain.open(tmp_path, genesis, map_size_bytes=64 * 1024 * 1024)
    try:
        chain.store.write_safety_data(b"\x93\x01\x02")  # an older, shorter record
        with pytest.raises(ChainError, match="safety record does not decode"):
            chain.read_safety(genesis.chain_id)
    finally:
        chain.close()


def test_other_genesis_is_refused(tmp_path: Path) -> None:
    genesis = default_genesis("perpbft-test", [(KEY.public_key, 1)])
    Chain.open(tmp_path, genesis, map_size_bytes=64 * 1024 * 1024).close()
    other = default_genesis("perpbft-other", [(KEY.public_key, 1)])
    with pytest.raises(ChainError, match=r"data belongs to chain .perpbft-test."):
        Chain.open(tmp_path, other, map_size_bytes=64 * 1024 * 1024)


MIB = 1024 * 1024


def store_with_entries(
    tmp_path: Path, genesis: Genesis, entries: list[tuple[bytes, bytes]]
) -> None:
    """A store whose Merkle root matches ``entries`` (so LMDB-level recovery passes)."""
    Store.create(tmp_path, genesis.chain_id, genesis.hash(), sorted(entries)).close()


def test_entries_the_exchange_cannot_rebuild_are_refused(tmp_path: Path) -> None:
    genesis = default_genesis("perpbft-test", [(KEY.public_key, 1)], [KEY.public_key])
    entries = ExchangeState.from_genesis(genesis).entries()
    balance = next(i for i, (k, _) in enumerate(entries) if k[:1] == b"\x01")
    entries[balance] = (entries[balance][0], b"\xc1 not msgpack")
    store_with_entries(tmp_path, genesis, entries)
    with pytest.raises(ChainError, match="cannot rebuild the exchange state"):
        Chain.open(tmp_path, genesis, map_size_bytes=64 * MIB)


def test_entries_that_rebuild_to_another_root_are_refused(tmp_path: Path) -> None:
    """A balance stored in a non-minimal msgpack form decodes to the same numbers, but the
    rebuilt state writes it canonically: its root differs from the stored one, and the node
    refuses to run on it."""
    genesis = default_genesis("perpbft-test", [(KEY.public_key, 1)], [KEY.public_key])
    entries = ExchangeState.from_genesis(genesis).entries()
    i = next(i for i, (k, _) in enumerate(entries) if k[:1] == b"\x01")
    numbers = msgpack.unpackb(entries[i][1])
    loose = bytes([0x90 + len(numbers)]) + b"".join(b"\xcf" + n.to_bytes(8, "big") for n in numbers)
    entries[i] = (entries[i][0], loose)
    store_with_entries(tmp_path, genesis, entries)
    with pytest.raises(ChainError, match=r"rebuilt state root [0-9a-f]+ differs from the stored"):
        Chain.open(tmp_path, genesis, map_size_bytes=64 * MIB)
