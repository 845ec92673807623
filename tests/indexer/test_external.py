"""``[indexer] mode = "external"``: ``perpbft indexer --home`` (its own process, reading the
node's data dir while the node has it open) fills the database the node serves history
from; the node itself indexes nothing."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import trio

from node.api.app import build_app
from node.config import IndexerSettings, init_home, load_config
from node.node import Node
from tests.indexer.chain import add_trade_blocks
from tests.node.test_api_pieces import ALICE, GENESIS, VALIDATOR
from tests.node.test_api_served import served, until

REPO = Path(__file__).resolve().parents[2]


def run_indexer(home: Path) -> dict[str, int]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "indexer", "--home", str(home), "--once", "--json"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return summary


async def test_a_separate_indexer_process_fills_the_database_the_node_serves(
    tmp_path: Path,
) -> None:
    home = tmp_path / "node"
    init_home(home)
    config = dataclasses.replace(load_config(home), indexer=IndexerSettings(mode="external"))
    node = Node(config, GENESIS, VALIDATOR)
    node.chain = node.open_chain()
    node.ready.set()
    try:
        await add_trade_blocks(node, 5)
        assert run_indexer(home)["indexed_height"] == 5  # beside the open node
        app = build_app(node)
        alice = ALICE.public_key.hex()
        async with served(app) as (base, _), httpx.AsyncClient(base_url=base) as http:
            await until(lambda: app.state.api.history.db is not None, "database open")
            assert app.state.api.history.service is None  # the node indexes nothing itself
            fills = (await http.get(f"/v1/accounts/{alice}/fills")).json()
            assert [f["height"] for f in fills["fills"]] == [5, 4, 3, 2, 1]
            await add_trade_blocks(node, 2)
            fills = (await http.get(f"/v1/accounts/{alice}/fills")).json()
            assert len(fills["fills"]) == 5  # not indexed yet: no indexer ran
            # In a thread: the API's event loop keeps running (a blocked loop sheds requests).
            summary = await trio.to_thread.run_sync(run_indexer, home)
            assert (summary["from_height"], summary["indexed_height"]) == (5, 7)
            answer = await http.get(f"/v1/accounts/{alice}/fills")
            assert answer.status_code == 200, answer.text
            fills = answer.json()
            assert [f["height"] for f in fills["fills"]] == [7, 6, 5, 4, 3, 2, 1]
    finally:
        node.sigpool.close()
        node.chain.close()
