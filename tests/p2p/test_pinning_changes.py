"""Pinning that follows the validator set (``PeerManager.set_allowed``), over real TLS sockets:
a key removed is disconnected, no longer dialed and refused at the handshake; a key added is
accepted and dialed; the records of removed keys go (memory bounded by the set)."""

from __future__ import annotations

import trio

from tests.p2p.test_peer_manager import TEST_TIMEOUT_S, address, make_nodes, manager, wait_all


async def test_a_removed_key_is_disconnected_and_refused_and_an_added_one_connects() -> None:
    a, b, c = make_nodes(3)
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            ma = manager(a, [a, b])  # c is not pinned yet (a joining validator)
            port_a = await nursery.start(ma.run)
            mb = manager(b, [a, b])
            port_b = await nursery.start(mb.run)
            mc = manager(c, [a, c])
            port_c = await nursery.start(mc.run)
            ma.add_peer(address(b, port_b))
            mc.add_peer(address(a, port_a))
            await ma.wait_connected(b.key)
            await wait_all([ma], lambda: ma.statistics().rejected_unknown_key >= 1)
            assert c.key not in ma.connected_peers()

            # The set changes: c joins, b leaves.
            added, removed = ma.set_allowed([a.key, c.key])
            assert (added, removed) == ([c.key], [b.key])
            await ma.wait_disconnected(b.key)
            await ma.wait_connected(c.key)  # c's dial loop gets through now
            assert b.key not in ma.statistics().peers  # its records went with it
            # b keeps dialing a, and is refused at the handshake every time.
            mb.add_peer(address(a, port_a))
            refused = ma.statistics().rejected_unknown_key
            await wait_all([ma], lambda: ma.statistics().rejected_unknown_key > refused)
            assert b.key not in ma.connected_peers()

            # An added key can be dialed; a removed one's dial loop stops.
            ma.add_peer(address(c, port_c))
            ma.set_allowed([a.key])
            await ma.wait_disconnected(c.key)
            dials = ma.statistics().dial_attempts
            await trio.sleep(0.5)  # several backoff periods (FAST: at most 100 ms)
            assert ma.statistics().dial_attempts == dials
            nursery.cancel_scope.cancel()
