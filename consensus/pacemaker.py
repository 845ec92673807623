"""Pacemaker rules: when to propose, when to give up on a view, when to jump ahead.

Pure functions of times and views the replica passes in (the core never reads a clock).

* Proposal pacing: a leader proposes a new block no earlier than its parent's timestamp plus
  the block interval (0.5 s by default), so blocks come at a steady rate however fast votes are.
* Timestamps: strictly increasing along the chain, and not more than the allowed drift ahead of
  the receiving replica's clock (a leader cannot push time forward on its own).
* View timeouts: ``base * 2**k`` for the k-th consecutive timeout since the last commit, capped;
  a commit resets k to 0. Doubling makes honest replicas' views overlap long enough to finish a
  view after a period of asynchrony; the cap bounds the wait after a long outage.
* View synchronisation: a replica that sees NEW-VIEW messages for higher views from validators
  holding more than 1/3 of the power (so at least one honest) jumps to the highest view such a
  set has reached, instead of waiting out its own (possibly long) timeouts.
"""

from __future__ import annotations

from collections.abc import Mapping

from consensus.validators import ValidatorSet

MAX_TIMEOUT_DOUBLINGS = 30


def view_timeout_ms(base_ms: int, cap_ms: int, consecutive_timeouts: int) -> int:
    """``base_ms * 2**consecutive_timeouts``, never above ``cap_ms``."""
    doublings = min(consecutive_timeouts, MAX_TIMEOUT_DOUBLINGS)
    return min(cap_ms, base_ms << doublings)


def proposal_ready_at_ms(parent_timestamp_ms: int, block_interval_ms: int) -> int:
    """The earliest local time at which a leader proposes a new child of the parent."""
    return parent_timestamp_ms + block_interval_ms


def next_block_timestamp_ms(now_ms: int, parent_timestamp_ms: int) -> int:
    """A new block's timestamp: the leader's clock, but strictly after the parent's."""
    return max(now_ms, parent_timestamp_ms + 1)


def timestamp_acceptable(
    timestamp_ms: int, parent_timestamp_ms: int, now_ms: int, max_drift_ms: int
) -> bool:
    """Strictly later than the parent's, and at most ``max_drift_ms`` ahead of our clock."""
    return parent_timestamp_ms < timestamp_ms <= now_ms + max_drift_ms


def synchronised_view(
    sender_views: Mapping[bytes, int], validators: ValidatorSet, current_view: int
) -> int | None:
    """The highest view ``w > current_view`` that validators with more than 1/3 of the power
    have all entered (by their NEW-VIEW messages), or None."""
    ahead = sorted(
        (
            (view, validators.index_of(key))
            for key, view in sender_views.items()
            if view > current_view and key in validators
        ),
        reverse=True,
    )
    power = 0
    for view, index in ahead:
        power += validators.powers[index]
        if validators.exceeds_one_third(power):
            return view
    return None
