"""Unit tests of the trader CLI's and localnet's pieces that need no network: units, order
building, the light client on a hand-built proof, and the output of refused submissions from an
in-process fake node (the e2e tests cover the rest)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.errors import CliError
from cli.lightclient import expected_account_keys, verify_account_proof
from cli.localnet_cmd import parse_percent
from cli.main import build_parser, main
from cli.trade_cmd import build_place
from cli.trade_common import Catalogue
from client.http import NodeClient
from consensus.types import COMMIT, BlockHeader, QCSignature, QuorumCert
from consensus.verify import sign_vote
from localnet.oracle import (
    RandomWalk,
    load_source,
    read_shift_ppm,
    shifted,
    source_factory,
    write_shift_ppm,
)
from node.keys import write_key_file
from state_machine.codec import encode
from state_machine.crypto import Keypair
from state_machine.genesis import default_genesis, genesis_to_json
from state_machine.merkle_state import MerkleState
from state_machine.tx import (
    KIND_LIMIT,
    KIND_MARKET,
    KIND_STOP_LIMIT,
    TIF_ALO,
    TIF_IOC,
    Transaction,
)

MARKETS = {
    "markets": [
        {"market_id": 2, "symbol": "BTC-PERP", "kind": "perp", "tick_size": "0.01",
         "lot_size": "0.0001", "base_asset": "BTC", "oracle_price": "60000"},
    ],
    "assets": [{"asset_id": 0, "symbol": "USDC", "decimals": 6}],
}  # fmt: skip


def test_exact_units_or_refusal() -> None:
    market = Catalogue(MARKETS).market("btc-perp")
    assert market.price_to_ticks("60000.25") == 6_000_025
    assert market.size_to_lots("0.0123") == 123
    assert market.ticks_to_price(6_000_025) == "60000.25"
    for bad in ("60000.001", "-1", "1e3", "0"):
        with pytest.raises(CliError):
            market.price_to_ticks(bad)
    with pytest.raises(CliError, match="no market"):
        Catalogue(MARKETS).market("DOGE")


def test_asset_amounts_are_exact() -> None:
    catalogue = Catalogue(MARKETS)
    assert catalogue.asset_atoms("usdc", "1.5") == (0, 1_500_000)
    with pytest.raises(CliError, match="6 decimal places"):
        catalogue.asset_atoms("USDC", "0.0000001")


def _place_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["order", "place", *argv])


def test_order_kinds_and_time_in_force() -> None:
    market = Catalogue(MARKETS).market("BTC-PERP")
    limit = build_place(_place_args("BTC-PERP", "buy", "0.01", "--price", "59000"), market)
    assert (limit.kind, limit.price_ticks, limit.size_lots) == (KIND_LIMIT, 5_900_000, 100)
    market_order = build_place(_place_args("BTC-PERP", "sell", "0.01"), market)
    assert (market_order.kind, market_order.tif, market_order.is_buy) == (
        KIND_MARKET,
        TIF_IOC,
        False,
    )
    post_only = build_place(
        _place_args("BTC-PERP", "buy", "0.01", "--price", "1", "--tif", "alo"), market
    )
    assert post_only.tif == TIF_ALO
    stop = build_place(
        _place_args("BTC-PERP", "sell", "0.01", "--price", "50000", "--stop", "50100"), market
    )
    assert (stop.kind, stop.trigger_price_ticks) == (KIND_STOP_LIMIT, 5_010_000)
    with pytest.raises(CliError, match="market order"):
        build_place(_place_args("BTC-PERP", "buy", "0.01", "--tif", "gtc"), market)


def test_percentages() -> None:
    assert parse_percent("30%") == 300_000
    assert parse_percent("2.5") == 25_000
    with pytest.raises(CliError):
        parse_percent("lots")


def test_random_walk_is_deterministic_and_shiftable(tmp_path: Path) -> None:
    market = {"symbol": "BTC-PERP", "base_asset": "BTC"}
    a = RandomWalk(1_000, {"BTC-PERP": 6_000_000}, seed="s")
    b = RandomWalk(1_000, {"BTC-PERP": 6_000_000}, seed="s")
    prices = [a.price_ticks(market, 1_000 + 1_000 * k) for k in range(50)]
    assert prices == [b.price_ticks(market, 1_000 + 1_000 * k) for k in range(50)]
    assert len(set(prices)) > 10 and all(5_000_000 < p < 7_000_000 for p in prices)
    # asking out of order (a feeder restarted) gives the same answer
    assert b.price_ticks(market, 1_000 + 1_000 * 7) == prices[7]
    assert read_shift_ppm(tmp_path) == 0
    write_shift_ppm(tmp_path, -300_000)
    assert read_shift_ppm(tmp_path) == -300_000
    assert shifted(6_000_000, -300_000, 10**10) == 4_200_000


# ---- the light client ------------------------------------------------------------------------

VALIDATOR = Keypair(b"\x07" * 32)
TRADER = Keypair(b"\x08" * 32)
PROOF_GENESIS = default_genesis("perpbft-test", [(VALIDATOR.public_key, 1)], [TRADER.public_key])


def account_proof_answer(height: int) -> dict[str, Any]:
    """What ``GET /v1/proofs/accounts/{TRADER}`` answers for the state after block ``height``,
    certified by a commit QC of the only genesis validator."""
    who = TRADER.public_key
    keys = expected_account_keys(PROOF_GENESIS, who)
    values = {k: encode([1_000 + i, 0]) for i, k in enumerate(keys) if k[0] == 1}
    tree = MerkleState.from_entries(values.items())
    root = tree.root()
    header = BlockHeader(height + 1, height + 1, b"\x11" * 32, 1_700_000_001_000,
                         VALIDATOR.public_key, b"\x22" * 32, root)  # fmt: skip
    block_hash = header.block_hash()
    vote = sign_vote(VALIDATOR, "perpbft-test", COMMIT, height + 1, height + 1, block_hash)
    qc = QuorumCert(COMMIT, height + 1, height + 1, block_hash,
                    (QCSignature(VALIDATOR.public_key, vote.signature),))  # fmt: skip
    return {
        "address": who.hex(),
        "height": height,
        "state_root": root.hex(),
        "entries": [
            {
                "key": k.hex(),
                "value": values[k].hex() if k in values else None,
                "proof": tree.prove(k).to_wire().hex(),
            }
            for k in keys
        ],
        "certified_by": {"header": {"wire": header.to_wire().hex()},
                         "commit_qc": {"wire": qc.to_wire().hex()}},
    }  # fmt: skip


def test_light_client_checks_the_height_it_asked_for() -> None:
    answer = account_proof_answer(41)
    who = TRADER.public_key
    assert verify_account_proof(answer, PROOF_GENESIS, who).ok
    assert verify_account_proof(answer, PROOF_GENESIS, who, 41).ok
    other = verify_account_proof(answer, PROOF_GENESIS, who, 40)
    assert not other.ok
    assert other.failures == ["answer is the state at height 41, not at the requested height 40"]


def test_proof_command_fails_an_answer_of_another_height(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    genesis = tmp_path / "genesis.json"
    genesis.write_text(genesis_to_json(PROOF_GENESIS))
    saved = tmp_path / "proof.json"
    saved.write_text(json.dumps(account_proof_answer(41)))
    argv = ["proof", "account", TRADER.public_key.hex(), "--genesis", str(genesis),
            "--proof-file", str(saved)]  # fmt: skip
    assert main([*argv, "--height", "41"]) == 0
    assert capsys.readouterr().out.startswith("VERIFIED")
    assert main([*argv, "--height", "42"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("NOT VERIFIED")
    assert "height 41, not at the requested height 42" in out
    assert main([*argv, "--height", "42", "--json"]) == 1
    body = json.loads(capsys.readouterr().out)
    assert body["verified"] is False and body["height"] == 41


# ---- --json output of refused submissions ------------------------------------------------------


def fake_node(monkeypatch: pytest.MonkeyPatch, submit: httpx.Response) -> list[bytes]:
    """Point the trade commands at an in-process node that answers ``submit`` to POST /v1/txs;
    returns the list the posted transactions are appended to."""
    posted: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/markets":
            return httpx.Response(200, json=MARKETS)
        if request.url.path == "/v1/status":
            return httpx.Response(200, json={"chain_id": "perpbft-test"})
        assert (request.method, request.url.path) == ("POST", "/v1/txs")
        posted.append(request.content)
        return submit

    def client(args: argparse.Namespace) -> NodeClient:
        node = NodeClient("http://node.test")
        node._http = httpx.Client(base_url=node.base_url, transport=httpx.MockTransport(handler))
        return node

    monkeypatch.setattr("cli.trade_cmd.open_client", client)
    return posted


@pytest.mark.parametrize(
    ("answer", "exit_code", "printed"),
    [
        (
            httpx.Response(400, json={"code": "nonce_used", "message": "nonce already used"}),
            1,
            {"status": "rejected", "code": "nonce_used", "message": "nonce already used"},
        ),
        (
            httpx.Response(429, json={"code": "signer_limit", "message": "too many pending"}),
            1,
            {"status": "rejected", "code": "signer_limit", "message": "too many pending"},
        ),
        (
            httpx.Response(400, json={"code": "malformed", "message": "actions[0]: bad"}),
            2,
            {"status": "rejected", "code": "malformed", "message": "actions[0]: bad"},
        ),
        (
            httpx.Response(202, json={"tx_id": "ab", "status": "pending", "message": "later"}),
            1,
            {"tx_id": "ab", "status": "pending", "message": "later"},
        ),
    ],
)
def test_json_output_of_a_refused_submission(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    answer: httpx.Response,
    exit_code: int,
    printed: dict[str, Any],
) -> None:
    key = tmp_path / "trader.json"
    write_key_file(key, TRADER)
    posted = fake_node(monkeypatch, answer)
    argv = ["transfer", VALIDATOR.public_key.hex(), "USDC", "1.5", "--key", str(key)]
    assert main([*argv, "--json"]) == exit_code
    out, err = capsys.readouterr()
    [line] = out.splitlines()
    body = json.loads(line)
    if body["status"] == "rejected":
        # The node's verdict form: the id of the transaction it refused, its code and reason.
        assert set(body) == {"tx_id", "status", "code", "message"}
        assert body["tx_id"] == Transaction.from_wire(posted[0]).tx_id().hex()
    assert {k: body[k] for k in printed} == printed
    assert err.startswith("error: ")
    # Without --json: nothing on stdout, the reason on stderr.
    assert main(argv) == exit_code
    out, err = capsys.readouterr()
    assert out == "" and printed.get("code", "not committed") in err
    assert len(posted) == 2


def test_a_pluggable_oracle_source_is_loaded_or_refused_with_a_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "flat_prices.py").write_text(
        "class Flat:\n"
        "    def __init__(self, markets):\n"
        "        self.ticks = {m['symbol']: 12345 for m in markets}\n"
        "    def price_ticks(self, market, now_ms):\n"
        "        return self.ticks[market['symbol']]\n"
        "not_callable = 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    markets = [{"symbol": "BTC-PERP", "market_id": 2}]
    source = load_source("flat_prices:Flat", {}, markets)
    assert source.price_ticks(markets[0], 0) == 12345
    for spec, reason in [
        ("flat_prices", "is not module:factory"),
        ("no_such_module_here:Flat", "does not import"),
        ("flat_prices:Missing", "has no callable 'Missing'"),
        ("flat_prices:not_callable", "has no callable 'not_callable'"),
    ]:
        with pytest.raises(ValueError, match=reason):
            source_factory(spec)
    # localnet up refuses it before starting anything.
    home = tmp_path / "ln"
    argv = ["localnet", "up", "--home", str(home), "--oracle-source", "flat_prices:Missing"]
    assert main(argv) == 2
    assert "has no callable 'Missing'" in capsys.readouterr().err
    assert not home.exists()
