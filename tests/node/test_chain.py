"""Chain opening refuses data it cannot trust, with a one-line reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.chain import Chain, ChainError
from state_machine.crypto import Keypair
from state_machine.genesis import default_genesis

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
