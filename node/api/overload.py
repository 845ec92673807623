"""Load shedding on event-loop lag.

Consensus, block execution and the API share one trio event loop. When the API's requests
alone keep it busy, every task waits its turn longer, consensus messages included; past a
point views time out and the chain stops committing. The API notices first by timing itself:
a task sleeps ``TICK_S`` and measures how late it wakes (the overshoot is how long runnable
tasks kept the loop). The overshoots are smoothed with a time-weighted moving average over
``SMOOTHING_S``, so one long block execution (a single late tick) does not shed, while
sustained pressure does within about a second. While the smoothed lag is over the configured
threshold, new requests other than the health probes are answered ``503 overloaded`` with
``Retry-After`` before any work is done for them.
"""

from __future__ import annotations

import math

import trio

from node.metrics import Metrics

TICK_S = 0.05
SMOOTHING_S = 1.0


class LoopLag:
    """The smoothed event-loop lag and the shedding verdict it gives."""

    def __init__(self, threshold_s: float, metrics: Metrics | None = None) -> None:
        if threshold_s < 0:
            raise ValueError("threshold_s must not be negative")
        self.threshold_s = threshold_s  # 0 disables shedding
        self.metrics = metrics
        self.lag_s = 0.0

    def record(self, overshoot_s: float, elapsed_s: float) -> None:
        """Fold one measurement, taken over ``elapsed_s`` of wall time, into the average."""
        weight = 1.0 - math.exp(-max(elapsed_s, 0.0) / SMOOTHING_S)
        self.lag_s += weight * (max(overshoot_s, 0.0) - self.lag_s)
        if self.metrics is not None:
            self.metrics.api_event_loop_lag.set(self.lag_s)

    def overloaded(self) -> bool:
        return self.threshold_s > 0 and self.lag_s > self.threshold_s

    def retry_after_s(self) -> int:
        """Whole seconds a shed client should wait: the lag rounded up, at least one."""
        return max(1, math.ceil(self.lag_s))

    async def run(self) -> None:
        """Measure until cancelled (started by the app's lifespan)."""
        while True:
            start = trio.current_time()
            await trio.sleep(TICK_S)
            elapsed = trio.current_time() - start
            self.record(elapsed - TICK_S, elapsed)
