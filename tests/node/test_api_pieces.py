"""API pieces without a cluster: the HTTP app on a real hypercorn server in-process (rate limit,
body limit, errors; history routes and their paging over a filled history index), events
attributed to transactions, and consensus metrics derived from the replica's events and
actions."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from hypercorn.config import Config as HyperConfig
from prometheus_client.parser import text_string_to_metric_families

from consensus.events import Broadcast, Committed, MessageReceived, TimerFired, TimerKind
from consensus.types import (
    COMMIT,
    PREPARE,
    Block,
    BlockHeader,
    Decide,
    NewView,
    PreCommit,
    Proposal,
    QuorumCert,
    TimeoutCert,
    TimeoutSignature,
    genesis_qc,
)
from node.api.app import build_app
from node.api.ratelimit import RateLimiter
from node.api.server import serve_api
from node.api.txevents import tx_event_indexes
from node.api.txjson import TxJsonError, transaction_from_json, transaction_to_json
from node.api.units import MarketUnits
from node.api.ws import OUTBOUND_QUEUE_MAX, Connection
from node.config import Config
from node.metrics import Metrics
from node.node import Node
from node.observe import ConsensusObserver
from state_machine.crypto import Keypair
from state_machine.exchange import BlockContext, ExchangeState, apply_block
from state_machine.genesis import default_genesis
from state_machine.tx import (
    KIND_LIMIT,
    TIF_GTC,
    CancelAll,
    PlaceOrder,
    Transfer,
    sign_transaction,
)

VALIDATOR = Keypair(b"\x01" * 32)
ALICE = Keypair(b"\x02" * 32)
BOB = Keypair(b"\x03" * 32)
GENESIS = default_genesis(
    "perpbft-test", [(VALIDATOR.public_key, 1)], [ALICE.public_key, BOB.public_key]
)


# ---- the app on a real server -------------------------------------------------------------


def local_server_config() -> HyperConfig:
    """hypercorn on a free loopback port, quiet."""
    config = HyperConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    return config


async def test_rate_limit_body_limit_and_errors_on_a_real_server(tmp_path: Path) -> None:
    node = Node(Config(home=tmp_path), GENESIS, VALIDATOR)
    app = build_app(node)
    api = app.state.api
    api.client_limits = RateLimiter(rate_per_s=0.1, burst=3)
    api.signer_limits = RateLimiter(rate_per_s=0.1, burst=1)
    api.signer_limits.take(ALICE.public_key.hex(), api.clock())  # ALICE's bucket is empty
    try:
        async with trio.open_nursery() as nursery:
            base = (await nursery.start(serve_api, app, local_server_config()))[0]
            async with httpx.AsyncClient(base_url=base) as http:
                # Not started: reads answer 503 "starting"; liveness is about the loop.
                live = await http.get("/livez")
                assert live.json() == {"status": "ok", "starting": True}
                ready = await http.get("/readyz")
                assert (ready.status_code, ready.json()["code"]) == (503, "starting")
                starting = await http.get("/v1/markets")
                assert (starting.status_code, starting.json()["code"]) == (503, "starting")
                big = await http.post(
                    "/v1/txs",
                    content=b"x" * 100_000,
                    headers={"content-type": "application/msgpack"},
                )
                assert (big.status_code, big.json()["code"]) == (413, "body_too_large")
                tx = sign_transaction(ALICE, "perpbft-test", 1, [CancelAll(None)])
                signer = await http.post(
                    "/v1/txs", content=tx.to_wire(), headers={"content-type": "application/msgpack"}
                )
                assert (signer.status_code, signer.json()["code"]) == (429, "rate_limited")
                assert "signer" in signer.json()["message"]
                assert int(signer.headers["retry-after"]) >= 1
                limited = await http.get("/v1/status")
                assert limited.status_code == 429
                assert limited.json()["code"] == "rate_limited"
                assert int(limited.headers["retry-after"]) >= 1
            nursery.cancel_scope.cancel()
    finally:
        node.sigpool.close()
    samples = {
        (s.name, s.labels.get("route"), s.labels.get("status")): s.value
        for family in text_string_to_metric_families(node.metrics.render().decode())
        for s in family.samples
    }
    assert samples[("perpbft_api_requests_total", "status", "429")] == 1
    assert samples[("perpbft_api_requests_total", "submit_tx", "429")] == 1
    assert samples[("perpbft_api_requests_total", "livez", "200")] == 1
    assert samples[("perpbft_api_requests_total", "submit_tx", "413")] == 1


# ---- history routes: answers and paging ------------------------------------------------------

HISTORY_HEIGHTS = range(1, 6)  # block h has timestamp h * 1000 ms


def history_events(height: int) -> list[tuple[Any, ...]]:
    """One block's worth of history: a fill (ALICE takes from BOB), ALICE's funding payment, a
    transfer from ALICE to BOB and BTC-PERP's funding settlement."""
    return [
        ("fill", 2, 6_000_000 + height, 10, True, 100 + height, 200 + height,
         ALICE.public_key, BOB.public_key, 270, 90, 0, -height),
        ("funding_payment", ALICE.public_key, 2, 1_500 * height),
        ("transfer", ALICE.public_key, BOB.public_key, 0, 1_000_000),
        ("oracle", 2, 6_000_000),
        ("funding", 2, 10 * height, 80 * height, 7, 1_000 * height),
    ]  # fmt: skip


async def fetch_pages(
    http: httpx.AsyncClient, path: str, field: str, **params: Any
) -> list[list[dict[str, Any]]]:
    """Follow ``next_cursor`` from the first page to the last; every answer must be a 200."""
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor is not None else {})}
        answer = await http.get(path, params=query)
        assert answer.status_code == 200, (path, query, answer.text)
        body = answer.json()
        pages.append(body[field])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert cursor == body[field][-1]["cursor"]
        assert len(pages) < 100, "paging does not end"


async def test_history_routes_answer_and_page_without_gaps_or_repeats(tmp_path: Path) -> None:
    node = Node(Config(home=tmp_path), GENESIS, VALIDATOR)
    app = build_app(node)
    index = app.state.api.queries.index
    for height in HISTORY_HEIGHTS:
        index.add_block(height, height * 1000, history_events(height))
    alice = ALICE.public_key.hex()
    try:
        async with trio.open_nursery() as nursery:
            base = (await nursery.start(serve_api, app, local_server_config()))[0]
            async with httpx.AsyncClient(base_url=base) as http:
                # Whole lists in one page: 200, newest first, decimal strings.
                market = await http.get("/v1/markets/btc-perp/funding")
                assert market.status_code == 200, market.text
                body = market.json()
                assert (body["market"], body["next_cursor"]) == ("BTC-PERP", None)
                assert body["complete_from_height"] == 1  # the index saw every height
                assert [e["height"] for e in body["funding"]] == [5, 4, 3, 2, 1]
                newest = body["funding"][0]
                assert (newest["kind"], newest["market"], newest["rate_ppb"]) == (
                    "funding",
                    "BTC-PERP",
                    50,
                )
                assert (newest["rate_8h_ppb"], newest["timestamp_ms"]) == (400, 5000)
                funding = (await http.get(f"/v1/accounts/{alice}/funding")).json()
                assert funding["address"] == alice and funding["next_cursor"] is None
                assert [(e["kind"], e["amount"]) for e in funding["funding"][:2]] == [
                    ("funding_payment", "0.0075"),
                    ("funding_payment", "0.006"),
                ]
                ledger = (await http.get(f"/v1/accounts/{alice}/ledger")).json()
                assert ledger["complete_from_height"] == 1
                kinds = [(e["height"], e["kind"]) for e in ledger["ledger"][:3]]
                assert kinds == [(5, "transfer"), (5, "funding_payment"), (5, "fill")]
                assert len(ledger["ledger"]) == 15  # the oracle and funding events are not hers
                fill = ledger["ledger"][2]
                assert (fill["price"], fill["size"], fill["maker_realized_pnl"]) == (
                    "60000.05",
                    "0.001",
                    "-0.000005",
                )

                # Paging: consecutive pages, disjoint, together exactly the unpaged list.
                routes = [
                    ("/v1/markets/BTC-PERP/funding", "funding", body["funding"]),
                    (f"/v1/accounts/{alice}/funding", "funding", funding["funding"]),
                    (f"/v1/accounts/{alice}/ledger", "ledger", ledger["ledger"]),
                ]
                for path, field, whole in routes:
                    for limit in (1, 2, 4):
                        pages = await fetch_pages(http, path, field, limit=limit)
                        assert all(len(p) == limit for p in pages[:-1]), (path, limit)
                        assert 1 <= len(pages[-1]) <= limit, (path, limit)
                        cursors = [e["cursor"] for p in pages for e in p]
                        assert len(set(cursors)) == len(cursors), (path, limit)
                        assert [e for p in pages for e in p] == whole, (path, limit)

                # A time window (inclusive bounds) pages the same way.
                pages = await fetch_pages(
                    http,
                    "/v1/markets/BTC-PERP/funding",
                    "funding",
                    limit=2,
                    to=4000,
                    **{"from": 2000},
                )
                assert [[e["height"] for e in p] for p in pages] == [[4, 3], [2]]
                pages = await fetch_pages(
                    http, f"/v1/accounts/{alice}/fills", "fills", limit=1, to=3000, **{"from": 3000}
                )
                assert [[e["taker_order_id"] for e in p] for p in pages] == [[103]]
                bob_fills = await fetch_pages(
                    http, f"/v1/accounts/{BOB.public_key.hex()}/fills", "fills"
                )
                assert [e["maker_order_id"] for e in bob_fills[0]] == [205, 204, 203, 202, 201]

                # The cursor of an older item than everything left answers an empty last page.
                tail = await http.get("/v1/markets/BTC-PERP/funding", params={"cursor": "1.0"})
                assert tail.json() == {
                    "market": "BTC-PERP",
                    "funding": [],
                    "next_cursor": None,
                    "complete_from_height": 1,
                }
                bad = await http.get("/v1/markets/BTC-PERP/funding", params={"cursor": "x"})
                assert (bad.status_code, bad.json()["code"]) == (400, "bad_cursor")
            nursery.cancel_scope.cancel()
    finally:
        node.sigpool.close()


def test_a_slow_websocket_consumer_is_cut_off_not_buffered() -> None:
    conn = Connection()
    for i in range(OUTBOUND_QUEUE_MAX):
        conn.push({"seq": i})
    assert not conn.too_slow and not conn.closed.is_set()
    conn.push({"seq": OUTBOUND_QUEUE_MAX})
    assert conn.too_slow and conn.closed.is_set()
    conn.push({"seq": OUTBOUND_QUEUE_MAX + 1})  # dropped, nothing grows
    assert conn.send_channel.statistics().current_buffer_used == OUTBOUND_QUEUE_MAX


def test_json_amounts_convert_with_the_asset_decimals() -> None:
    units = {m.market_id: MarketUnits(GENESIS, m) for m in GENESIS.markets}
    decimals = {a.asset_id: a.decimals for a in GENESIS.assets}
    tx = sign_transaction(ALICE, "perpbft-test", 7, [Transfer(BOB.public_key, 0, 1_500_000)])
    body = transaction_to_json(tx)
    del body["actions"][0]["amount_atoms"]
    body["actions"][0]["amount"] = "1.5"
    assert transaction_from_json(body, units.get, decimals.get) == tx
    for amount, asset, code in (("1.0000001", 0, "too_many_decimals"), ("1", 9, "unknown_asset")):
        body["actions"][0].update(amount=amount, asset_id=asset)
        with pytest.raises(TxJsonError) as info:
            transaction_from_json(body, units.get, decimals.get)
        assert info.value.code == code


# ---- events of a transaction --------------------------------------------------------------


def test_events_are_attributed_to_their_transaction() -> None:
    state = ExchangeState.from_genesis(GENESIS)
    rest = sign_transaction(
        ALICE,
        "perpbft-test",
        1_700_000_000_001,
        [
            PlaceOrder(2, True, KIND_LIMIT, TIF_GTC, 5_999_000, 10),
            Transfer(BOB.public_key, 0, 5_000_000),
        ],
    )
    rest2 = sign_transaction(
        ALICE,
        "perpbft-test",
        1_700_000_000_002,
        [
            PlaceOrder(2, True, KIND_LIMIT, TIF_GTC, 5_998_000, 10),
        ],
    )
    take = sign_transaction(
        BOB,
        "perpbft-test",
        1_700_000_000_003,
        [
            PlaceOrder(2, False, KIND_LIMIT, TIF_GTC, 5_999_000, 4),
            PlaceOrder(2, False, KIND_LIMIT, TIF_GTC, 1, 4),  # far outside the price band
        ],
    )
    txs = [rest, rest2, take]
    result = apply_block(state, BlockContext(1, 1_700_000_000_100), txs)
    events = result.events
    results = [[a.to_obj() for a in r.actions] for r in result.tx_results]

    def kinds(i: int) -> list[str]:
        return [events[j][0] for j in tx_event_indexes(txs[i], results[i], events)]

    assert kinds(0) == ["transfer", "order_accepted", "order_rested", "fill"]
    assert kinds(1) == ["order_accepted", "order_rested"]
    assert kinds(2) == ["order_accepted", "fill", "order_rejected"]
    # Cancel-all in the next block picks up both resting orders of the signer.
    cancel = sign_transaction(ALICE, "perpbft-test", 1_700_000_000_004, [CancelAll(2)])
    result = apply_block(state, BlockContext(2, 1_700_000_000_200), [cancel])
    results = [[a.to_obj() for a in r.actions] for r in result.tx_results]
    found = tx_event_indexes(cancel, results[0], result.events)
    assert [result.events[j][0] for j in found] == ["order_cancelled", "order_cancelled"]


# ---- consensus metrics ----------------------------------------------------------------------


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def proposal(view: int) -> Proposal:
    header = BlockHeader(1, view, b"\x00" * 32, 1, VALIDATOR.public_key, b"\x00" * 32, b"\x00" * 32)
    return Proposal(
        view, Block(header, ()), genesis_qc(b"\x00" * 32), VALIDATOR.public_key, bytes(64)
    )


def qc(phase: int, view: int) -> QuorumCert:
    return QuorumCert(phase, view, 1, b"\x01" * 32, ())


def test_consensus_observer_times_qcs_and_names_view_changes() -> None:
    metrics = Metrics()
    now = [10.0]
    observer = ConsensusObserver(metrics, clock=lambda: now[0])
    peer = BOB.public_key
    observer.observe(3, 3, MessageReceived(peer, proposal(3)), [])
    now[0] = 10.05
    observer.observe(3, 3, MessageReceived(peer, PreCommit(qc(PREPARE, 3))), [])
    observer.observe(3, 3, MessageReceived(peer, PreCommit(qc(PREPARE, 3))), [])  # duplicate
    now[0] = 10.2
    committed = Committed(1, b"\x01" * 32, 3, 1)
    observer.observe(3, 4, MessageReceived(peer, Decide(qc(COMMIT, 3))), [committed])
    assert sample(metrics, "perpbft_qc_formation_seconds_count", phase="prepare") == 1
    assert abs(sample(metrics, "perpbft_qc_formation_seconds_sum", phase="prepare") - 0.05) < 1e-9
    assert sample(metrics, "perpbft_qc_formation_seconds_count", phase="commit") == 1
    assert sample(metrics, "perpbft_view_changes_total") == 0  # a commit moved the view
    # The leader's own broadcast counts as seeing the proposal.
    observer.observe(4, 4, TimerFired(TimerKind.PROPOSE, 4), [Broadcast(proposal(4))])
    # Our timer fires in view 4; the certificate arrives later as NEW-VIEWs: a timeout.
    observer.observe(4, 4, TimerFired(TimerKind.VIEW, 4), [])
    newview = NewView(5, genesis_qc(b"\x00" * 32), None, peer, bytes(64))
    observer.observe(4, 5, MessageReceived(peer, newview), [])
    # Others time out first: a NEW-VIEW quorum moves us.
    observer.observe(5, 6, MessageReceived(peer, newview), [])
    # A proposal from a later view: we were behind.
    observer.observe(6, 9, MessageReceived(peer, proposal(9)), [])
    assert sample(metrics, "perpbft_view_changes_total", reason="timeout") == 1
    assert sample(metrics, "perpbft_view_changes_total", reason="new_view") == 1
    assert sample(metrics, "perpbft_view_changes_total", reason="catch_up") == 1
    # A proposal carrying a timeout certificate: we missed the NEW-VIEWs that moved the others.
    tc = TimeoutCert(12, (TimeoutSignature(peer, 12, b"\x00" * 32, bytes(64)),))
    with_tc = dataclasses.replace(proposal(12), timeout_cert=tc)
    observer.observe(9, 12, MessageReceived(peer, with_tc), [])
    assert sample(metrics, "perpbft_view_changes_total", reason="timeout_cert") == 1
    assert sample(metrics, "perpbft_view_changes_total", reason="catch_up") == 1
