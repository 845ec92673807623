"""The peer manager: who we are connected to, and the only door in or out of the transport.

Theory of operation
-------------------
A node knows a fixed set of public keys it will talk to (the genesis validators plus any
configured full nodes: ``allowed_keys``) and, for some of them, where to dial them
(``PeerAddress``). The manager runs, under one nursery started with ``nursery.start``:

* an accept loop per listening socket. Each accepted TCP connection takes a pending-handshake
  slot (``HandshakeSlots`` in ``p2p/policy.py``) and gets a task that waits for its first
  byte (``handshake_silent_timeout_ms``), runs the TLS 1.3 handshake under
  ``handshake_timeout_ms`` from the accept and then pins the peer's key (see ``p2p/tls.py``).
  Slots are capped per source host and in all, with a separate pool for the hosts of known
  validators; a newcomer over a cap displaces the oldest connection under it that has not
  sent a byte yet, else it is closed at once and counted. So a flood of idle sockets costs a
  file descriptor for a moment and churns among itself, while a validator's connection, which
  sends its ClientHello at once, keeps its slot. Outbound dials take no inbound slot. At most
  ``connections_max`` connections and pending handshakes exist;
* a dial loop per configured peer: dial, handshake, check that the key is the one expected,
  run the connection; when it ends, wait ``Backoff`` (exponential, capped, jittered by an RNG
  seeded per node) and dial again. A loop whose peer is already connected (it dialed us)
  waits for that connection to end instead of dialing;
* per connection (``p2p/connection.py``): a reader that splits frames and puts payloads on the
  shared inbound queue, a writer that drains the peer's outbound queue in coalesced writes,
  and a keepalive ticker.

Invariants
~~~~~~~~~~
* At most one registered connection per peer key. If both sides dial at once, both ends keep
  the connection dialed by the lower key (``keep_new_connection``) and close the other;
  nothing needs to be exchanged to agree.
* Every queue is bounded. Inbound: one queue shared by all peers, bounded in frames and
  bytes, with backpressure (a full queue stops the readers and TCP flow control slows the
  peers; trio's channel resumes readers blocked on the frame bound in FIFO order, so one
  flooding peer cannot starve the others). Outbound: per peer, bounded in frames and
  bytes, never blocking the caller: when full the OLDEST frames are dropped and counted
  (see ``OutboundQueue``).
* Memory per peer is bounded: per-peer statistics and scores exist only for allowed keys;
  connections from unknown keys are counted in global counters and closed.
* Nothing a peer sends can raise out of the manager: handshake failures, unknown keys,
  oversize frames, silence and half-open sockets all end in a closed connection and a
  counter. Exceptions that do escape are our bugs and crash the node, as they should.

Abuse
~~~~~
The node calls ``penalize(peer, reason)`` for each malformed or invalid message. Points decay
linearly; crossing ``penalty_threshold`` disconnects the peer and bans it for ``ban_ms``:
inbound connections from it are closed after the handshake and we do not dial it. Oversize
frames are penalized by the transport itself. Time for scores and bans comes from an injected
clock (``trio.current_time`` by default) so tests can move it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import ipaddress
import random
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import trio

from p2p.address import PeerAddress, format_host_port
from p2p.check import check
from p2p.config import TransportConfig
from p2p.connection import (
    NETWORK_ERRORS,
    CloseReason,
    Connection,
    Direction,
    PeerStatistics,
)
from p2p.frames import encode_frame
from p2p.policy import AbuseScore, Backoff, HandshakeSlots, keep_new_connection
from p2p.tls import PUBLIC_KEY_BYTES, make_tls_contexts, peer_public_key

PENALTY_POINTS_DEFAULT = 10
# Distinct penalty reasons tracked per peer; more are folded into "other" (bounded memory).
PENALTY_REASONS_MAX = 32
# After accept() fails for lack of file descriptors, wait this long before accepting again
# instead of spinning; connections closing in the meantime free descriptors.
ACCEPT_RETRY_DELAY_S = 0.1
_ACCEPT_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})


class InboundFrame(NamedTuple):
    peer_id: bytes
    payload: bytes


class InboundQueue:
    """Payloads from all peers to the node, bounded in frames and in bytes.

    ``put`` waits while the queue is full (backpressure to the readers); ``receive`` and
    ``async for`` are the node's side. After the manager stops, the node's iteration ends.
    """

    def __init__(self, frames_max: int, bytes_max: int) -> None:
        self.frames_max = frames_max
        self.bytes_max = bytes_max
        self.queued_bytes = 0
        self._send, self._receive = trio.open_memory_channel[InboundFrame](frames_max)
        self._space = trio.lowlevel.ParkingLot()

    def __len__(self) -> int:
        return self._send.statistics().current_buffer_used

    async def put(self, frame: InboundFrame) -> None:
        size = len(frame.payload)
        # A frame larger than the remaining budget waits for room, but an empty queue takes
        # any frame, so one frame of up to frame_bytes_max always gets through.
        while self.queued_bytes > 0 and self.queued_bytes + size > self.bytes_max:
            await self._space.park()
        self.queued_bytes += size
        try:
            await self._send.send(frame)
        except BaseException:
            self.queued_bytes -= size
            self._space.unpark_all()
            raise

    async def receive(self) -> InboundFrame:
        frame = await self._receive.receive()
        self.queued_bytes -= len(frame.payload)
        check(self.queued_bytes >= 0, "inbound queue byte count went negative")
        self._space.unpark_all()
        return frame

    def __aiter__(self) -> InboundQueue:
        return self

    async def __anext__(self) -> InboundFrame:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    def close_sender(self) -> None:
        self._send.close()


@dataclasses.dataclass(slots=True)
class PeerManagerStatistics:
    """A snapshot of the manager's counters (``statistics()`` returns a copy)."""

    listen_port: int = 0
    connected_peers: int = 0
    handshakes_pending: int = 0
    handshakes_pending_reserved: int = 0  # of which from known validators' hosts
    inbound_queue_frames: int = 0
    inbound_queue_bytes: int = 0
    tcp_accepted: int = 0
    accept_errors: int = 0
    rejected_over_limit: int = 0
    handshake_failures: int = 0  # not TLS, bad TLS, or no certificate / wrong protocol
    handshake_timeouts: int = 0
    handshake_silent_timeouts: int = 0  # no byte at all within handshake_silent_timeout_ms
    handshakes_evicted: int = 0  # silent, displaced by a newer connection over a cap
    handshakes_refused_per_host: int = 0
    handshakes_refused_public_full: int = 0
    handshakes_refused_reserved_full: int = 0
    rejected_unknown_key: int = 0
    rejected_identity_mismatch: int = 0  # dialed peer presented another (allowed) key
    rejected_self: int = 0
    rejected_banned: int = 0
    duplicates_closed: int = 0
    dial_attempts: int = 0
    dial_failures: int = 0
    oversize_frames: int = 0
    idle_timeouts: int = 0
    write_timeouts: int = 0
    frames_dropped: int = 0
    penalties: int = 0
    bans: int = 0
    # Sums over the peers below, for metrics that want one number.
    bytes_in: int = 0
    bytes_out: int = 0
    frames_in: int = 0
    frames_out: int = 0
    penalties_by_reason: dict[str, int] = dataclasses.field(default_factory=dict)
    peers: dict[bytes, PeerStatistics] = dataclasses.field(default_factory=dict)


class PeerManager:
    """Authenticated, framed, bounded connections to a fixed set of peer keys.

    Start with ``await nursery.start(manager.run)`` (returns the listening port); stop by
    cancelling that nursery or with ``stop()``. Read ``manager.inbound``.
    """

    def __init__(
        self,
        node_seed: bytes,
        config: TransportConfig,
        *,
        allowed_keys: Iterable[bytes],
        peers: Iterable[PeerAddress] = (),
        rng: random.Random | None = None,
        clock: Callable[[], float] | None = None,
        on_connected: Callable[[bytes], None] | None = None,
    ) -> None:
        """``on_connected(peer_id)`` is called (synchronously, so it must not block) each time
        a connection to ``peer_id`` is registered: a connect or a reconnect, after which the
        peer has missed whatever was sent while it was away."""
        config.validate()
        self._config = config
        self._tls = make_tls_contexts(node_seed)
        self.public_key = self._tls.public_key
        self._allowed = frozenset(allowed_keys) - {self.public_key}
        for key in self._allowed:
            if len(key) != PUBLIC_KEY_BYTES:
                raise ValueError(f"allowed key {key.hex()} is not {PUBLIC_KEY_BYTES} bytes")
        # Seeded by our own key: reproducible per node, different between nodes.
        self._rng = rng if rng is not None else random.Random(self.public_key)
        self._clock = clock
        self._on_connected = on_connected
        self.inbound = InboundQueue(config.inbound_queue_frames, config.inbound_queue_bytes_max)
        self._peer_addresses: dict[bytes, PeerAddress] = {}
        self._dialing: set[bytes] = set()  # keys with a running dial loop
        self._connections: dict[bytes, Connection] = {}
        self._peer_stats = {key: PeerStatistics() for key in self._allowed}
        self._scores = {
            key: AbuseScore(config.penalty_threshold, config.penalty_decay_per_s)
            for key in self._allowed
        }
        self._banned_until_s: dict[bytes, float] = {}
        self._counters = PeerManagerStatistics()
        self._slots = HandshakeSlots(
            config.handshakes_pending_max,
            config.handshakes_per_host_max,
            config.handshakes_reserved_max,
        )
        # Cancel scopes of inbound connections still waiting for their first byte, by slot.
        self._silent_scopes: dict[int, trio.CancelScope] = {}
        # Hosts whose connections use the reserved slots: configured peers' IP addresses and
        # where each allowed key was last seen (one per key: bounded by the allowed set).
        self._configured_hosts: set[str] = set()
        self._seen_hosts: dict[bytes, str] = {}
        self._reserved_hosts: frozenset[str] = frozenset()
        self._changed = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._started = False
        for address in peers:
            self.add_peer(address)

    # ---------------------------------------------------------------- lifecycle

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, dial, serve until cancelled; ``task_status.started(listen_port)``."""
        check(not self._started, "PeerManager.run may be called once")
        self._started = True
        listeners = await trio.open_tcp_listeners(
            self._config.listen_port, host=self._config.listen_host
        )
        self._counters.listen_port = listeners[0].socket.getsockname()[1]
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for listener in listeners:
                    nursery.start_soon(self._accept_loop, listener, nursery)
                for key in self._peer_addresses:
                    self._dialing.add(key)
                    nursery.start_soon(self._dial_loop, key)
                task_status.started(self._counters.listen_port)
        finally:
            self._nursery = None
            self.inbound.close_sender()
            for listener in listeners:
                await trio.aclose_forcefully(listener)

    def stop(self) -> None:
        """Close every connection and return from ``run``."""
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    @property
    def listen_port(self) -> int:
        return self._counters.listen_port

    def add_peer(self, address: PeerAddress) -> None:
        """Dial ``address`` (now, or when ``run`` starts) and keep redialing it.

        A second call for the same key only changes where the next dial goes.
        """
        key = address.public_key
        if key not in self._allowed:
            raise ValueError(f"peer {key.hex()} is not in the allowed set (or is this node)")
        is_new = key not in self._dialing
        self._peer_addresses[key] = address
        host = _ip_text(address.host)
        if host is not None:
            self._configured_hosts.add(host)
            self._refresh_reserved_hosts()
        if is_new and self._nursery is not None:
            self._dialing.add(key)
            self._nursery.start_soon(self._dial_loop, key)

    def set_allowed(self, allowed_keys: Iterable[bytes]) -> tuple[list[bytes], list[bytes]]:
        """Replace the pinned keys (the validator set changed): new keys are accepted and may
        be dialed with :meth:`add_peer`; removed keys are disconnected, no longer dialed and
        refused at the handshake. Returns ``(added, removed)``. Statistics and abuse scores
        of a removed key go when its connection does (memory stays bounded by the set)."""
        new = frozenset(allowed_keys) - {self.public_key}
        for key in new:
            if len(key) != PUBLIC_KEY_BYTES:
                raise ValueError(f"allowed key {key.hex()} is not {PUBLIC_KEY_BYTES} bytes")
        added = sorted(new - self._allowed)
        removed = sorted(self._allowed - new)
        self._allowed = new
        for key in added:
            self._peer_stats.setdefault(key, PeerStatistics())
            self._scores.setdefault(
                key, AbuseScore(self._config.penalty_threshold, self._config.penalty_decay_per_s)
            )
        for key in removed:
            self._peer_addresses.pop(key, None)  # its dial loop ends at its next turn
            self._seen_hosts.pop(key, None)
            if not self.disconnect(key):
                self._forget(key)
        self._refresh_reserved_hosts()
        self._notify()
        return added, removed

    def _forget(self, key: bytes) -> None:
        """Drop the per-peer records of a key no longer allowed and not connected."""
        if key not in self._allowed and key not in self._connections:
            self._peer_stats.pop(key, None)
            self._scores.pop(key, None)
            self._banned_until_s.pop(key, None)

    # ---------------------------------------------------------------- the node's API

    def send(self, peer_id: bytes, payload: bytes) -> bool:
        """Queue ``payload`` for ``peer_id``; False if not connected. Never blocks.

        Raises FrameTooLarge if the payload is over ``frame_bytes_max``.
        """
        frame = encode_frame(payload, self._config.frame_bytes_max)
        connection = self._connections.get(peer_id)
        if connection is None:
            return False
        connection.enqueue(frame)
        return True

    def broadcast(self, payload: bytes) -> int:
        """Queue ``payload`` for every connected peer; returns how many. Encodes once."""
        frame = encode_frame(payload, self._config.frame_bytes_max)
        for connection in self._connections.values():
            connection.enqueue(frame)
        return len(self._connections)

    def connected_peers(self) -> list[bytes]:
        return sorted(self._connections)

    def disconnect(self, peer_id: bytes) -> bool:
        connection = self._connections.get(peer_id)
        if connection is None:
            return False
        connection.close(CloseReason.LOCAL)
        return True

    def penalize(self, peer_id: bytes, reason: str, points: int = PENALTY_POINTS_DEFAULT) -> bool:
        """Count a malformed or invalid message against ``peer_id``.

        Returns True if this penalty crossed the threshold: the peer is then disconnected and
        banned for ``ban_ms``. Unknown keys are ignored (there is nothing to ban).
        """
        stats = self._peer_stats.get(peer_id)
        if stats is None:
            return False
        now_s = self._now_s()
        if reason not in stats.penalties_by_reason and (
            len(stats.penalties_by_reason) >= PENALTY_REASONS_MAX
        ):
            reason = "other"
        stats.penalties_by_reason[reason] = stats.penalties_by_reason.get(reason, 0) + 1
        stats.penalties += 1
        self._counters.penalties += 1
        crossed = self._scores[peer_id].add(points, now_s)
        if crossed:
            self._ban(peer_id, now_s)
        self._notify()
        return crossed

    def is_banned(self, peer_id: bytes) -> bool:
        until_s = self._banned_until_s.get(peer_id)
        if until_s is None:
            return False
        if self._now_s() >= until_s:
            del self._banned_until_s[peer_id]
            return False
        return True

    def unban(self, peer_id: bytes) -> None:
        self._banned_until_s.pop(peer_id, None)
        self._notify()

    def statistics(self) -> PeerManagerStatistics:
        now_s = self._now_s()
        peers = {}
        by_reason: dict[str, int] = {}
        for key, stats in self._peer_stats.items():
            stats.penalty_score = self._scores[key].value(now_s)
            stats.banned = self.is_banned(key)
            peers[key] = dataclasses.replace(
                stats, penalties_by_reason=dict(stats.penalties_by_reason)
            )
            for reason, count in stats.penalties_by_reason.items():
                by_reason[reason] = by_reason.get(reason, 0) + count
        return dataclasses.replace(
            self._counters,
            connected_peers=len(self._connections),
            handshakes_pending=len(self._slots),
            handshakes_pending_reserved=self._slots.count(reserved=True),
            inbound_queue_frames=len(self.inbound),
            inbound_queue_bytes=self.inbound.queued_bytes,
            bytes_in=sum(p.bytes_in for p in peers.values()),
            bytes_out=sum(p.bytes_out for p in peers.values()),
            frames_in=sum(p.frames_in for p in peers.values()),
            frames_out=sum(p.frames_out for p in peers.values()),
            penalties_by_reason=by_reason,
            peers=peers,
        )

    def next_change(self) -> trio.Event:
        """An event set at the next connection event (connect, disconnect, rejection, drop,
        penalty, ban). Take it before checking a condition, then wait on it: no change can
        slip between the check and the wait."""
        return self._changed

    async def wait_connected(self, peer_id: bytes) -> None:
        await self._wait_for(lambda: peer_id in self._connections)

    async def wait_disconnected(self, peer_id: bytes) -> None:
        await self._wait_for(lambda: peer_id not in self._connections)

    async def wait_statistics(
        self, predicate: Callable[[PeerManagerStatistics], bool]
    ) -> PeerManagerStatistics:
        """Wait until ``predicate(statistics())`` holds; returns that snapshot.

        Re-checked on connection events, rejections, drops, penalties and bans (not on every
        byte), so a predicate should be about those.
        """
        result: list[PeerManagerStatistics] = []

        def holds() -> bool:
            snapshot = self.statistics()
            if predicate(snapshot):
                result.append(snapshot)
                return True
            return False

        await self._wait_for(holds)
        return result[0]

    # ---------------------------------------------------------------- internals

    def _now_s(self) -> float:
        return self._clock() if self._clock is not None else trio.current_time()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _wait_for(self, condition: Callable[[], bool]) -> None:
        while True:
            changed = self._changed  # taken before the check, so no change is missed
            if condition():
                return
            await changed.wait()

    def _ban(self, peer_id: bytes, now_s: float) -> None:
        self._banned_until_s[peer_id] = now_s + self._config.ban_ms / 1000
        self._peer_stats[peer_id].bans += 1
        self._counters.bans += 1
        connection = self._connections.get(peer_id)
        if connection is not None:
            connection.close(CloseReason.BANNED)

    def _on_drop(self, dropped: int) -> None:
        self._counters.frames_dropped += dropped
        self._notify()

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _ACCEPT_RESOURCE_ERRNOS:
                    raise
                self._counters.accept_errors += 1
                await trio.sleep(ACCEPT_RETRY_DELAY_S)
                continue
            self._counters.tcp_accepted += 1
            token = self._take_handshake_slot(stream)
            if token is None:
                self._notify()
                await trio.aclose_forcefully(stream)
                continue
            nursery.start_soon(self._serve_inbound, stream, token)

    def _take_handshake_slot(self, stream: trio.SocketStream) -> int | None:
        """A pending-handshake slot for a just-accepted connection, or None (counted)."""
        if len(self._connections) + len(self._slots) >= self._config.connections_max:
            self._counters.rejected_over_limit += 1
            return None
        host = _remote_host(stream)
        token, evicted, refusal = self._slots.admit(host, reserved=host in self._reserved_hosts)
        if evicted is not None:
            self._counters.handshakes_evicted += 1
            scope = self._silent_scopes.pop(evicted, None)
            if scope is not None:
                scope.cancel()
        if refusal == "per_host":
            self._counters.handshakes_refused_per_host += 1
        elif refusal == "public_full":
            self._counters.handshakes_refused_public_full += 1
        elif refusal == "reserved_full":
            self._counters.handshakes_refused_reserved_full += 1
        return token

    async def _serve_inbound(self, stream: trio.SocketStream, token: int) -> None:
        remote_address = _remote_address(stream)
        accepted_s = trio.current_time()
        deadline_s = accepted_s + self._config.handshake_timeout_ms / 1000
        ssl_stream = None
        try:
            silence = await self._wait_first_byte(stream, token, accepted_s)
            if not silence:
                ssl_stream = await self._handshake(stream, server_side=True, deadline_s=deadline_s)
            else:
                self._slots.release(token)
                await trio.aclose_forcefully(stream)
                # Counted after the close, so a counter never runs ahead of the state.
                if silence == "silent":
                    self._counters.handshake_silent_timeouts += 1
        finally:
            self._silent_scopes.pop(token, None)
            self._slots.release(token)
            self._notify()
        if ssl_stream is None:
            return
        peer_id = peer_public_key(ssl_stream)
        if not self._admit(peer_id, expected=None) or peer_id is None:
            await trio.aclose_forcefully(ssl_stream)
            return
        self._learn_host(peer_id, _remote_host(stream))
        connection = self._new_connection(
            ssl_stream, peer_id, peer_id, Direction.INBOUND, remote_address
        )
        await self._run_connection(connection)

    async def _dial_loop(self, peer_id: bytes) -> None:
        backoff = Backoff(
            self._config.dial_backoff_base_ms, self._config.dial_backoff_max_ms, self._rng
        )
        try:
            await self._dial_until_removed(peer_id, backoff)
        finally:
            self._dialing.discard(peer_id)

    async def _dial_until_removed(self, peer_id: bytes, backoff: Backoff) -> None:
        backoff_max_s = self._config.dial_backoff_max_ms / 1000
        while True:
            if peer_id not in self._peer_addresses:
                return  # no longer pinned (set_allowed)
            if peer_id in self._connections:
                await self.wait_disconnected(peer_id)
                continue
            if self.is_banned(peer_id):
                # A ban ends by the clock, not by an event: look again after a while.
                remaining_s = self._banned_until_s.get(peer_id, 0.0) - self._now_s()
                await trio.sleep(max(0.0, min(remaining_s, backoff_max_s)))
                continue
            lifetime_s = await self._dial_once(peer_id)
            if lifetime_s is not None and lifetime_s * 1000 >= self._config.backoff_reset_after_ms:
                backoff.reset()
            await trio.sleep(backoff.next_delay_ms() / 1000)

    async def _dial_once(self, peer_id: bytes) -> float | None:
        """Dial, handshake, run the connection; its lifetime in seconds, or None if no
        connection was established."""
        address = self._peer_addresses[peer_id]
        self._counters.dial_attempts += 1
        deadline_s = trio.current_time() + self._config.handshake_timeout_ms / 1000
        tcp: trio.SocketStream | None = None
        with trio.move_on_at(deadline_s):
            with contextlib.suppress(OSError):  # refused, unreachable, unresolvable
                tcp = await trio.open_tcp_stream(address.host, address.port)
        if tcp is None:
            self._counters.dial_failures += 1
            self._notify()
            return None
        ssl_stream = await self._handshake(tcp, server_side=False, deadline_s=deadline_s)
        if ssl_stream is None:
            return None
        peer_key = peer_public_key(ssl_stream)
        if not self._admit(peer_key, expected=peer_id):
            await trio.aclose_forcefully(ssl_stream)
            return None
        self._learn_host(peer_id, _remote_host(tcp))
        connection = self._new_connection(
            ssl_stream,
            peer_id,
            self.public_key,
            Direction.OUTBOUND,
            format_host_port(address.host, address.port),
        )
        await self._run_connection(connection)
        return trio.current_time() - connection.opened_at_s

    async def _wait_first_byte(
        self, stream: trio.SocketStream, token: int, accepted_s: float
    ) -> str:
        """Wait until the connection sends something: "" then; "silent" if it sent nothing for
        ``handshake_silent_timeout_ms``, "evicted" if a newer connection took its slot (counted
        by the accept loop)."""
        if not self._slots.holds(token):
            return "evicted"  # before this task even started
        silent_s = self._config.handshake_silent_timeout_ms / 1000
        scope = trio.CancelScope(deadline=accepted_s + silent_s)
        self._silent_scopes[token] = scope
        with scope:
            await trio.lowlevel.wait_readable(stream.socket)
        self._silent_scopes.pop(token, None)
        if not self._slots.holds(token):
            return "evicted"
        if scope.cancelled_caught:
            return "silent"
        self._slots.mark_spoken(token)
        return ""

    def _learn_host(self, peer_id: bytes, host: str) -> None:
        """An allowed peer was just authenticated at ``host``: its later connections from
        there use the reserved handshake slots."""
        if host == "?" or self._seen_hosts.get(peer_id) == host:
            return
        self._seen_hosts[peer_id] = host
        self._refresh_reserved_hosts()

    def _refresh_reserved_hosts(self) -> None:
        self._reserved_hosts = frozenset(self._configured_hosts) | frozenset(
            self._seen_hosts.values()
        )

    async def _handshake(
        self, stream: trio.SocketStream, *, server_side: bool, deadline_s: float
    ) -> trio.SSLStream[trio.SocketStream] | None:
        context = self._tls.server if server_side else self._tls.client
        ssl_stream = trio.SSLStream(stream, context, server_side=server_side)
        failed = False
        with trio.move_on_at(deadline_s) as timer:
            try:
                await ssl_stream.do_handshake()
                return ssl_stream
            except NETWORK_ERRORS:
                failed = True
        # Closed before counting, so a counter never runs ahead of the state it describes.
        await trio.aclose_forcefully(ssl_stream)
        if failed:
            self._counters.handshake_failures += 1
        elif timer.cancelled_caught:
            self._counters.handshake_timeouts += 1
        self._notify()
        return None

    def _admit(self, peer_id: bytes | None, *, expected: bytes | None) -> bool:
        """The pin: is the handshaken peer one we talk to? Counts every refusal."""
        counters = self._counters
        if peer_id is None:
            counters.handshake_failures += 1
        elif expected is not None and peer_id != expected:
            counters.rejected_identity_mismatch += 1
        elif peer_id == self.public_key:
            counters.rejected_self += 1
        elif peer_id not in self._allowed:
            counters.rejected_unknown_key += 1
        elif self.is_banned(peer_id):
            counters.rejected_banned += 1
        else:
            return True
        self._notify()
        return False

    def _new_connection(
        self,
        stream: trio.SSLStream[Any],
        peer_id: bytes,
        dialer_key: bytes,
        direction: Direction,
        remote_address: str,
    ) -> Connection:
        return Connection(
            stream,
            peer_id=peer_id,
            dialer_key=dialer_key,
            direction=direction,
            remote_address=remote_address,
            config=self._config,
            stats=self._peer_stats[peer_id],
            deliver=self._deliver,
            on_drop=self._on_drop,
        )

    async def _deliver(self, peer_id: bytes, payload: bytes) -> None:
        # Closed only when the manager is stopping and the node no longer reads.
        with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            await self.inbound.put(InboundFrame(peer_id, payload))

    async def _run_connection(self, connection: Connection) -> None:
        registered = self._register(connection)
        try:
            await connection.run()
        finally:
            if registered:
                self._unregister(connection)

    def _register(self, connection: Connection) -> bool:
        peer_id = connection.peer_id
        existing = self._connections.get(peer_id)
        if existing is not None:
            self._counters.duplicates_closed += 1
            keep_new = keep_new_connection(
                self.public_key, peer_id, existing.dialer_key, connection.dialer_key
            )
            loser = existing if keep_new else connection
            loser.close(CloseReason.DUPLICATE)
            if not keep_new:
                self._notify()
                return False
        elif len(self._connections) >= self._config.connections_max:
            self._counters.rejected_over_limit += 1
            connection.close(CloseReason.LOCAL)
            self._notify()
            return False
        self._connections[peer_id] = connection
        stats = self._peer_stats[peer_id]
        stats.connected = True
        stats.direction = connection.direction.value
        stats.remote_address = connection.remote_address
        stats.connects += 1
        self._notify()
        if self._on_connected is not None:
            self._on_connected(peer_id)
        return True

    def _unregister(self, connection: Connection) -> None:
        peer_id = connection.peer_id
        stats = self._peer_stats[peer_id]
        if self._connections.get(peer_id) is connection:
            del self._connections[peer_id]
            stats.connected = False
            stats.direction = ""
            stats.outbound_queue_frames = 0
            stats.outbound_queue_bytes = 0
        reason = connection.close_reason or CloseReason.SHUTDOWN
        stats.disconnects += 1
        if peer_id not in self._allowed:
            self._forget(peer_id)  # removed from the set while connected
            self._notify()
            return
        stats.last_close_reason = reason.value
        if reason is CloseReason.OVERSIZE_FRAME:
            stats.invalid_frames += 1
            self._counters.oversize_frames += 1
            self.penalize(peer_id, "oversize_frame")
        elif reason is CloseReason.IDLE_TIMEOUT:
            self._counters.idle_timeouts += 1
        elif reason is CloseReason.WRITE_TIMEOUT:
            self._counters.write_timeouts += 1
        self._notify()


def _ip_text(host: str) -> str | None:
    """The canonical text of an IP address (an IPv4-mapped IPv6 one as IPv4); None for a name."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _remote_host(stream: trio.SocketStream) -> str:
    """The connection's source IP, canonical (what per-host limits count); "?" if unknown."""
    try:
        host = str(stream.socket.getpeername()[0])
    except OSError:
        return "?"
    return _ip_text(host) or host


def _remote_address(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:
        return "?"
    return format_host_port(str(host), int(port))
