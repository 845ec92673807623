"""A real node store with trades in it, built by the node's own execution path."""

from __future__ import annotations

from pathlib import Path

from node.node import Node, now_ms
from tests.node.test_api_pieces import ALICE, BOB
from tests.node.test_api_served import execute_block, opened_node, order


def trade_payload(height: int) -> list[bytes]:
    """Two crossing orders (one fill of 10 lots); the sides alternate so positions stay
    small, the price walks within the band."""
    price = 6_000_000 + (height % 40) * 500
    nonce = now_ms() + height  # increasing: heights and the clock both only go up
    alice_buys = height % 2 == 0
    return [
        order(ALICE, nonce, alice_buys, price, 10),
        order(BOB, nonce, not alice_buys, price, 10),
    ]


async def add_trade_blocks(node: Node, count: int) -> None:
    for _ in range(count):
        assert node.chain is not None
        await execute_block(node, trade_payload(node.chain.height + 1))


async def build_chain(home: Path, blocks: int) -> None:
    """A node home whose store holds ``blocks`` blocks with one trade each."""
    with opened_node(home) as node:
        await add_trade_blocks(node, blocks)
