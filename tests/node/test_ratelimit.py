from __future__ import annotations

import pytest

from node.api.ratelimit import RateLimiter, retry_after_header


def test_burst_then_refusal_then_refill() -> None:
    rl = RateLimiter(rate_per_s=2.0, burst=3)
    assert [rl.take("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = rl.take("a", 0.0)
    assert wait == pytest.approx(0.5)
    assert retry_after_header(wait) == "1"
    assert rl.take("b", 0.0) == 0.0  # other keys unaffected
    assert rl.take("a", 0.6) == 0.0  # refilled one token after 0.5 s
    assert rl.take("a", 0.6) > 0


def test_table_is_bounded() -> None:
    rl = RateLimiter(rate_per_s=1.0, burst=1, keys_max=10)
    for i in range(100):
        rl.take(f"k{i}", float(i))
    assert len(rl) == 10


def test_invalid_configuration_rejected() -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate_per_s=0, burst=1)
