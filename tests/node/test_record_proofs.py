"""Proofs of every kind of state record (``GET /v1/proofs/records/{kind}``) on an archive node,
checked by the light client against the genesis validators, at the latest and at past heights;
tampered answers and a proof of another record are refused; bad ids are a 400.

The node is a real store and the node's own execution path (``Node._execute``) on a real
hypercorn server; each block's commit QC is signed by the genesis validator, so the light
client's QC check is the real one."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from cli.lightclient import verify_record_proof
from cli.main import main
from consensus.events import Execute
from consensus.types import COMMIT, Block, BlockHeader, QCSignature, QuorumCert, payload_root
from consensus.verify import sign_vote
from node.api.app import build_app
from node.api.recordkeys import RECORD_KINDS, canonical_ids, record_key, record_kind
from node.config import Config, StorageSettings
from node.node import Node, now_ms
from state_machine.genesis import genesis_to_json
from tests.indexer.chain import trade_payload
from tests.node.test_api_pieces import ALICE, GENESIS, VALIDATOR
from tests.node.test_api_served import order, served

BLOCKS = 6


@contextmanager
def archive_node(home: Path) -> Iterator[Node]:
    """An open node in archive mode that keeps no proof history of its own: every past height
    it can prove is the archive's doing."""
    storage = StorageSettings(archive=True, proof_history_heights=0)
    n = Node(Config(home=home, storage=storage), GENESIS, VALIDATOR)
    n.chain = n.open_chain()
    n.ready.set()
    try:
        yield n
    finally:
        n.sigpool.close()
        n.chain.close()


async def execute_signed_block(n: Node, payload: list[bytes]) -> None:
    """Commit and execute the next block, certified by a QC the genesis validator signed."""
    assert n.chain is not None
    height = n.chain.height + 1
    header = BlockHeader(
        height,
        height,
        b"\x00" * 32,
        now_ms(),
        VALIDATOR.public_key,
        payload_root(payload),
        n.chain.state_root,
    )
    block = Block(header, tuple(payload))
    block_hash = block.block_hash()
    vote = sign_vote(VALIDATOR, GENESIS.chain_id, COMMIT, height, height, block_hash)
    signature = QCSignature(VALIDATOR.public_key, vote.signature)
    await n._execute(Execute(block, QuorumCert(COMMIT, height, height, block_hash, (signature,))))


def stored_keys(n: Node) -> list[bytes]:
    """Every state key the store holds (its ``state`` db is slot(2) || key)."""
    assert n.chain is not None
    with n.chain.store.read_txn() as txn:
        cursor = txn.cursor(db=n.chain.store._dbs["state"])
        return sorted(bytes(k)[2:] for k in cursor.iternext(keys=True, values=False))


def kind_of(key: bytes) -> str:
    return next(k.name for k in RECORD_KINDS.values() if key.startswith(k.prefix))


async def record_answer(http: httpx.AsyncClient, kind: str, ids: dict[str, str], **q: Any) -> Any:
    answer = await http.get(f"/v1/proofs/records/{kind}", params={**ids, **q})
    assert answer.status_code == 200, answer.text
    return answer.json()


def verified(body: Any, key: bytes, kind: str, height: int | None = None) -> Any:
    check = verify_record_proof(body, GENESIS, key, kind, height)
    assert check.ok, (kind, check.failures)
    return check.values[key.hex()]


def flip(text: str) -> str:
    return text[:-2] + ("0" if text[-2] != "0" else "1") + text[-1:]


TAMPERING: dict[str, Callable[[dict[str, Any]], None]] = {
    "value": lambda b: b["entries"][0].update(value=flip(b["entries"][0]["value"])),
    "proof": lambda b: b["entries"][0].update(proof=flip(b["entries"][0]["proof"])),
    "root": lambda b: b.update(state_root=flip(b["state_root"])),
    "dropped entry": lambda b: b["entries"].pop(0),
    "header": lambda b: b["certified_by"]["header"].update(
        wire=flip(b["certified_by"]["header"]["wire"])
    ),
    "qc signature": lambda b: b["certified_by"]["commit_qc"].update(
        wire=flip(b["certified_by"]["commit_qc"]["wire"])
    ),
    "kind": lambda b: b.update(kind="trigger" if b["kind"] == "order" else "order"),
}


async def test_every_record_kind_is_provable_now_and_in_the_past(tmp_path: Path) -> None:
    with archive_node(tmp_path) as n:
        for _ in range(BLOCKS):
            assert n.chain is not None
            await execute_signed_block(n, trade_payload(n.chain.height + 1))
        # A buy far below the market rests on the book: an open order record.
        await execute_signed_block(n, [order(ALICE, now_ms() + 10_000, True, 5_900_000, 3)])
        await execute_signed_block(n, [])  # certifies the state after the resting order
        assert n.chain is not None
        latest = n.chain.height - 1
        keys = stored_keys(n)
        kinds = {kind_of(k) for k in keys}
        assert {"meta", "balance", "position", "order", "market", "nonces"} <= kinds, kinds
        async with served(build_app(n)) as (base, _), httpx.AsyncClient(base_url=base) as http:
            # Every record the state holds, by kind and the ids a user names it by.
            for key in keys:
                kind = record_kind(kind_of(key))
                ids = canonical_ids(kind, key)
                assert record_key(kind, ids) == key
                body = await record_answer(http, kind.name, ids, height=latest)
                assert body["ids"] == ids
                assert verified(body, key, kind.name, latest) is not None
            # Past heights (archive keeps them although proof_history_heights = 0): Alice's
            # position changed at every trade, so each height proves its own value.
            market = record_kind("position")
            pos_ids = {"account": ALICE.public_key.hex(), "market": "2"}
            pos_key = record_key(market, pos_ids)
            seen = []
            for height in range(0, latest + 1):
                body = await record_answer(http, "position", pos_ids, height=height)
                seen.append(verified(body, pos_key, "position", height))
            assert seen[0] is None  # no position at genesis: its absence is proven
            assert len({json.dumps(v) for v in seen[1 : BLOCKS + 1]}) == BLOCKS
            # An order that does not exist: absence proven, not an error.
            ghost = {"market": "2", "order": "999999"}
            body = await record_answer(http, "order", ghost, height=latest)
            assert verified(body, record_key(record_kind("order"), ghost), "order") is None


async def test_tampered_or_substituted_record_proofs_are_refused(tmp_path: Path) -> None:
    with archive_node(tmp_path) as n:
        for _ in range(3):
            assert n.chain is not None
            await execute_signed_block(n, trade_payload(n.chain.height + 1))
        await execute_signed_block(n, [])
        async with served(build_app(n)) as (base, _), httpx.AsyncClient(base_url=base) as http:
            ids = {"market": "2"}
            key = record_key(record_kind("market"), ids)
            body = await record_answer(http, "market", ids, height=2)
            verified(body, key, "market", 2)
            for name, change in TAMPERING.items():
                bad = copy.deepcopy(body)
                change(bad)
                check = verify_record_proof(bad, GENESIS, key, "market", 2)
                assert not check.ok, f"tampered {name} still verifies"
            # A valid proof of another record does not answer the question asked.
            other = await record_answer(http, "market", {"market": "1"}, height=2)
            assert not verify_record_proof(other, GENESIS, key, "market", 2).ok
            # A valid proof at another height neither.
            assert not verify_record_proof(body, GENESIS, key, "market", 3).ok


async def test_bad_record_ids_are_a_clear_400(tmp_path: Path) -> None:
    alice = ALICE.public_key.hex()
    cases = [
        ("nope", {}),
        ("order", {"market": "2"}),  # order id missing
        ("market", {"market": "2", "order": "1"}),  # an id markets do not have
        ("balance", {"account": alice[:-2], "asset": "0"}),
        ("balance", {"account": "zz" * 32, "asset": "0"}),
        ("fees", {"asset": str(2**32)}),
        ("withdrawal", {"withdrawal": "-1"}),
    ]
    with archive_node(tmp_path) as n:
        await execute_signed_block(n, [])
        async with served(build_app(n)) as (base, _), httpx.AsyncClient(base_url=base) as http:
            for kind, ids in cases:
                answer = await http.get(f"/v1/proofs/records/{kind}", params=ids)
                assert answer.status_code == 400, (kind, ids, answer.text)
                assert answer.json()["code"] == "bad_record", answer.text
            twice = await http.get("/v1/proofs/records/market?market=1&market=2")
            assert twice.status_code == 400
            future = await http.get(
                "/v1/proofs/records/market", params={"market": "1", "height": "99"}
            )
            assert future.status_code == 404
            assert future.json()["code"] == "height_not_provable"


def test_proof_command_verifies_a_saved_record_answer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "order.json"

    async def fetch() -> None:
        with archive_node(tmp_path / "home") as n:
            await execute_signed_block(n, [order(ALICE, now_ms(), True, 5_900_000, 3)])
            await execute_signed_block(n, [])
            async with served(build_app(n)) as (base, _), httpx.AsyncClient(base_url=base) as http:
                order_key = next(k for k in stored_keys(n) if k[:1] == b"\x03")
                ids = canonical_ids(record_kind("order"), order_key)
                saved.write_text(json.dumps(await record_answer(http, "order", ids, height=1)))

    trio.run(fetch)
    body = json.loads(saved.read_text())
    genesis = tmp_path / "genesis.json"
    genesis.write_text(genesis_to_json(GENESIS))
    ids = body["ids"]
    argv = ["proof", "order", ids["market"], ids["order"], "--genesis", str(genesis)]
    assert main([*argv, "--height", "1", "--proof-file", str(saved)]) == 0
    assert capsys.readouterr().out.startswith(f"VERIFIED order market=2 order={ids['order']}")
    # The same answer, asked as another order id: the key differs, so it is refused.
    other = ["proof", "order", ids["market"], str(int(ids["order"]) + 1)]
    assert main([*other, "--genesis", str(genesis), "--proof-file", str(saved)]) == 1
    assert capsys.readouterr().out.startswith("NOT VERIFIED")
    TAMPERING["value"](body)
    saved.write_text(json.dumps(body))
    assert main([*argv, "--proof-file", str(saved)]) == 1
    assert "does not match root" in capsys.readouterr().out
