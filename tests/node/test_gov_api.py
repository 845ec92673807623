"""Governance in the API and the CLI, on a real server whose blocks run through the node's own
execution path: a proposal listed, shown and tallied while it is voted, a market halted by
it (its state in the market answer), then an asset and a perp listed and traded, answered by
the same routes as the genesis markets."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from cli.lightclient import verify_account_proof
from cli.main import main as cli_main
from consensus.events import Execute
from consensus.types import COMMIT, Block, BlockHeader, QCSignature, QuorumCert, payload_root
from consensus.verify import sign_vote
from node.api.app import build_app
from node.node import Node, now_ms
from state_machine.genesis import Asset, default_genesis
from state_machine.governance.actions import VOTE_YES, CastVote, SubmitProposal
from state_machine.governance.content import (
    HALTED,
    DelistPerp,
    ListAsset,
    ListMarket,
    SetMarketState,
    encode_content,
)
from state_machine.governance.params import GovernanceParams
from state_machine.tx import KIND_LIMIT, TIF_GTC, PlaceOrder, sign_transaction
from tests.node.test_api_pieces import ALICE, BOB, VALIDATOR, sample
from tests.node.test_api_served import execute_block, opened_node, served

USDC = 10**6
BTC_PERP = 2
GENESIS = dataclasses.replace(
    default_genesis(
        "perpbft-test",
        [(VALIDATOR.public_key, 1)],
        [(ALICE.public_key, 0, 10**6 * USDC), (BOB.public_key, 0, 10**6 * USDC)],
    ),
    governance=GovernanceParams(voting_period_blocks=2, execution_delay_blocks=1),
)


def signed(key: object, nonce: int, *actions: object) -> bytes:
    return sign_transaction(key, GENESIS.chain_id, nonce, list(actions)).to_wire()  # type: ignore[arg-type]


class Chain:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.nonce = now_ms()

    async def run(self, key: object, *actions: object) -> None:
        self.nonce += 1
        await execute_block(self.node, [signed(key, self.nonce, *actions)])

    async def idle(self, n: int) -> None:
        for _ in range(n):
            await execute_block(self.node, [])

    async def pass_proposal(self, title: str, content: Any) -> None:
        await self.run(VALIDATOR, SubmitProposal(title, encode_content(content)))
        pid = max(self.node.chain.state.gov.proposals)  # type: ignore[union-attr]
        await self.run(VALIDATOR, CastVote(pid, VOTE_YES))
        await self.idle(3)


async def test_proposals_are_listed_shown_and_tallied(tmp_path: Path) -> None:
    with opened_node(tmp_path, GENESIS) as n:
        async with served(build_app(n)) as (base, _), httpx.AsyncClient(base_url=base) as http:
            chain = Chain(n)
            assert (await http.get("/v1/gov/proposals")).json()["proposals"] == []
            market = (await http.get("/v1/markets/BTC-PERP")).json()
            assert (market["state"], market["state_cause"]) == ("active", None)
            assert market["params"]["taker_fee_ppm"] == 450

            halt = SetMarketState(BTC_PERP, HALTED, "oracle incident")
            await chain.run(VALIDATOR, SubmitProposal("halt BTC-PERP", encode_content(halt)))
            (listed,) = (await http.get("/v1/gov/proposals")).json()["proposals"]
            assert listed["proposal_id"] == 1 and listed["status"] == "voting"
            assert listed["content_kind"] == "market_state"
            assert listed["content"] == {
                "market_id": BTC_PERP, "state": HALTED, "reason": "oracle incident"
            }  # fmt: skip
            assert sample(n.metrics, "perpbft_gov_open_proposals") == 1
            tally = (await http.get("/v1/gov/proposals/1/tally")).json()
            assert (tally["yes_power"], tally["total_power"]) == (0, 1)
            assert tally["outcome_if_ended_now"] == "no_quorum"

            await chain.run(VALIDATOR, CastVote(1, VOTE_YES))
            shown = (await http.get("/v1/gov/proposals/1")).json()
            assert shown["votes"] == [
                {"voter": VALIDATOR.public_key.hex(), "option": "yes", "height": 2}
            ]
            tally = (await http.get("/v1/gov/proposals/1/tally")).json()
            assert tally["outcome_if_ended_now"] == "passed"
            await chain.idle(3)
            shown = (await http.get("/v1/gov/proposals/1")).json()
            assert shown["status"] == "executed" and shown["yes_power"] == 1
            market = (await http.get("/v1/markets/BTC-PERP")).json()
            assert (market["state"], market["state_cause"]) == ("halted", "governance")
            assert market["state_reason"] == "oracle incident"
            assert sample(n.metrics, "perpbft_market_state", market="BTC-PERP") == 2
            assert sample(n.metrics, "perpbft_market_state", market="ETH-PERP") == 0
            assert sample(n.metrics, "perpbft_gov_open_proposals") == 0
            assert (await http.get("/v1/gov/proposals?status=voting")).json()["proposals"] == []

            for path, status, code in (
                ("/v1/gov/proposals/7", 404, "unknown_proposal"),
                ("/v1/gov/proposals/x", 400, "bad_proposal_id"),
                ("/v1/gov/proposals/18446744073709551616/tally", 400, "bad_proposal_id"),
                ("/v1/gov/proposals?status=maybe", 400, "bad_status"),
                ("/v1/gov/proposals?limit=0", 400, "bad_limit"),
            ):
                answer = await http.get(path)
                assert (answer.status_code, answer.json()["code"]) == (status, code), path

            # The CLI reads the same routes (tables and --json).
            out = await trio.to_thread.run_sync(run_cli, ["gov", "list", "--node", base, "--json"])
            assert json.loads(out)["proposals"][0]["status"] == "executed"
            out = await trio.to_thread.run_sync(run_cli, ["gov", "show", "1", "--node", base])
            assert "halt BTC-PERP" in out and "executed" in out and "yes" in out


def run_cli(argv: list[str]) -> str:
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = cli_main(argv)
    assert code == 0, buffer.getvalue()
    return buffer.getvalue()


async def test_a_listed_perp_is_served_and_traded_like_a_genesis_one(tmp_path: Path) -> None:
    with opened_node(tmp_path, GENESIS) as n:
        async with served(build_app(n)) as (base, _), httpx.AsyncClient(base_url=base) as http:
            chain = Chain(n)
            await chain.pass_proposal("list SOL", ListAsset(Asset(3, "SOL", 9)))
            template = n.genesis.markets[BTC_PERP]
            sol = dataclasses.replace(
                template, market_id=4, symbol="SOL-PERP", base_asset_id=3, lot_base_atoms=10**7,
                tick_lot_atoms=100, max_price_ticks=10**8, initial_price_ticks=15_000,
            )  # fmt: skip
            await chain.pass_proposal("list SOL-PERP", ListMarket(sol))
            body = (await http.get("/v1/markets")).json()
            assert [m["symbol"] for m in body["markets"]][-1] == "SOL-PERP"
            assert body["assets"][-1] == {"asset_id": 3, "symbol": "SOL", "decimals": 9}
            market = (await http.get("/v1/markets/SOL-PERP")).json()
            assert (market["tick_size"], market["lot_size"]) == ("0.01", "0.01")
            assert market["mark_price"] == "150" and market["state"] == "active"
            await chain.run(BOB, PlaceOrder(4, False, KIND_LIMIT, TIF_GTC, 15_000, 500))
            await chain.run(ALICE, PlaceOrder(4, True, KIND_LIMIT, TIF_GTC, 15_000, 200))
            market = (await http.get("/v1/markets/4")).json()
            assert market["open_interest"] == "2"
            book = (await http.get("/v1/markets/SOL-PERP/book")).json()
            assert book["asks"] == [["150", "3", 1]]
            account = (await http.get(f"/v1/accounts/{ALICE.public_key.hex()}")).json()
            (pos,) = [p for p in account["positions"] if p["market"] == "SOL-PERP"]
            assert pos["size"] == "2"


@pytest.mark.parametrize("bad", ["{", '{"kind": "nothing"}', '{"kind": "market_state"}'])
def test_gov_propose_refuses_a_bad_file_before_signing(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "p.json"
    path.write_text(bad)
    from cli.gov_cmd import content_from_json, read_proposal_file
    from client.errors import CliError

    with pytest.raises(CliError):
        content_from_json(read_proposal_file(path), {"markets": [], "parameters": {}})


async def test_the_markets_channel_streams_a_market_state_change(tmp_path: Path) -> None:
    from trio_websocket import open_websocket_url

    from tests.node.test_api_served import message, send, ws_url

    with opened_node(tmp_path, GENESIS) as n:
        async with served(build_app(n)) as (base, _), open_websocket_url(ws_url(base)) as ws:
            chain = Chain(n)
            await send(ws, op="subscribe", id=1, channel="markets")
            snapshot = await message(ws)
            assert snapshot["type"] == "snapshot" and snapshot["channel"] == "markets"
            assert {m["symbol"]: m["state"] for m in snapshot["data"]["markets"]}["BTC-PERP"] == (
                "active"
            )
            await chain.pass_proposal("halt", SetMarketState(BTC_PERP, HALTED, "drill"))
            update = await message(ws)
            assert update["type"] == "update" and update["seq"] == 1
            (event,) = update["data"]["events"]
            assert (event["kind"], event["market"], event["state"]) == (
                "market_state", "BTC-PERP", "halted"
            )  # fmt: skip
            assert (event["cause"], event["reason"]) == ("governance", "drill")


async def execute_signed(n: Node, payload: list[bytes]) -> None:
    """Commit and execute the next block with a commit QC the genesis validator signed (a
    light client checks it)."""
    assert n.chain is not None
    height = n.chain.height + 1
    header = BlockHeader(height, height, b"\x00" * 32, now_ms(), VALIDATOR.public_key,
                         payload_root(payload), n.chain.state_root)  # fmt: skip
    block = Block(header, tuple(payload))
    vote = sign_vote(VALIDATOR, GENESIS.chain_id, COMMIT, height, height, block.block_hash())
    qc = QuorumCert(COMMIT, height, height, block.block_hash(),
                    (QCSignature(VALIDATOR.public_key, vote.signature),))  # fmt: skip
    await n._execute(Execute(block, qc))


class SignedChain(Chain):
    async def run(self, key: object, *actions: object) -> None:
        self.nonce += 1
        await execute_signed(self.node, [signed(key, self.nonce, *actions)])

    async def idle(self, n: int) -> None:
        for _ in range(n):
            await execute_signed(self.node, [])


async def test_the_account_proof_covers_a_position_in_a_listed_market(tmp_path: Path) -> None:
    """The keys of an account proof come from the markets in state at the proved height: a
    position in a market governance listed is proven, and the light client insists on it."""
    who = ALICE.public_key
    position_key = (b"\x02" + who + (4).to_bytes(4, "big")).hex()
    sol_balance_key = (b"\x01" + who + (3).to_bytes(4, "big")).hex()
    with opened_node(tmp_path, GENESIS) as n:
        async with served(build_app(n)) as (base, _), httpx.AsyncClient(base_url=base) as http:
            chain = SignedChain(n)
            await chain.idle(1)
            before_listing = n.chain.store.height  # type: ignore[union-attr]
            await chain.pass_proposal("list SOL", ListAsset(Asset(3, "SOL", 9)))
            template = n.genesis.markets[BTC_PERP]
            sol = dataclasses.replace(
                template, market_id=4, symbol="SOL-PERP", base_asset_id=3, lot_base_atoms=10**7,
                tick_lot_atoms=100, max_price_ticks=10**8, initial_price_ticks=15_000,
            )  # fmt: skip
            await chain.pass_proposal("list SOL-PERP", ListMarket(sol))
            await chain.run(BOB, PlaceOrder(4, False, KIND_LIMIT, TIF_GTC, 15_000, 500))
            await chain.run(ALICE, PlaceOrder(4, True, KIND_LIMIT, TIF_GTC, 15_000, 200))
            traded = n.chain.store.height  # type: ignore[union-attr]
            await chain.idle(1)  # block traded + 1 certifies the state after it
            body = (await http.get(f"/v1/proofs/accounts/{who.hex()}?height={traded}")).json()
            old = (await http.get(f"/v1/proofs/accounts/{who.hex()}?height={before_listing}"))
            old_body = old.json()
            await chain.pass_proposal("delist SOL-PERP", DelistPerp(4, 0))
            delisted = n.chain.store.height  # type: ignore[union-attr]
            await chain.idle(1)
            latest = (await http.get(f"/v1/proofs/accounts/{who.hex()}?height={delisted}")).json()
            ledger = (await http.get(f"/v1/accounts/{who.hex()}/ledger")).json()
    (settled,) = [i for i in ledger["ledger"] if i["kind"] == "delist_settled"]
    assert (settled["market"], settled["size"], settled["price"]) == ("SOL-PERP", "2", "150")
    check = verify_account_proof(body, GENESIS, who, traded)
    assert check.ok, check.failures
    assert check.values[position_key][0] == 200  # size_lots of Alice's SOL-PERP long
    assert sol_balance_key in check.values
    # Before the listing the market did not exist: its keys are not in the proof, and the
    # listing record of id 4 is proven absent.
    early = verify_account_proof(old_body, GENESIS, who, before_listing)
    assert early.ok, early.failures
    assert position_key not in early.values
    assert early.values[(b"\x30" + (4).to_bytes(4, "big")).hex()] is None
    # A node that leaves the listed market's position out is caught.
    hidden = {**body, "entries": [e for e in body["entries"] if e["key"] != position_key]}
    refused = verify_account_proof(hidden, GENESIS, who, traded)
    assert not refused.ok and any(position_key in f for f in refused.failures)
    # ... and so is one that also hides the listing that would require it.
    listing_key = (b"\x30" + (4).to_bytes(4, "big")).hex()
    both = [e for e in hidden["entries"] if e["key"] != listing_key]
    refused = verify_account_proof({**body, "entries": both}, GENESIS, who, traded)
    assert not refused.ok and any(listing_key in f for f in refused.failures)
    # Delisted: the market's keys stay in the proof (the closed position's record).
    after = verify_account_proof(latest, GENESIS, who, delisted)
    assert after.ok, after.failures
    assert position_key in after.values
