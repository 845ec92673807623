"""Consensus and p2p metrics derived in the driver, so the pure cores stay free of clocks.

The replica reports neither view changes nor QC timings; both follow from what the driver
already sees: the event it fed, the view before and after, and the actions that came out.

* **View changes** (``perpbft_view_changes_total{reason}``): the replica's view went up and no
  ``Committed`` action came with it (a DECIDE moves to the next view too; that is progress, not
  a view change). The reason is ``timeout`` if this node's view timer fired in the view it
  left, ``new_view`` if NEW-VIEW messages of others moved it (they timed out first), and
  ``catch_up`` if a proposal, QC or sync response from a later view did (we were behind),
  ``timeout_cert`` if a proposal carrying a timeout certificate did (we missed the NEW-VIEWs
  that moved the others, typically while down or disconnected). A jump over several views
  counts once.
* **QC formation** (``perpbft_qc_formation_seconds{phase}``): from the first time this node saw
  the proposal of a view (received, or broadcast as leader) to the first time it saw each QC
  of that view: the prepare QC (in PRE-COMMIT), the pre-commit QC (in COMMIT) and the commit QC
  (in DECIDE). On a replica that includes one network hop from the leader; on the leader it is
  the pure quorum round trip.
* **p2p peers** are read from the peer manager when metrics are scraped, so the gauge is right
  even when no frame arrives (every peer gone). The transport's own refusals are exported by
  ``node.metrics.PeerStatsCollector``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from consensus.events import (
    Action,
    Broadcast,
    Committed,
    Event,
    MessageReceived,
    TimerFired,
    TimerKind,
)
from consensus.types import PHASE_NAMES, Commit, Decide, Message, NewView, PreCommit, Proposal
from node.metrics import Metrics

VIEWS_TRACKED_MAX = 64  # proposal times kept for QC timing; older views are dropped


class ConsensusObserver:
    def __init__(self, metrics: Metrics, clock: Callable[[], float] = time.monotonic) -> None:
        self.metrics = metrics
        self.clock = clock
        self.proposal_seen_s: dict[int, float] = {}
        self.qc_seen: set[tuple[int, int]] = set()  # (view, phase)
        self.timed_out_view = 0

    def observe(
        self, view_before: int, view_after: int, event: Event, actions: Sequence[Action]
    ) -> None:
        """Call after each ``Replica.handle`` with its event, views and actions."""
        now_s = self.clock()
        if (
            isinstance(event, TimerFired)
            and event.kind == TimerKind.VIEW
            and event.view == view_before
        ):
            self.timed_out_view = view_before
        if isinstance(event, MessageReceived):
            self._seen(event.message, now_s)
        for action in actions:
            if isinstance(action, Broadcast):
                self._seen(action.message, now_s)
        if view_after > view_before:
            self._view_moved(view_before, view_after, event, actions)

    def _seen(self, message: Message, now_s: float) -> None:
        if isinstance(message, Proposal):
            self.proposal_seen_s.setdefault(message.view, now_s)
            return
        if not isinstance(message, PreCommit | Commit | Decide):
            return
        qc = message.qc
        started_s = self.proposal_seen_s.get(qc.view)
        if started_s is None or (qc.view, qc.phase) in self.qc_seen:
            return
        self.qc_seen.add((qc.view, qc.phase))
        self.metrics.qc_formation_seconds.labels(phase=PHASE_NAMES[qc.phase]).observe(
            now_s - started_s
        )

    def _view_moved(
        self, view_before: int, view_after: int, event: Event, actions: Sequence[Action]
    ) -> None:
        if not any(isinstance(a, Committed) for a in actions):
            self.metrics.view_changes.labels(reason=self._reason(view_before, event)).inc()
        oldest = view_after - VIEWS_TRACKED_MAX
        for view in [v for v in self.proposal_seen_s if v < oldest]:
            del self.proposal_seen_s[view]
        self.qc_seen = {k for k in self.qc_seen if k[0] >= oldest}

    def _reason(self, view_before: int, event: Event) -> str:
        if self.timed_out_view == view_before:
            return "timeout"
        if isinstance(event, MessageReceived) and isinstance(event.message, NewView):
            return "new_view"
        message = event.message if isinstance(event, MessageReceived) else None
        if isinstance(message, Proposal) and message.timeout_cert is not None:
            return "timeout_cert"
        return "catch_up"


def refresh_peer_gauge(metrics: Metrics, peers: Any) -> None:
    """Set the connected-peer gauge from the peer manager (called at each scrape)."""
    if peers is not None:
        metrics.p2p_peers.set(len(peers.connected_peers()))
