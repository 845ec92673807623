"""The OpenAPI schema describes every served route, and real answers of every route (and of
its errors) validate against it; ``GET /`` lists the routes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import jsonschema
import msgpack

from node.api.app import build_app
from node.api.openapi import ROUTE_DOCS, served_routes
from node.node import now_ms
from state_machine.governance.actions import SubmitProposal
from state_machine.governance.content import HALTED, SetMarketState, encode_content
from state_machine.tx import sign_transaction
from tests.indexer.chain import add_trade_blocks
from tests.node.test_api_pieces import ALICE, VALIDATOR
from tests.node.test_api_served import execute_block, opened_node, order, served, until


def check(spec: dict[str, Any], method: str, path: str, answer: httpx.Response) -> None:
    """The answer's status is documented for the route and its body fits the schema."""
    responses = spec["paths"][path][method.lower()]["responses"]
    assert str(answer.status_code) in responses, (method, path, answer.status_code, answer.text)
    schema = responses[str(answer.status_code)]["content"]["application/json"]["schema"]
    validator = jsonschema.Draft202012Validator({**schema, "components": spec["components"]})
    errors = [e.message for e in validator.iter_errors(answer.json())]
    assert not errors, (method, path, errors[:3])


async def test_every_route_answers_as_its_schema_says(tmp_path: Path) -> None:
    with opened_node(tmp_path) as node:
        await add_trade_blocks(node, 3)
        proposal = SubmitProposal("halt", encode_content(SetMarketState(2, HALTED, "drill")))
        tx = sign_transaction(VALIDATOR, node.genesis.chain_id, now_ms(), [proposal])
        await execute_block(node, [tx.to_wire()])  # proposal 1, for the governance routes
        app = build_app(node)
        async with served(app) as (base, nursery), httpx.AsyncClient(base_url=base) as http:
            nursery.start_soon(node._admission_loop)
            await until(lambda: app.state.api.history.db is not None, "database open")
            spec = (await http.get("/openapi.json")).json()
            assert spec["openapi"] == "3.1.0"
            served_pairs = served_routes(app.routes)
            assert {(m, p) for m, p in served_pairs} == set(ROUTE_DOCS)
            assert sum(len(v) for v in spec["paths"].values()) == len(ROUTE_DOCS)
            index = (await http.get("/")).json()
            assert [(r["method"], r["path"]) for r in index["routes"]] == served_pairs

            alice = ALICE.public_key.hex()
            tx_id = (await http.get("/v1/blocks/2")).json()["tx_ids"][0]
            values = {
                "market": "BTC-PERP",
                "address": alice,
                "height": "2",
                "tx_id": tx_id,
                "kind": "position",
                "operator": alice,  # staking is off here: 404 staking_disabled, documented
                "epoch": "2",
                "proposal_id": "1",
                # The bridge's routes answer 404 bridge_disabled on this chain (their 200
                # answers are checked in tests/node/test_bridge_api.py).
                "tx_hash": "ab" * 32,
                "log_index": "0",
                "withdrawal_id": "1",
            }
            queries = {
                "/v1/markets/{market}/candles": {"interval": "1m"},
                "/v1/accounts/{address}/pnl": {"interval": "1h"},
                "/v1/proofs/accounts/{address}": {"height": "2"},
                "/v1/proofs/records/{kind}": {"height": "2", "account": alice, "market": "1"},
            }
            covered = set()
            for method, path in served_pairs:
                if method != "GET":
                    continue
                url = path.format(**values)
                check(spec, method, path, await http.get(url, params=queries.get(path, {})))
                covered.add((method, path))
            # Errors are documented answers too.
            errors = [
                ("/v1/markets/{market}", "/v1/markets/NOPE"),
                ("/v1/markets/{market}/candles", "/v1/markets/BTC-PERP/candles?interval=9m"),
                ("/v1/accounts/{address}/fills", f"/v1/accounts/{alice}/fills?cursor=x"),
                ("/v1/txs/{tx_id}", "/v1/txs/00"),
                ("/v1/blocks/{height}", "/v1/blocks/999"),
                ("/v1/proofs/records/{kind}", "/v1/proofs/records/nope"),
                ("/v1/proofs/records/{kind}", "/v1/proofs/records/order?market=1"),
                ("/v1/gov/proposals/{proposal_id}", "/v1/gov/proposals/9"),
                ("/v1/gov/proposals", "/v1/gov/proposals?status=nope"),
            ]
            for path, url in errors:
                answer = await http.get(url)
                assert answer.status_code in (400, 404), url
                check(spec, "GET", path, answer)

            raw = order(ALICE, now_ms(), True, 5_900_000, 1)
            one = await http.post(
                "/v1/txs", content=raw, headers={"content-type": "application/msgpack"}
            )
            assert one.status_code == 202
            check(spec, "POST", "/v1/txs", one)
            again = await http.post(
                "/v1/txs", content=raw, headers={"content-type": "application/msgpack"}
            )
            check(spec, "POST", "/v1/txs", again)  # 409 duplicate
            batch = await http.post(
                "/v1/txs/batch",
                content=msgpack.packb([order(ALICE, now_ms() + 1, True, 5_900_000, 1), b"x"]),
                headers={"content-type": "application/msgpack"},
            )
            assert batch.status_code == 200
            check(spec, "POST", "/v1/txs/batch", batch)
            covered |= {("POST", "/v1/txs"), ("POST", "/v1/txs/batch")}
            assert covered == set(ROUTE_DOCS)
