"""The transport's small decision rules, pure and separately tested.

* :class:`Backoff`: when to redial a peer after a failure;
* :class:`AbuseScore`: how much misbehaviour a peer may show before it is banned;
* :func:`keep_new_connection`: which of two connections to the same peer survives.
"""

from __future__ import annotations

import random

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
