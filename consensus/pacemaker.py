"""Pacemaker rules: when to propose, when to give up on a view, when to jump ahead.

Pure functions of times and views the replica passes in (the core never reads a clock).

* Proposal pacing: a leader proposes a new block no earlier than its parent's timestamp plus
  the block interval (0.5 s by default), so blocks come at a steady rate however fast votes are.
* Timestamps: strictly increasing along the chain, and not more than the allowed drift ahead of
  the receiving replica's clock (a leader cannot push time forward on its own).
* View timeouts: ``base * 2**k`` for the k-th consecutive timeout since the last commit, capped;
  a commit resets k to 0. Doubling makes honest replicas' views overlap long enough to finish a
  view after a period of asynchrony; the cap bounds the wait after a long outage.
* View synchronisation (as in DiemBFT's round synchroniser, with NEW-VIEW as the timeout
  message): a replica whose view timer fires broadcasts NEW-VIEW for the next view but does not
  move on alone; it enters view ``w`` once validators with more than 2/3 of the power have sent
  NEW-VIEW for ``w`` or later (a timeout certificate, :func:`quorum_view`). When more than 1/3 of
  the power (so at least one honest validator) has given up on views below ``w``
  (:func:`joined_view`), it gives up too and sends its own NEW-VIEW for ``w``. Nobody runs ahead
  on its own, so honest replicas' views cannot drift apart by more than one.
* Joining a later view on its proposal (:func:`joins_on_justify`, :func:`joins_on_timeout_cert`):
  a replica that missed how the others got to view ``w`` (it was down, or cut off, when their
  NEW-VIEWs went out) learns of ``w`` from the leader's proposal, which carries either a prepare
  QC of ``w - 1`` or, when ``w - 1`` ended without one, the timeout certificate for ``w``
  (CometBFT skips to a round on +2/3 of its messages for the same reason; Diem/Aptos carry a
  TimeoutCertificate in the proposal's sync info).
* Re-announcing on (re)connect: the driver reports each peer (re)connection and the replica
  sends that peer its latest NEW-VIEW (see ``Replica``), so a NEW-VIEW broadcast while the
  peer was away is not lost until the next, possibly doubled, timeout. Together, after a quorum
  comes back the first view completes in about one view, whatever the backoff has grown to.

Why jumping is safe: the voting rules (``safety.py``) never look at how a replica reached its
view, so no view-entry rule can break safety; a view-entry rule can only hurt liveness, by
letting a Byzantine minority drag honest replicas ahead. It cannot here: a prepare QC of
``w - 1`` and a TC for ``w`` each hold signatures of more than 2/3 of the power, so of at least
one honest validator, which voted in ``w - 1`` (QC) or signed NEW-VIEW for ``w`` (TC) only under
these same rules. An honest NEW-VIEW for ``w`` is signed only once its sender is in ``w``, or
has given up every view below ``w`` by its own timeout or by joining more than 1/3 that did
(persisted first), so by induction on views certificates name only views honest validators
reached or timed out into. And a TC for ``w`` means more than 2/3 of the power, so more than
1/3 of honest power, will never vote below ``w`` again: no QC can form below ``w`` any more,
and a replica that jumps to ``w`` gives up nothing that could still commit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

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


def joins_on_justify(proposal_view: int, justify_view: int, our_view: int) -> bool:
    """Join the later view of a proposal whose justify QC is from the view right before it and
    not older than ours: the QC shows that view finished its prepare phase, so a Byzantine
    leader can pull replicas at most one view beyond a real QC."""
    return proposal_view == justify_view + 1 and justify_view >= our_view


def joins_on_timeout_cert(tc_view: int, proposal_view: int, our_view: int) -> bool:
    """Join the later view of a proposal that carries a (valid) timeout certificate for exactly
    that view: more than 2/3 of the power has left every view below it (argument above)."""
    return proposal_view > our_view and tc_view == proposal_view


def _highest_view_with(
    sender_views: Mapping[bytes, int], validators: ValidatorSet, enough: Callable[[int], bool]
) -> int | None:
    ranked = sorted(
        (view, validators.index_of(key)) for key, view in sender_views.items() if key in validators
    )
    power = 0
    for view, index in reversed(ranked):
        power += validators.powers[index]
        if enough(power):
            return view
    return None


def quorum_view(sender_views: Mapping[bytes, int], validators: ValidatorSet) -> int | None:
    """The highest view ``w`` such that validators holding more than 2/3 of the power have each
    sent a NEW-VIEW for ``w`` or later (their latest NEW-VIEW view per sender), or None."""
    return _highest_view_with(sender_views, validators, validators.is_quorum)


def joined_view(sender_views: Mapping[bytes, int], validators: ValidatorSet) -> int | None:
    """The highest view ``w`` such that validators holding more than 1/3 of the power have each
    sent a NEW-VIEW for ``w`` or later, or None."""
    return _highest_view_with(sender_views, validators, validators.exceeds_one_third)
