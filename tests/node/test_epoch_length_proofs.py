"""A governance change of the epoch length on a real node store (``tests/node/staking_chain``:
real execution, commit QCs signed by each height's set with real keys): the node's answers
follow the new schedule, and the light client (``perpbft proof``) walks the hand-overs across
the change, learning the new length from the proven records, not from a constant."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import trio

import cli.handover
from cli.handover import TrustedSets, follow_hand_overs
from cli.main import main
from client.http import NodeClient
from node.api.app import build_app
from node.node import Node, now_ms
from state_machine.genesis import genesis_to_json
from state_machine.governance.actions import VOTE_YES, CastVote, SubmitProposal
from state_machine.governance.content import SetEpochLength, encode_content
from state_machine.governance.params import GovernanceParams
from state_machine.staking.actions import CreateValidator
from tests.node.staking_chain import (
    ALICE_CONSENSUS,
    EPOCH_BLOCKS,
    USDC,
    execute_epoch_signed,
    run_to,
    signed,
    staking_node,
    staking_of,
)
from tests.node.test_api_pieces import ALICE, GENESIS, VALIDATOR
from tests.node.test_api_served import served

NEW_LENGTH = 5
GOV_GENESIS = dataclasses.replace(
    GENESIS,
    governance=GovernanceParams(
        voting_period_blocks=1, execution_delay_blocks=1, max_active_proposals=2
    ),
)


async def build_length_change(n: Node) -> None:
    """Block 1 proposes 5-block epochs, block 2 votes (the genesis validator, all the power),
    block 3 (the last of epoch 0) runs it: epochs 0 and 1 are heights 1..3 and 4..6, then
    epoch 2 is 7..11, 3 is 12..16, 4 is 17..21. Alice stakes in block 4, so the set changes
    at epoch 3 (fixed at the end of epoch 1, height 6)."""
    nonce = now_ms()
    proposal = SubmitProposal("five-block epochs", encode_content(SetEpochLength(NEW_LENGTH)))
    await execute_epoch_signed(n, [signed(VALIDATOR, nonce, proposal)])
    await execute_epoch_signed(n, [signed(VALIDATOR, nonce + 1, CastVote(1, VOTE_YES))])
    await execute_epoch_signed(n, [])
    assert n.chain is not None and n.chain.state.gov.proposals[1].status == "executed"
    create = CreateValidator(ALICE_CONSENSUS.public_key, "10.0.0.1:26656", 500, 10_000 * USDC)
    await execute_epoch_signed(n, [signed(ALICE, nonce, create)])
    await run_to(n, 19)


async def test_the_node_and_the_light_client_follow_a_length_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli.handover, "genesis_epoch_length", lambda genesis: EPOCH_BLOCKS)
    genesis_file = tmp_path / "genesis.json"
    genesis_file.write_text(genesis_to_json(GOV_GENESIS))
    alice = ALICE.public_key.hex()
    with staking_node(tmp_path / "archive", genesis=GOV_GENESIS) as n:
        await build_length_change(n)
        schedule = staking_of(n).schedule
        assert [s.first_height for s in schedule.segments] == [1, 7]
        assert n.sets.schedule == schedule  # a full node: the hand-over gave it to its sets
        assert n.sets.epoch_of(12) == 3 and n.sets.for_height(12) != n.sets.for_height(11)
        async with served(build_app(n)) as (base, _):
            client = NodeClient(base)
            params = await trio.to_thread.run_sync(client.staking)
            assert params["epoch_schedule"] == [
                {"first_epoch": 0, "first_height": 1, "length_blocks": EPOCH_BLOCKS},
                {"first_epoch": 2, "first_height": 7, "length_blocks": NEW_LENGTH},
            ]
            assert params["current_epoch"] == 4 and params["current_epoch_length_blocks"] == 5
            epoch3 = await trio.to_thread.run_sync(client.epoch_set, 3)
            assert (epoch3["first_height"], epoch3["last_height"]) == (12, 16)
            # The walk: hand-overs at heights 3, 6 and 11 (not 9: the genesis length's).
            trusted = TrustedSets(GOV_GENESIS, EPOCH_BLOCKS)
            heights: list[int] = []

            def fetch(epoch: int) -> Any:
                body = client.epoch_set_proof(epoch)
                heights.append(body["height"])
                return body

            failures = await trio.to_thread.run_sync(follow_hand_overs, trusted, 18, fetch)
            assert failures == [] and heights == [3, 6, 11]
            assert trusted.schedule == schedule
            assert ALICE_CONSENSUS.public_key in trusted.sets[3]
            argv = ["proof", "account", alice, "--genesis", str(genesis_file), "--height", "18"]
            code = await trio.to_thread.run_sync(main, [*argv, "--node", base])
            out = capsys.readouterr().out
            assert code == 0, out
            assert "the set of epoch 4 (followed from genesis over 3 hand-overs)" in out
            code = await trio.to_thread.run_sync(main, [*argv, "--node", base, "--json"])
            assert code == 0 and json.loads(capsys.readouterr().out)["verified"] is True


async def test_a_forged_schedule_stops_the_walk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node that answers with a schedule the set did not certify (the proof does not match
    the root) or leaves the schedule's proof out: the walk stops at that hand-over."""
    with staking_node(tmp_path / "archive", genesis=GOV_GENESIS) as n:
        await build_length_change(n)
        async with served(build_app(n)) as (base, _):
            client = NodeClient(base)

            def run(edit: Any) -> list[str]:
                def fetch(epoch: int) -> Any:
                    return edit(client.epoch_set_proof(epoch))

                trusted = TrustedSets(GOV_GENESIS, EPOCH_BLOCKS)
                return follow_hand_overs(trusted, 18, fetch)

            def drop_schedule(body: dict[str, Any]) -> dict[str, Any]:
                body["entries"] = [e for e in body["entries"] if e["key"] != "2f2f"]
                return body

            def forge_schedule(body: dict[str, Any]) -> dict[str, Any]:
                for e in body["entries"]:
                    if e["key"] == "2f2f" and e["value"] is not None:
                        e["value"] = e["value"][:-2] + "04"  # 5 -> 4 blocks per epoch
                return body

            dropped = await trio.to_thread.run_sync(run, drop_schedule)
            assert dropped and "hand-over to epoch 2" in dropped[0] and "2f2f" in dropped[0]
            forged = await trio.to_thread.run_sync(run, forge_schedule)
            assert forged and "hand-over to epoch 2" in forged[0], forged
            assert "does not match root" in forged[0]


def test_gov_propose_reads_an_epoch_length_file(tmp_path: Path) -> None:
    from cli.errors import CliError
    from cli.gov_cmd import content_from_json, read_proposal_file

    path = tmp_path / "p.json"
    catalogue: dict[str, Any] = {"markets": [], "parameters": {}}
    path.write_text('{"kind": "epoch_length", "length_blocks": 1200}')
    assert content_from_json(read_proposal_file(path), catalogue) == SetEpochLength(1200)
    for bad in ("0", "-3", "1.5", '"600"', "true", str(1 << 32), "null"):
        path.write_text('{"kind": "epoch_length", "length_blocks": ' + bad + "}")
        with pytest.raises(CliError, match="length_blocks"):
            content_from_json(read_proposal_file(path), catalogue)
