"""Staking's read routes and the light client across validator-set hand-overs, on a real
store whose blocks are certified by their epoch's set (``tests/node/staking_chain.py``).

The light client starts from the genesis set, follows the proven hand-overs (epochs 2, 3, 4:
the genesis validator is out from epoch 2 on, so no genesis signature certifies anything
after) and verifies Alice's account at heights of every epoch; forged hand-overs are refused.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from cli.handover import TrustedSets, follow_hand_overs
from cli.lightclient import verify_account_proof
from consensus.types import BlockHeader
from node.api.app import build_app
from tests.node.staking_chain import (
    ALICE_CONSENSUS,
    BOB_CONSENSUS,
    EPOCH_BLOCKS,
    build_set_changes,
    commit_qc_by,
    staking_node,
)
from tests.node.test_api_limits import NASTY_VALUES
from tests.node.test_api_pieces import ALICE, BOB, GENESIS, VALIDATOR
from tests.node.test_api_served import opened_node, served
from tests.node.test_openapi import check


async def get(http: httpx.AsyncClient, path: str, status: int = 200, **params: Any) -> Any:
    answer = await http.get(path, params=params)
    assert answer.status_code == status, (path, answer.text)
    return answer.json()


async def test_staking_routes_answer_the_state(tmp_path: Path) -> None:
    with staking_node(tmp_path) as n:
        await build_set_changes(n)
        async with served(build_app(n)) as (base, _), httpx.AsyncClient(base_url=base) as http:
            params = await get(http, "/v1/staking")
            assert params["enabled"] and params["epoch_length_blocks"] == EPOCH_BLOCKS
            assert params["min_self_stake"] == "1000" and params["current_epoch"] == 5
            listed = (await get(http, "/v1/validators"))["validators"]
            by_operator = {v["operator"]: v for v in listed}
            bob = by_operator[BOB.public_key.hex()]
            alice = by_operator[ALICE.public_key.hex()]
            assert listed[0] == bob  # largest stake first
            assert bob["stake"] == "25000" and bob["power"] == 25_000 and bob["active"]
            assert bob["p2p_address"] == "10.0.0.2:26656" and bob["commission_bps"] == 1_000
            assert alice["stake"] == "500" and alice["self_stake"] == "500"
            assert not alice["active"] and alice["power"] == 0 and not alice["jailed"]
            assert by_operator[VALIDATOR.public_key.hex()]["active"] is False
            # One validator, by operator or by consensus key, with its delegations.
            one = await get(http, f"/v1/validators/{BOB_CONSENSUS.public_key.hex()}")
            assert one["operator"] == BOB.public_key.hex()
            assert one["delegations"] == [{"delegator": BOB.public_key.hex(), "amount": "25000"}]
            # Alice's account: her 500 still bonded, 9,500 unbonding until height 7 + 12.
            mine = await get(http, f"/v1/accounts/{ALICE.public_key.hex()}/delegations")
            assert mine["delegations"] == [{"operator": ALICE.public_key.hex(), "amount": "500"}]
            (entry,) = mine["unbondings"]
            assert entry["amount"] == "9500" and entry["complete_height"] == 7 + 12
            # Epoch sets: the hand-overs as the state recorded them.
            e3 = await get(http, "/v1/epochs/3")
            assert [(m["consensus_key"], m["power"]) for m in e3["members"]] == [
                (BOB_CONSENSUS.public_key.hex(), 25_000),
                (ALICE_CONSENSUS.public_key.hex(), 10_000),
            ]
            assert (e3["first_height"], e3["last_height"], e3["total_power"]) == (10, 12, 35_000)
            current = await get(http, "/v1/epochs/current")
            assert current["epoch"] == 5 and len(current["members"]) == 1
            # Mistakes are clear 4xx answers.
            unknown = await get(http, f"/v1/validators/{'ab' * 32}", 404)
            assert unknown["code"] == "unknown_validator"
            assert (await get(http, "/v1/validators/xyz", 400))["code"] == "bad_address"
            assert (await get(http, "/v1/epochs/99", 404))["code"] == "unknown_epoch"
            assert (await get(http, "/v1/epochs/-1", 400))["code"] == "bad_parameter"
            assert (await get(http, "/v1/proofs/epoch_sets/1", 400))["code"] == "genesis_epoch"
            assert (await get(http, "/v1/proofs/epoch_sets/9", 404))["code"] == "unknown_epoch"


async def test_staking_off_is_a_clear_answer(tmp_path: Path) -> None:
    with opened_node(tmp_path) as n:
        async with served(build_app(n)) as (base, _), httpx.AsyncClient(base_url=base) as http:
            assert (await get(http, "/v1/staking"))["enabled"] is False
            listed = await get(http, "/v1/validators")
            assert listed["enabled"] is False and listed["validators"] == []
            mine = await get(http, f"/v1/accounts/{ALICE.public_key.hex()}/delegations")
            assert mine["enabled"] is False and mine["delegations"] == []
            for path in (
                f"/v1/validators/{VALIDATOR.public_key.hex()}",
                "/v1/epochs/current",
                "/v1/proofs/epoch_sets/2",
            ):
                assert (await get(http, path, 404))["code"] == "staking_disabled", path


async def proof_fetcher(http: httpx.AsyncClient) -> dict[int, Any]:
    """Every hand-over answer of the chain (epochs 2..5), as the node serves them."""
    return {e: await get(http, f"/v1/proofs/epoch_sets/{e}") for e in range(2, 6)}


async def test_light_client_follows_hand_overs_from_genesis(tmp_path: Path) -> None:
    with staking_node(tmp_path) as n:
        await build_set_changes(n)
        async with served(build_app(n)) as (base, _), httpx.AsyncClient(base_url=base) as http:
            hand_overs = await proof_fetcher(http)
            for height in (2, 5, 8, 11, 14):  # one per epoch 0..4 (certified by h + 1)
                body = await get(
                    http, f"/v1/proofs/accounts/{ALICE.public_key.hex()}", height=height
                )
                trusted = TrustedSets(GENESIS, EPOCH_BLOCKS)
                assert follow_hand_overs(trusted, height, hand_overs.__getitem__) == []
                signers = trusted.for_height(height + 1)
                assert signers is not None
                check = verify_account_proof(body, GENESIS, ALICE.public_key, height, signers)
                assert check.ok, (height, check.failures)
                if height >= 8:  # past the first hand-over, the genesis set signs nothing
                    alone = verify_account_proof(body, GENESIS, ALICE.public_key, height)
                    assert not alone.ok
            # The trusted sets are the ones the chain recorded.
            assert trusted.sets[4].keys == (BOB_CONSENSUS.public_key,)
            assert set(trusted.sets[2].keys) == {
                ALICE_CONSENSUS.public_key,
                BOB_CONSENSUS.public_key,
            }


def resign(body: dict[str, Any], signers: list[Any]) -> dict[str, Any]:
    """The same answer with its commit QC replaced by one ``signers`` made for its header:
    real signatures, by keys of the caller's choice."""
    out = copy.deepcopy(body)
    header = BlockHeader.from_wire(bytes.fromhex(out["certified_by"]["header"]["wire"]))
    qc = commit_qc_by(header, signers)
    out["certified_by"]["commit_qc"]["wire"] = qc.to_wire().hex()
    return out


def flip(text: str) -> str:
    return text[:-2] + ("0" if text[-2] != "0" else "1") + text[-1:]


def forged_value(body: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(body)
    out["entries"][0]["value"] = flip(out["entries"][0]["value"])
    return out


@pytest.mark.parametrize(
    "forgery",
    [
        "old set signs",  # the genesis validator (out since epoch 2) certifies epoch 3's set
        "too few signers",  # only Alice: 10,000 of epoch 2's 15,000, not more than 2/3
        "value",  # another set written in, the Merkle proof no longer matches
        "other epoch",  # the proof of epoch 4's set handed out as epoch 3's
        "other height",
    ],
)
async def test_a_forged_hand_over_is_refused(tmp_path: Path, forgery: str) -> None:
    with staking_node(tmp_path) as n:
        await build_set_changes(n)
        async with served(build_app(n)) as (base, _), httpx.AsyncClient(base_url=base) as http:
            hand_overs = await proof_fetcher(http)
            account = await get(http, f"/v1/proofs/accounts/{ALICE.public_key.hex()}", height=14)
            # The real set of epoch 3, proven at height 7 instead of its hand-over height 6.
            http_height = await get(http, "/v1/proofs/records/epoch_set", epoch="3", height="7")
        good = hand_overs[3]
        forgeries: dict[str, Callable[[], Any]] = {
            "old set signs": lambda: resign(good, [VALIDATOR]),
            "too few signers": lambda: resign(good, [ALICE_CONSENSUS]),
            "value": lambda: forged_value(good),
            "other epoch": lambda: hand_overs[4],
            "other height": lambda: http_height,
        }
        forged = forgeries[forgery]()
        # Alice's and Bob's real signatures certify epoch 3's real set: resigning by both
        # passes (the forgery, not the resigning, is what is refused).
        honest = TrustedSets(GENESIS, EPOCH_BLOCKS)
        real = {**hand_overs, 3: resign(good, [ALICE_CONSENSUS, BOB_CONSENSUS])}
        assert follow_hand_overs(honest, 14, real.__getitem__) == []

        trusted = TrustedSets(GENESIS, EPOCH_BLOCKS)
        answers = {**hand_overs, 3: forged}
        failures = follow_hand_overs(trusted, 14, answers.__getitem__)
        assert failures and all(f.startswith("hand-over to epoch 3") for f in failures), failures
        assert trusted.latest_epoch() == 2  # nothing after the forgery is trusted
        assert trusted.for_height(15) is None
        # ... so the account's proof (certified by epoch 4's set) cannot be checked against it.
        assert not verify_account_proof(account, GENESIS, ALICE.public_key, 14).ok


async def test_staking_answers_fit_the_openapi_schema(tmp_path: Path) -> None:
    with staking_node(tmp_path) as n:
        await build_set_changes(n)
        async with served(build_app(n)) as (base, _), httpx.AsyncClient(base_url=base) as http:
            spec = (await http.get("/openapi.json")).json()
            alice = ALICE.public_key.hex()
            routes = {
                "/v1/staking": "/v1/staking",
                "/v1/validators": "/v1/validators",
                "/v1/validators/{operator}": f"/v1/validators/{alice}",
                "/v1/accounts/{address}/delegations": f"/v1/accounts/{alice}/delegations",
                "/v1/epochs/{epoch}": "/v1/epochs/3",
                "/v1/proofs/epoch_sets/{epoch}": "/v1/proofs/epoch_sets/3",
            }
            for path, url in routes.items():
                answer = await http.get(url)
                assert answer.status_code == 200, (url, answer.text)
                check(spec, "GET", path, answer)


async def test_nasty_values_in_staking_routes_are_a_4xx_with_a_code(tmp_path: Path) -> None:
    """With staking on (the routes parse their segments, unlike with staking off), every
    nasty value in each path segment and in ``limit`` is a 4xx with a code, never a 5xx."""
    routes = [
        "/v1/validators/{}",
        "/v1/accounts/{}/delegations",
        "/v1/epochs/{}",
        "/v1/proofs/epoch_sets/{}",
    ]
    with staking_node(tmp_path) as n:
        await build_set_changes(n)
        async with served(build_app(n)) as (base, _), httpx.AsyncClient(base_url=base) as http:
            for nasty in NASTY_VALUES:
                for route in routes:
                    answer = await http.get(route.format(quote(nasty, safe="%")))
                    assert 400 <= answer.status_code < 500, (route, nasty, answer.text)
                    assert answer.json()["code"], answer.text
                bob = f"/v1/validators/{BOB.public_key.hex()}"
                answer = await http.get(bob, params={"limit": nasty})
                assert 400 <= answer.status_code < 500, (nasty, answer.text)
