"""The SDK against a real 4-validator cluster: orders in decimal strings, an off-grid price
refused before signing, and a WebSocket stream that survives the death of its node by
reconnecting to another one and resubscribing."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from client.errors import OffGridError
from client.http import ROUTE_METHODS, ApiError
from client.signing import sign_actions
from client.trader import Trader
from client.ws import Event, Stream
from state_machine.governance.actions import SubmitProposal
from state_machine.governance.content import HALTED, SetMarketState, encode_content
from state_machine.tx import CancelAll, sign_transaction
from tests.cluster import Cluster

pytestmark = pytest.mark.slow

BID = ["59990", "0.001", 1]


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("sdk"))
    try:
        cluster.start_all()
        cluster.wait_height(2)
        yield cluster
    finally:
        cluster.close()


def test_off_grid_prices_and_sizes_are_refused_before_signing(net: Cluster) -> None:
    with Trader(net.api(0), net.layout.demo_keys[1]) as t:
        with pytest.raises(OffGridError, match="not a whole number of ticks"):
            t.place_limit("BTC-PERP", "buy", price="59990.123456789", size="0.001")
        with pytest.raises(OffGridError, match="not a whole number of lots"):
            t.place_limit("BTC-PERP", "buy", price="59990", size="0.000012345678")
        assert t.open_orders()["orders"] == []


async def next_event(events: trio.MemoryReceiveChannel[Event], want: Any) -> Event:
    with trio.fail_after(60):
        async for event in events:
            if want(event):
                return event
    raise AssertionError("the stream ended")


async def test_stream_follows_an_order_and_survives_its_node_dying(net: Cluster) -> None:
    stream = Stream([net.api(1), net.api(2)], reconnect_delay_ms=100)
    book = stream.subscribe("book", market="BTC-PERP", depth=5)
    blocks = stream.subscribe("blocks")
    key: Path = net.layout.demo_keys[0]
    async with stream.open() as events:
        await next_event(events, lambda e: e.sub_id == book and e.kind == "snapshot")

        def place() -> Any:
            with Trader(net.api(0), key) as t:
                return t.place_limit("BTC-PERP", "buy", price="59990", size="0.001")

        answer = await trio.to_thread.run_sync(place)
        assert answer["results"][0]["status"] == "resting"
        await next_event(events, lambda e: e.sub_id == book and BID in e.data["bids"])

        net.kill(1)  # the node the stream is connected to
        again = await next_event(events, lambda e: e.sub_id == book and e.kind == "snapshot")
        assert again.resync == "reconnect" and BID in again.data["bids"]
        assert stream.connected_url.endswith(net.api(2).split("//")[1] + "/v1/ws")
        assert stream.reconnects >= 1
        # Blocks keep coming, in sequence, from the new node.
        first = await next_event(events, lambda e: e.sub_id == blocks and e.kind == "update")
        later = await next_event(events, lambda e: e.sub_id == blocks and e.seq > first.seq)
        assert later.height > first.height
    assert stream.tracker.gaps == 0

    def cancel() -> Any:
        with Trader(net.api(0), key) as t:
            t.cancel_all("BTC-PERP")
            return t.open_orders()["orders"]

    assert await trio.to_thread.run_sync(cancel) == []


def staking_answer(call: Callable[[], Any]) -> Any:
    """The answer, or the body of the documented refusal when staking is off here."""
    try:
        return call()
    except ApiError as exc:
        assert exc.code in ("staking_disabled", "unknown_validator"), exc
        return exc.body


def test_every_route_method_answers_from_a_real_node(net: Cluster) -> None:
    key = net.layout.demo_keys[2]
    with Trader(net.api(0), key) as t:
        c, who = t.client, t.address
        committed = t.cancel_all()
        batch_tx = sign_actions(key, t.chain_id(), [CancelAll(None)])
        # A proposal by a validator, so that the governance routes have one to answer about.
        halt = SetMarketState(2, HALTED, "drill")
        proposal = sign_transaction(
            net.validator_key(0), t.chain_id(), time.time_ns() // 1_000_000,
            [SubmitProposal("halt BTC-PERP", encode_content(halt))],
        )  # fmt: skip
        assert c.submit(proposal, wait_commit=True)["results"][0]["code"] == "ok"
        calls: dict[str, Callable[[], Any]] = {
            "index": c.index, "openapi": c.openapi, "livez": c.livez, "readyz": c.readyz,
            "status": c.status, "vault": c.vault, "markets": c.markets,
            "submit": lambda: committed,  # made above through Trader.send -> NodeClient.submit
            "submit_batch": lambda: c.submit_batch([batch_tx]),
            "tx": lambda: c.tx(committed["tx_id"]),
            "block": lambda: c.block(committed["height"]),
            "market": lambda: c.market("BTC-PERP"),
            "book": lambda: c.book("BTC-PERP", depth=3),
            "trades": lambda: c.trades("BTC-PERP", limit=5),
            "market_funding": lambda: c.market_funding("BTC-PERP", limit=5),
            "candles": lambda: c.candles("BTC-PERP", "1m"),
            "market_stats": lambda: c.market_stats("BTC-PERP"),
            "account": lambda: c.account(who), "orders": lambda: c.orders(who),
            "fills": lambda: c.fills(who, limit=5),
            "account_funding": lambda: c.account_funding(who, limit=5),
            "ledger": lambda: c.ledger(who, limit=5),
            "pnl": lambda: c.pnl(who, "1h"),
            "account_proof": lambda: c.account_proof(who),
            "record_proof": lambda: c.record_proof("balance", {"account": who, "asset": 0}),
            "staking": c.staking, "validators": c.validators,
            "delegations": lambda: c.delegations(who),
            # Routes about one validator or epoch: staking_disabled unless staking is on.
            "validator": lambda: staking_answer(lambda: c.validator(who)),
            "epoch_set": lambda: staking_answer(lambda: c.epoch_set("current")),
            "epoch_set_proof": lambda: staking_answer(lambda: c.epoch_set_proof(2)),
            "gov_proposals": c.gov_proposals,
            "gov_proposal": lambda: c.gov_proposal(1),
            "gov_tally": lambda: c.gov_tally(1),
            "subaccounts": lambda: c.subaccounts(who), "agents": lambda: c.agents(who),
            "account_fees": lambda: c.account_fees(who), "fees": c.fees,
        }  # fmt: skip
        # This cluster's genesis has no bridge: its routes answer 404 bridge_disabled (their
        # answers on a chain with a bridge: tests/node/test_bridge_api.py).
        bridge_calls: dict[str, Callable[[], Any]] = {
            "bridge": c.bridge, "bridge_deposit": lambda: c.bridge_deposit("ab" * 32, 0),
            "bridge_withdrawal": lambda: c.bridge_withdrawal(1),
            "bridge_withdrawals": lambda: c.bridge_withdrawals(who),
        }  # fmt: skip
        assert set(calls) | set(bridge_calls) == set(ROUTE_METHODS), "a route without a call"
        for name, call in calls.items():
            answer = call()
            assert isinstance(answer, dict) and answer, name
        for call in bridge_calls.values():
            with pytest.raises(ApiError, match="bridge_disabled"):
                call()
        assert committed["status"] == "committed"
        assert c.tx(committed["tx_id"])["height"] == committed["height"]
        assert c.block("latest")["height"] >= committed["height"]
