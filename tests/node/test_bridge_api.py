"""The bridge's API routes on a real node store and hypercorn server: parameters and keys, a
deposit before and after its credit, a withdrawal's voucher with the signatures recorded in
state, an account's withdrawals, errors with codes, and proofs of the bridge records checked
by the light client against the genesis validator."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from cli.lightclient import verify_record_proof
from cli.main import main
from node.api.app import build_app
from node.api.openapi import ROUTE_DOCS
from node.api.recordkeys import record_key, record_kind
from node.config import Config
from node.node import Node, now_ms
from state_machine.bridge.actions import AttestDeposit, BridgeWithdraw, SignWithdrawal
from state_machine.bridge.params import BridgeKey, BridgeParams
from state_machine.crypto import Keypair
from state_machine.genesis import Genesis
from state_machine.tx import Action, sign_transaction
from tests.node.test_api_pieces import ALICE, GENESIS, VALIDATOR
from tests.node.test_api_served import served
from tests.node.test_openapi import check
from tests.node.test_record_proofs import execute_signed_block

CONTRACT = bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3")
BRIDGE_ADDRESS = bytes([0xB1]) * 20
RECIPIENT = bytes([0xEE]) * 20
TX_HASH = bytes([0xD4]) * 32
USDC = 10**6
BRIDGE_GENESIS: Genesis = dataclasses.replace(
    GENESIS,
    bridge=BridgeParams(
        31337,
        CONTRACT,
        confirmations=2,
        bridge_keys=(BridgeKey(VALIDATOR.public_key, BRIDGE_ADDRESS),),
    ),
)


@contextmanager
def bridge_node(home: Path, genesis: Genesis = BRIDGE_GENESIS) -> Iterator[Node]:
    n = Node(Config(home=home), genesis, VALIDATOR)
    n.chain = n.open_chain()
    n.ready.set()
    try:
        yield n
    finally:
        n.sigpool.close()
        n.chain.close()


def signed(key: Keypair, *actions: Action) -> bytes:
    return sign_transaction(key, GENESIS.chain_id, now_ms() + 1, list(actions)).to_wire()


async def get(http: httpx.AsyncClient, path: str, status: int = 200) -> Any:
    """The answer's JSON, after checking its status and that it fits the OpenAPI schema."""
    answer = await http.get(path)
    assert answer.status_code == status, answer.text
    spec = (await http.get("/openapi.json")).json()
    route = next(r for _, r in ROUTE_DOCS if _matches(r, path.split("?")[0]))
    check(spec, "GET", route, answer)
    return answer.json()


async def until_ledger(http: httpx.AsyncClient, account: str, count: int) -> list[Any]:
    """The account's ledger once it holds ``count`` items (the history database catches up
    with the blocks in the background)."""
    for _ in range(100):
        items: list[Any] = (await http.get(f"/v1/accounts/{account}/ledger")).json()["ledger"]
        if len(items) >= count:
            return items
        await trio.sleep(0.05)
    raise AssertionError(f"ledger of {account} stayed at {items}")


def _matches(route: str, path: str) -> bool:
    parts, wanted = route.split("/"), path.split("/")
    return len(parts) == len(wanted) and all(
        p == w or (p.startswith("{") and p.endswith("}"))
        for p, w in zip(parts, wanted, strict=True)
    )


def cli_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> Any:
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_withdraw_command_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    """Refused before any node is asked: exit 2 with the usage in one line."""
    for argv, message in [
        (["withdraw", "status"], "withdraw status ID"),
        (["withdraw", "10"], "--to 0xADDRESS"),
        (["withdraw", "10", "--to", "0x1234"], "40 hex"),
        (["withdraw", "10", "7", "--to", "0x" + "11" * 20], "AMOUNT --to"),
    ]:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err


async def test_bridge_routes_and_proofs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    attest = AttestDeposit(31337, TX_HASH, 4, ALICE.public_key, 25 * USDC)
    with bridge_node(tmp_path) as n:
        await execute_signed_block(n, [signed(ALICE, BridgeWithdraw(10 * USDC, RECIPIENT))])
        await execute_signed_block(n, [signed(VALIDATOR, attest, SignWithdrawal(1, b"\x33" * 65))])
        await execute_signed_block(n, [])  # certifies the state after the bridge block
        assert n.chain is not None
        latest = n.chain.height - 1
        async with served(build_app(n)) as (base, _), httpx.AsyncClient(base_url=base) as http:
            info = await get(http, "/v1/bridge")
            assert info["contract"] == "0x" + CONTRACT.hex() and info["confirmations"] == 2
            assert info["deposited"] == "25" and info["withdrawn"] == "10"
            key_json = {"validator": VALIDATOR.public_key.hex(), "power": 1}
            assert info["keys"] == [{**key_json, "address": "0x" + BRIDGE_ADDRESS.hex()}]
            dep = await get(http, f"/v1/bridge/deposits/0x{TX_HASH.hex()}/4")
            assert dep["status"] == "credited" and dep["amount"] == "25"
            assert dep["account"] == ALICE.public_key.hex()
            w = await get(http, "/v1/bridge/withdrawals/1")
            assert w["status"] == "signed" and w["amount_atoms"] == 10 * USDC
            assert w["recipient"] == "0x" + RECIPIENT.hex()
            assert w["domain"] == {"chain_id": 31337, "contract": "0x" + CONTRACT.hex()}
            assert w["signatures"][0]["signature"] == "0x" + "33" * 65
            assert w["signed_power"] == w["total_power"] == 1
            mine = await get(http, f"/v1/bridge/accounts/{ALICE.public_key.hex()}/withdrawals")
            assert [x["withdrawal_id"] for x in mine["withdrawals"]] == [1]
            # The account's ledger shows the credit and the withdrawal.
            ledger = await until_ledger(http, ALICE.public_key.hex(), 2)
            kinds = {e["kind"]: e for e in ledger}
            assert kinds["deposit_credited"]["amount"] == "25"
            assert kinds["bridge_withdrawal"]["amount"] == "10"
            # Errors are 4xx with a code, never a 500.
            for path, status, code in [
                ("/v1/bridge/withdrawals/9", 404, "unknown_withdrawal"),
                ("/v1/bridge/withdrawals/x", 400, "bad_parameter"),
                (f"/v1/bridge/deposits/0x{TX_HASH.hex()}/5", 404, "unknown_deposit"),
                ("/v1/bridge/deposits/0x12/4", 400, "bad_tx_hash"),
                ("/v1/bridge/accounts/zz/withdrawals", 400, "bad_address"),
            ]:
                assert (await get(http, path, status))["code"] == code, path
            # perpbft withdraw status: the same record; a signature that does not recover to
            # its validator's key is never shown as valid.
            shown = await trio.to_thread.run_sync(
                cli_json, ["withdraw", "status", "1", "--node", base], capsys
            )
            assert shown["status"] == "signed" and shown["withdrawal_id"] == 1
            assert shown["signatures"][0].get("valid") is not True
            # The withdrawal record, signatures included, proven against the QC-signed root.
            for kind, ids in [
                ("bridge_withdrawal", {"withdrawal": "1"}),
                ("bridge_deposit", {"evm_chain": "31337", "tx": TX_HASH.hex(), "log": "4"}),
                ("bridge_key", {"validator": VALIDATOR.public_key.hex()}),
            ]:
                key = record_key(record_kind(kind), ids)
                body = await get(http, f"/v1/proofs/records/{kind}?" + "&".join(
                    f"{k}={v}" for k, v in {**ids, "height": str(latest)}.items()))  # fmt: skip
                check = verify_record_proof(body, BRIDGE_GENESIS, key, kind, latest)
                assert check.ok, check.failures
                assert check.values[key.hex()] is not None


async def test_bridge_routes_without_a_bridge(tmp_path: Path) -> None:
    with bridge_node(tmp_path, GENESIS) as n:
        async with served(build_app(n)) as (base, _), httpx.AsyncClient(base_url=base) as http:
            for path in ["/v1/bridge", "/v1/bridge/withdrawals/1"]:
                assert (await get(http, path, 404))["code"] == "bridge_disabled"
