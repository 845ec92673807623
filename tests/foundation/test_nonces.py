"""The nonce rule of DESIGN section 3."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from state_machine.codec import encode
from state_machine.nonces import (
    KEPT_NONCES,
    WIDE_NONCE,
    WINDOW_FUTURE_MS,
    WINDOW_PAST_MS,
    NonceCheck,
    NonceTracker,
)
from tests.conftest import examples

NOW = 1_800_000_000_000
A = b"\x01" * 32
B = b"\x02" * 32


def test_fresh_nonce_accepted_then_duplicate_rejected() -> None:
    t = NonceTracker()
    assert t.accept(A, NOW, NOW) is NonceCheck.OK
    assert t.accept(A, NOW, NOW) is NonceCheck.USED
    assert t.accept(B, NOW, NOW) is NonceCheck.OK  # per signer


def test_out_of_order_nonces_accepted_while_window_not_full() -> None:
    t = NonceTracker()
    assert t.accept(A, NOW + 5, NOW) is NonceCheck.OK
    assert t.accept(A, NOW + 1, NOW) is NonceCheck.OK
    assert t.accept(A, NOW + 3, NOW) is NonceCheck.OK


def test_time_window_bounds_are_exclusive() -> None:
    t = NonceTracker()
    assert t.check(A, NOW - WINDOW_PAST_MS, NOW) is NonceCheck.OUT_OF_WINDOW
    assert t.check(A, NOW - WINDOW_PAST_MS + 1, NOW) is NonceCheck.OK
    assert t.check(A, NOW + WINDOW_FUTURE_MS, NOW) is NonceCheck.OUT_OF_WINDOW
    assert t.check(A, NOW + WINDOW_FUTURE_MS - 1, NOW) is NonceCheck.OK
    assert t.check(A, 0, NOW) is NonceCheck.OUT_OF_WINDOW


def test_full_window_rejects_nonces_below_smallest_kept() -> None:
    t = NonceTracker()
    for i in range(KEPT_NONCES):
        assert t.accept(A, NOW + 10 * i, NOW) is NonceCheck.OK
    assert len(t.kept(A)) == KEPT_NONCES
    assert t.accept(A, NOW - 1, NOW) is NonceCheck.TOO_LOW
    assert t.accept(A, NOW + 5, NOW) is NonceCheck.OK  # above the smallest, unused
    assert NOW not in t.kept(A)  # the smallest was evicted
    assert t.accept(A, NOW, NOW) is NonceCheck.TOO_LOW  # evicted nonce cannot come back
    assert len(t.kept(A)) == KEPT_NONCES


def test_restore_keeps_highest() -> None:
    t = NonceTracker()
    t.restore(A, list(range(NOW, NOW + 200)))
    assert t.kept(A) == tuple(range(NOW + 72, NOW + 200))
    assert t.accept(A, NOW + 199, NOW) is NonceCheck.USED


@settings(max_examples=examples(150))
@given(
    nonces=st.lists(st.integers(NOW - 300, NOW + 300), max_size=400),
    times=st.lists(st.integers(-5, 5), min_size=1, max_size=5),
)
def test_accepted_nonce_is_never_accepted_twice(nonces: list[int], times: list[int]) -> None:
    t = NonceTracker()
    accepted: set[int] = set()
    for i, n in enumerate(nonces):
        if t.accept(A, n, NOW + times[i % len(times)]) is NonceCheck.OK:
            assert n not in accepted
            accepted.add(n)
        assert len(t.kept(A)) <= KEPT_NONCES
        assert list(t.kept(A)) == sorted(t.kept(A))


# A signer's state value, packed by the tracker from its bytes of wide nonces (nonces.py), must
# be the canonical msgpack of its kept nonces at every step: appends with evictions,
# out-of-order inserts, restores, narrow nonces (below 2**32, packed shorter) mixed in.
@settings(max_examples=examples(150))
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("accept"), st.integers(-400, 400)),
            st.tuples(st.just("restore"), st.integers(0, 200)),
        ),
        max_size=500,
    ),
    narrow=st.booleans(),
    start=st.integers(0, 40),
)
def test_kept_msgpack_is_the_canonical_value(
    steps: list[tuple[str, int]], narrow: bool, start: int
) -> None:
    # Block times near 2**32 when ``narrow``: the window then holds nonces on both sides.
    now = WIDE_NONCE + 300 if narrow else NOW
    t = NonceTracker()
    for i in range(start):  # some nonces first, so most steps run with a cached value
        t.accept(A, now - 2 * start + i, now)
        assert_value_canonical(t)
    for kind, x in steps:
        if kind == "accept":
            t.accept(A, now + x, now)
        else:
            t.restore(A, list(range(now - x, now + x, 3)))
        assert_value_canonical(t)


def assert_value_canonical(t: NonceTracker) -> None:
    packed = t.kept_msgpack(A)
    kept = t.kept_list(A)
    if packed is None:
        assert not kept or kept[0] < WIDE_NONCE
    else:
        assert packed == encode(kept)


def test_kept_msgpack_follows_a_full_window() -> None:
    t = NonceTracker()
    for i in range(KEPT_NONCES + 40):  # past the window: every accept evicts the smallest
        assert t.accept(A, NOW + i, NOW) is NonceCheck.OK
        assert t.kept_msgpack(A) == encode(t.kept_list(A))
    assert t.kept_msgpack(B) is None  # no nonces: the caller writes no value
