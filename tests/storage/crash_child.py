"""Child process of the crash test: commit deterministic blocks until killed.

``python -m tests.storage.crash_child DATA_DIR SEED`` opens (or creates) the store, prints
``ready HEIGHT`` and commits block after block of ``make_block(SEED, h)``, writing the safety
record for h before each block and printing ``committed h`` after it. It stops by itself
after ``MAX_RUN_S`` in case nobody kills it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from node.storage import Store, StoreMissingError
from tests.storage.helpers import CHAIN_ID, GENESIS_ENTRIES, GENESIS_HASH, commit, make_block

MAX_RUN_S = 30.0
CHANGES_PER_BLOCK = 300
KEY_SPACE = 5000


def main() -> int:
    data_dir = Path(sys.argv[1])
    seed = int(sys.argv[2])
    try:
        store = Store.open(data_dir, walk_pages=False)
    except StoreMissingError:  # first run, or killed while creating
        store = Store.create(data_dir, CHAIN_ID, GENESIS_HASH, GENESIS_ENTRIES)
    print(f"ready {store.height}", flush=True)
    deadline = time.monotonic() + MAX_RUN_S
    while time.monotonic() < deadline:
        height = store.height + 1
        store.write_safety_data(b"safety %d" % height)
        commit(store, make_block(seed, height, KEY_SPACE, CHANGES_PER_BLOCK))
        print(f"committed {height}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
