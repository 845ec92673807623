"""The transport's small decision rules, pure and separately tested.

* :class:`Backoff`: when to redial a peer after a failure;
* :class:`AbuseScore`: how much misbehaviour a peer may show before it is banned;
* :func:`keep_new_connection`: which of two connections to the same peer survives;
* :class:`HandshakeSlots`: which inbound connections may wait for a handshake.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from p2p.check import check


class Backoff:
    """Exponential backoff with "equal jitter", capped.

    Attempt ``n`` (from 0) waits a uniformly random time in ``[d/2, d]`` where
    ``d = min(max_ms, base_ms * 2**n)``. The jitter comes from an injected RNG seeded per
    node, so a test run is reproducible while two nodes that lost each other at the same
    instant do not redial in lock-step.
    """

    __slots__ = ("_rng", "attempts", "base_ms", "max_ms")

    def __init__(self, base_ms: int, max_ms: int, rng: random.Random) -> None:
        check(0 < base_ms <= max_ms, "backoff needs 0 < base_ms <= max_ms")
        self.base_ms = base_ms
        self.max_ms = max_ms
        self.attempts = 0
        self._rng = rng

    def ceiling_ms(self) -> int:
        # Cap the exponent first: 2**attempts would grow without bound on a peer that is down
        # for days.
        exponent = min(self.attempts, 62)
        return min(self.max_ms, self.base_ms << exponent)

    def next_delay_ms(self) -> float:
        ceiling = self.ceiling_ms()
        self.attempts += 1
        return ceiling / 2 + self._rng.random() * ceiling / 2

    def reset(self) -> None:
        self.attempts = 0


class AbuseScore:
    """Penalty points with linear decay; crossing ``threshold`` means "ban this peer".

    Decay forgives occasional mistakes (a message that was valid when sent and is stale on
    arrival looks invalid too) while a steady stream of bad messages accumulates.
    """

    __slots__ = ("_points", "_updated_at_s", "decay_per_s", "threshold")

    def __init__(self, threshold: int, decay_per_s: float) -> None:
        check(threshold > 0 and decay_per_s >= 0, "abuse score needs threshold > 0, decay >= 0")
        self.threshold = threshold
        self.decay_per_s = decay_per_s
        self._points = 0.0
        self._updated_at_s = 0.0

    def value(self, now_s: float) -> float:
        elapsed_s = max(0.0, now_s - self._updated_at_s)
        return max(0.0, self._points - elapsed_s * self.decay_per_s)

    def add(self, points: int, now_s: float) -> bool:
        """Add ``points``; True if the score reached the threshold (and was reset)."""
        check(points >= 0, "penalty points must be non-negative")
        self._points = self.value(now_s) + points
        self._updated_at_s = now_s
        if self._points >= self.threshold:
            self._points = 0.0
            return True
        return False


def keep_new_connection(
    local_key: bytes, peer_key: bytes, existing_dialer: bytes, new_dialer: bytes
) -> bool:
    """Two connections to one peer: keep the new one (True) or the existing one (False)?

    The preferred connection is the one dialed by the lower of the two keys. Both ends apply
    the same rule to the same pair of connections, so they agree without talking. When both
    connections were dialed by the same side (the dialer lost the old one, e.g. it restarted,
    and we have not noticed yet), the newer wins: the dialer has already given up on the old.
    """
    check(local_key != peer_key, "a connection to ourselves")
    check(existing_dialer in (local_key, peer_key), "existing dialer is neither end")
    check(new_dialer in (local_key, peer_key), "new dialer is neither end")
    preferred_dialer = min(local_key, peer_key)
    return new_dialer == preferred_dialer or existing_dialer != preferred_dialer


class HandshakeSlots:
    """Which inbound connections may hold a pending-handshake slot, and which one to drop.

    An inbound TCP connection costs a task and a file descriptor until its TLS handshake ends,
    so pending handshakes are capped. A single global cap lets anyone who can open sockets
    fill it with silent connections and keep validators out, so the slots are split:

    * **reserved**: connections from the hosts of known validators (configured addresses,
      and addresses a validator was last seen connecting from or answering at). Capped by
      ``reserved_max``, with no per-host cap, because several validators may share one host
      (a localnet, a NAT);
    * **public**: everyone else, capped by ``per_host_max`` per source host and by
      ``public_max`` in all.

    A connection is *silent* until its first byte arrives. An honest client sends its TLS
    ClientHello right after connecting, so a silent connection is at best a slow one; when a
    cap is reached, the newcomer takes the slot of the oldest silent connection under that
    cap (same host for the per-host cap, same class otherwise). Only when every slot under the
    cap has spoken is the newcomer refused. So a flood of idle sockets churns among itself
    while a validator's connection, which speaks at once, keeps its slot.

    Pure bookkeeping: tokens are ints chosen here; the caller closes what it is told to.
    """

    __slots__ = (
        "_by_host",
        "_entries",
        "_next_token",
        "per_host_max",
        "public_max",
        "reserved_max",
    )

    def __init__(self, public_max: int, per_host_max: int, reserved_max: int) -> None:
        check(public_max > 0 and per_host_max > 0 and reserved_max > 0, "slot caps must be > 0")
        self.public_max = public_max
        self.per_host_max = per_host_max
        self.reserved_max = reserved_max
        # token -> (host, reserved, spoken), in admission order (oldest first).
        self._entries: dict[int, tuple[str, bool, bool]] = {}
        self._by_host: dict[str, int] = {}  # public slots per host
        self._next_token = 0

    def __len__(self) -> int:
        return len(self._entries)

    def count(self, *, reserved: bool) -> int:
        return sum(1 for _, r, _ in self._entries.values() if r == reserved)

    def admit(self, host: str, *, reserved: bool) -> tuple[int | None, int | None, str]:
        """``(token, evicted, refusal)``: the new connection's token (None if refused), the
        token of the silent connection it displaced (None if none), and why it was refused
        (``"per_host"``, ``"public_full"``, ``"reserved_full"``; "" when admitted)."""
        evicted: int | None = None
        if not reserved and self._by_host.get(host, 0) >= self.per_host_max:
            evicted = self._oldest_silent(lambda h, r: h == host and not r)
            if evicted is None:
                return None, None, "per_host"
        elif self.count(reserved=reserved) >= (self.reserved_max if reserved else self.public_max):
            evicted = self._oldest_silent(lambda h, r: r == reserved)
            if evicted is None:
                return None, None, "reserved_full" if reserved else "public_full"
        if evicted is not None:
            self.release(evicted)
        token = self._next_token
        self._next_token += 1
        self._entries[token] = (host, reserved, False)
        if not reserved:
            self._by_host[host] = self._by_host.get(host, 0) + 1
        return token, evicted, ""

    def host_count(self, host: str) -> int:
        """Public slots held by ``host``."""
        return self._by_host.get(host, 0)

    def mark_spoken(self, token: int) -> bool:
        """The connection's first byte arrived; False if it was evicted meanwhile."""
        entry = self._entries.get(token)
        if entry is None:
            return False
        self._entries[token] = (entry[0], entry[1], True)
        return True

    def holds(self, token: int) -> bool:
        return token in self._entries

    def release(self, token: int) -> None:
        """Free the slot (handshake over, failed or evicted); unknown tokens are ignored."""
        entry = self._entries.pop(token, None)
        if entry is None or entry[1]:
            return
        host = entry[0]
        left = self._by_host[host] - 1
        check(left >= 0, "per-host handshake count went negative")
        if left:
            self._by_host[host] = left
        else:
            del self._by_host[host]

    def _oldest_silent(self, matches: Callable[[str, bool], bool]) -> int | None:
        for token, (host, reserved, spoken) in self._entries.items():
            if not spoken and matches(host, reserved):
                return token
        return None
