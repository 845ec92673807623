"""Governed staking parameters and block limits through the node: the proposals rendered by
the governance routes, the values in force in ``/v1/staking`` and ``/v1/status``, the
schedule handed to consensus with each executed block, the node's proposer and payload check
bound by it, and the CLI's proposal files for both kinds."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from cli.gov_cmd import content_from_json, read_proposal_file
from client.errors import CliError
from consensus.events import BlockExecuted, Execute, RequestPayload
from consensus.types import COMMIT, Block, BlockHeader, QuorumCert, payload_root
from node.api.app import build_app
from node.mempool import Admit
from node.node import Node, now_ms
from state_machine.governance.chainparams import BLOCK_LIMITS_DELAY_BLOCKS
from state_machine.governance.content import SetBlockLimits, SetStakingParams
from state_machine.staking.genesis import StakingGenesis
from state_machine.tx import KIND_LIMIT, TIF_GTC, PlaceOrder, sign_transaction
from tests.node.test_api_pieces import ALICE, BOB, VALIDATOR
from tests.node.test_api_served import opened_node, served
from tests.node.test_gov_api import GENESIS, Chain, run_cli

USDC = 10**6
STAKING_GENESIS = dataclasses.replace(
    GENESIS,
    staking=StakingGenesis(
        epoch_length_blocks=50, min_self_stake_atoms=USDC, min_delegation_atoms=USDC,
        unbonding_blocks=100, jail_blocks=10,
    ),
)  # fmt: skip


async def execute(n: Node, payload: list[bytes]) -> BlockExecuted:
    """Commit and execute the next block as the consensus loop does; its BlockExecuted."""
    assert n.chain is not None
    height = n.chain.height + 1
    header = BlockHeader(height, height, b"\x00" * 32, now_ms(), VALIDATOR.public_key,
                         payload_root(payload), n.chain.state_root)  # fmt: skip
    block = Block(header, tuple(payload))
    return await n._execute(
        Execute(block, QuorumCert(COMMIT, height, height, block.block_hash(), ()))
    )


def orders_tx(key: Any, nonce: int, n_actions: int) -> bytes:
    actions = [PlaceOrder(2, True, KIND_LIMIT, TIF_GTC, 1_000 + i, 1) for i in range(n_actions)]
    return sign_transaction(key, GENESIS.chain_id, nonce, actions).to_wire()  # type: ignore[arg-type]


def block_of(n: Node, payload: list[bytes]) -> Block:
    assert n.chain is not None
    height = n.chain.height + 1
    header = BlockHeader(height, height, b"\x00" * 32, now_ms(), VALIDATOR.public_key,
                         payload_root(payload), n.chain.state_root)  # fmt: skip
    return Block(header, tuple(payload))


async def test_block_limits_proposal_is_scheduled_shown_and_bound_on_the_node(
    tmp_path: Path,
) -> None:
    with opened_node(tmp_path, GENESIS) as n:
        async with served(build_app(n)) as (base, _), httpx.AsyncClient(base_url=base) as http:
            status = (await http.get("/v1/status")).json()
            limits = status["block_limits"]
            assert limits["governed"] is False and limits["max_block_txs"] is None
            assert limits["node_max"]["max_block_txs"] == n.config.consensus.max_block_txs
            # The CLI's file: omitted fields keep the limits in force (the node's, here).
            path = tmp_path / "limits.json"
            path.write_text(json.dumps({"kind": "block_limits", "max_block_actions": 64}))
            chain_answers = {"status": status, "staking": {"enabled": False}}
            content = content_from_json(read_proposal_file(path), {"markets": []}, chain_answers)
            assert content == SetBlockLimits(
                n.config.consensus.max_block_txs, limits["node_max"]["max_block_bytes"], 64
            )
            content = SetBlockLimits(3, 64 * 1024, 64)
            chain = Chain(n)
            await chain.pass_proposal("smaller blocks", content)
            shown = (await http.get("/v1/gov/proposals/1")).json()
            assert shown["status"] == "executed" and shown["content_kind"] == "block_limits"
            assert shown["content"] == {
                "max_block_txs": 3, "max_block_bytes": 65536, "max_block_actions": 64
            }  # fmt: skip
            assert n.chain is not None
            executed_at = shown["execute_height"]
            from_height = executed_at + BLOCK_LIMITS_DELAY_BLOCKS
            limits = (await http.get("/v1/status")).json()["block_limits"]
            assert limits["governed"] is False
            scheduled = {"from_height": from_height, "max_block_txs": 3,
                         "max_block_bytes": 65536, "max_block_actions": 64}  # fmt: skip
            assert limits["scheduled"] == [scheduled]

            # Consensus hears of it with every executed block from then on.
            event = await execute(n, [])
            assert event.block_limits == ((from_height, 3, 64 * 1024),)

            # Before the height: the node's proposer and check are as configured.
            assert n.chain.height + 1 < from_height
            big = [orders_tx(ALICE, now_ms() + i, 40) for i in range(2)]
            assert n._check_payload(block_of(n, big))
            while n.chain.height + 1 < from_height:
                await execute(n, [])
            # From the height: at most 64 actions per block, and the proposer asks for 3 txs.
            assert not n._check_payload(block_of(n, big))
            assert n._check_payload(block_of(n, big[:1]))
            status = (await http.get("/v1/status")).json()["block_limits"]
            assert status["governed"] and status["max_block_txs"] == 3
            assert status["scheduled"] == []
            for i in range(6):  # into the node's mempool as admission puts them
                prepared = n.mempool.prepare(orders_tx(BOB, now_ms() + 100 + i, 20), now_ms())
                assert not isinstance(prepared, Admit), prepared
                assert n.mempool.insert(prepared, True, now_ms()) is Admit.OK
            request = RequestPayload(1, n.chain.height + 1, 10, 64 * 1024)
            taken = n._payload_for(request).payload
            assert len(taken) == 3  # 60 actions: a fourth transaction would pass the 64


async def test_staking_params_proposal_changes_the_staking_answer(tmp_path: Path) -> None:
    with opened_node(tmp_path, STAKING_GENESIS) as n:
        async with served(build_app(n)) as (base, _), httpx.AsyncClient(base_url=base) as http:
            staking = (await http.get("/v1/staking")).json()
            assert staking["params_governed"] is False
            assert staking["params"]["jail_blocks"] == 10
            path = tmp_path / "staking.json"
            path.write_text(json.dumps({"kind": "staking_params", "set": {"jail_blocks": 40}}))
            answers = {"staking": staking, "status": {}}
            content = content_from_json(read_proposal_file(path), {"markets": []}, answers)
            assert isinstance(content, SetStakingParams) and content.jail_blocks == 40
            assert content.unbonding_blocks == 100
            await Chain(n).pass_proposal("longer jail", content)
            shown = (await http.get("/v1/gov/proposals/1")).json()
            assert shown["status"] == "executed", shown
            assert shown["content_kind"] == "staking_params"
            assert shown["content"]["jail_blocks"] == 40
            staking = (await http.get("/v1/staking")).json()
            assert staking["params_governed"] is True and staking["jail_blocks"] == 40
            assert staking["epoch_length_blocks"] == 50
            out = await trio.to_thread.run_sync(run_cli, ["gov", "show", "1", "--node", base])
            assert "staking_params" in out and "jail_blocks" in out


@pytest.mark.parametrize(
    "data",
    [
        {"kind": "staking_params", "set": {"epoch_length_blocks": 10}},
        {"kind": "staking_params", "set": {"no_such": 1}},
        {"kind": "block_limits", "max_block_tx": 5},
    ],
)
def test_chain_parameter_files_are_refused_before_signing(data: dict[str, Any]) -> None:
    staking = {"enabled": True, "params": {"jail_blocks": 1}}
    answers = {"staking": staking, "status": {"block_limits": {"governed": False, "node_max": {}}}}
    with pytest.raises(CliError):
        content_from_json(data, {"markets": []}, answers)
