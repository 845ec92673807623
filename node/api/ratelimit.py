"""Token-bucket rate limits per client address and per signer.

Each key gets a bucket of ``burst`` tokens refilled at ``rate_per_s``; a request takes one
token or is refused with the seconds until one is available (the HTTP layer turns that into
429 with ``Retry-After``). The table of buckets is bounded: when it is full the bucket idle the
longest is dropped (an idle bucket is full anyway, so dropping it forgets nothing useful).
Time is passed in, so the limiter is deterministic under test.
"""

from __future__ import annotations

import math
from collections import OrderedDict


class RateLimiter:
    __slots__ = ("_buckets", "burst", "keys_max", "rate_per_s")

    def __init__(self, rate_per_s: float, burst: int, keys_max: int = 100_000) -> None:
        if rate_per_s <= 0 or burst < 1 or keys_max < 1:
            raise ValueError("rate_per_s, burst and keys_max must be positive")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.keys_max = keys_max
        # key -> (tokens, last refill time in seconds)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, now_s: float) -> float:
        """Take a token for ``key``. Returns 0.0 if allowed, else seconds to wait."""
        tokens, last = self._buckets.pop(key, (float(self.burst), now_s))
        tokens = min(float(self.burst), tokens + max(0.0, now_s - last) * self.rate_per_s)
        if tokens >= 1.0:
            self._store(key, tokens - 1.0, now_s)
            return 0.0
        self._store(key, tokens, now_s)
        return (1.0 - tokens) / self.rate_per_s

    def _store(self, key: str, tokens: float, now_s: float) -> None:
        self._buckets[key] = (tokens, now_s)
        while len(self._buckets) > self.keys_max:
            self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)


def retry_after_header(wait_s: float) -> str:
    """Whole seconds, at least 1, as HTTP's Retry-After wants."""
    return str(max(1, math.ceil(wait_s)))
