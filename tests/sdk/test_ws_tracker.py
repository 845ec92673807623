"""The sequence bookkeeping of the SDK's WebSocket subscriptions (client.ws): a lost message
is noticed from ``seq``, the subscription is asked for again, and nothing of it reaches the
caller until the new snapshot, which says why it came."""

from __future__ import annotations

from typing import Any

import pytest

from client.ws import SubscriptionError, SubscriptionTracker, ws_url


def msg(kind: str, sub_id: int, seq: int, data: Any = None) -> dict[str, Any]:
    return {"type": kind, "id": sub_id, "channel": "book", "seq": seq, "height": 10 + seq,
            "data": data}  # fmt: skip


def subscribed() -> tuple[SubscriptionTracker, dict[str, Any]]:
    t = SubscriptionTracker()
    spec = t.add(1, "book", {"market": "BTC-PERP", "depth": 5})
    assert t.on_connect(first=True) == [spec]
    return t, spec


def test_updates_in_sequence_pass_through() -> None:
    t, _ = subscribed()
    event, replies = t.on_message(msg("snapshot", 1, 0, "s"))
    assert event is not None and (event.kind, event.seq, event.resync) == ("snapshot", 0, None)
    for seq in (1, 2, 3):
        event, replies = t.on_message(msg("update", 1, seq, seq))
        assert replies == [] and event is not None and event.data == seq
    assert t.gaps == 0


def test_a_gap_resubscribes_and_drops_until_the_new_snapshot() -> None:
    t, spec = subscribed()
    t.on_message(msg("snapshot", 1, 0))
    t.on_message(msg("update", 1, 1))
    event, replies = t.on_message(msg("update", 1, 3))  # seq 2 was lost
    assert event is None
    assert replies == [{"op": "unsubscribe", "id": 1}, spec]
    assert t.gaps == 1
    # Updates still in flight for the old subscription are not applied.
    assert t.on_message(msg("update", 1, 4)) == (None, [])
    event, _ = t.on_message(msg("snapshot", 1, 0, "fresh"))
    assert event is not None and event.resync == "gap" and event.data == "fresh"
    event, _ = t.on_message(msg("update", 1, 1))
    assert event is not None and event.resync is None


def test_a_reconnect_resubscribes_everything_and_marks_the_snapshots() -> None:
    t, spec = subscribed()
    blocks = t.add(2, "blocks", {})
    t.on_message(msg("snapshot", 1, 0))
    assert t.on_connect(first=False) == [spec, blocks]
    assert t.on_message(msg("update", 1, 1)) == (None, [])  # no snapshot yet on this connection
    event, _ = t.on_message(msg("snapshot", 1, 0))
    assert event is not None and event.resync == "reconnect"


def test_a_refused_subscription_raises_with_the_node_code() -> None:
    t, _ = subscribed()
    with pytest.raises(SubscriptionError) as info:
        t.on_message({"type": "error", "id": 1, "code": "unknown_market", "message": "no"})
    assert info.value.code == "unknown_market"
    with pytest.raises(SubscriptionError):
        t.add(3, "nonsense", {})
    with pytest.raises(SubscriptionError):
        t.add(1, "book", {})  # id in use


def test_ws_url_from_the_http_url() -> None:
    assert ws_url("http://127.0.0.1:26657/") == "ws://127.0.0.1:26657/v1/ws"
    assert ws_url("https://node.example") == "wss://node.example/v1/ws"
