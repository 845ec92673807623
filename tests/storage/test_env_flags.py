"""The LMDB environment is opened durably, and stays so.

No crash test can see a weakened flag: SIGKILL leaves the page cache to the kernel, which
writes it out anyway, so with ``sync`` off every kill -9 test still passes and blocks are lost
only when the machine loses power. These tests read the flags of the really opened environment
(``Environment.flags()``) of a created and of a reopened store, so changing any of them in
``node/storage.py`` fails here; the reason for each is written next to the open call.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from node.storage import Store
from tests.storage.helpers import CHAIN_ID, GENESIS_ENTRIES, GENESIS_HASH, commit, make_block

# flag -> the value durability needs (see _open_env in node/storage.py for why).
DURABLE_FLAGS = {
    "sync": True,  # fsync data pages at each commit
    "metasync": True,  # fsync the meta page at each commit
    "writemap": False,  # no writable map a stray pointer could corrupt
    "map_async": False,  # no asynchronous flushing of the map
    "lock": True,  # the reader table that keeps other processes' read pages safe
    "readonly": False,  # the node writes
}


def assert_durable(store: Store) -> None:
    flags = store.env_flags()
    weakened = {k: flags.get(k) for k, v in DURABLE_FLAGS.items() if flags.get(k) != v}
    assert not weakened, f"LMDB opened with non-durable flags: {weakened}"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    with Store.create(tmp_path, CHAIN_ID, GENESIS_HASH, GENESIS_ENTRIES) as store:
        assert_durable(store)
        commit(store, make_block(1, 1))
    return tmp_path


def test_a_created_store_is_durable(tmp_path: Path) -> None:
    with Store.create(tmp_path, CHAIN_ID, GENESIS_HASH, GENESIS_ENTRIES) as store:
        assert_durable(store)


def test_a_reopened_store_is_durable(data_dir: Path) -> None:
    with Store.open(data_dir, walk_pages=False) as store:
        assert store.height == 1
        assert_durable(store)
