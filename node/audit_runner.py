"""The whole-state audit (``state_machine.audit``) run by the node on its own state.

Every committed state is covered by a Merkle root the validators sign, but a root only proves
that everyone holds the same state, not that the state is right: a bug in the state machine
that creates or destroys money would be committed by all validators alike. The audit checks
the exchange's own invariants (conservation of every asset; books, order indexes, holds and
open interest agreeing with each other). It walks the whole state, so the node runs it at
start-up (on the state it has just rebuilt from disk, before it joins consensus) and every
``[storage] audit_every_blocks`` blocks (0: start-up only), on the working copy after the block
is applied and before it is stored, so a state that fails is never written. The periodic audit
runs on the event loop, not in a worker thread: API handlers on the loop may add to the state's
dicts (an account looked up for the first time), and an audit iterating them from another
thread would then fail for nothing; a whole-state walk also needs the state still.

A failure is fatal (node/fatal.py): one ``fatal_audit_failed`` event naming the broken rule,
and exit code EXIT_AUDIT_FAILED. Nothing the node could do next would be right: voting on,
storing or serving a state that breaks conservation spreads the damage.

The integration tests' cluster harness also runs :func:`audit_stored_state` on every node's
data dir after the nodes stop.
"""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client import Counter, Histogram

from node.chain import Chain
from node.fatal import EXIT_AUDIT_FAILED, NodeFatal
from node.storage import DEFAULT_MAP_SIZE_BYTES
from state_machine.audit import audit
from state_machine.genesis import Genesis
from state_machine.state import ExchangeCore


class AuditFailed(Exception):
    """The audit found a broken invariant; the message names it."""


def run_audit(state: ExchangeCore) -> None:
    """Run the whole-state audit; any failure (a broken rule, or the audit itself unable to
    walk the state) is an :class:`AuditFailed` naming it."""
    try:
        audit(state)
    except Exception as exc:  # a state the audit cannot even walk is broken too
        raise AuditFailed(f"{type(exc).__name__}: {exc}") from None


class Auditor:
    """Runs the audit for the node, counts it, and turns a failure into :class:`NodeFatal`."""

    def __init__(
        self, every_blocks: int, data_dir: Path, runs: Counter, seconds: Histogram
    ) -> None:
        self.every_blocks = every_blocks
        self.data_dir = data_dir
        self._runs = runs
        self._seconds = seconds

    def due(self, height: int) -> bool:
        return self.every_blocks > 0 and height % self.every_blocks == 0

    def check(self, state: ExchangeCore, height: int, when: str) -> None:
        """Audit ``state`` (at ``height``); ``when`` is "startup" or "block" for the log.
        Blocking and read-only: the caller keeps the state from changing meanwhile."""
        started_s = time.perf_counter()
        try:
            run_audit(state)
        except AuditFailed as exc:
            self._runs.labels(result="failed").inc()
            raise NodeFatal(
                "fatal_audit_failed",
                EXIT_AUDIT_FAILED,
                f"state audit failed at height {height} ({when}): {exc}",
                rule=str(exc),
                when=when,
                height=height,
                data_dir=str(self.data_dir),
                action="restore the data dir from a snapshot of a node whose audit passes "
                "(docs/OPERATIONS.md) and report the failed rule",
            ) from None
        finally:
            self._seconds.observe(time.perf_counter() - started_s)
        self._runs.labels(result="ok").inc()


def audit_stored_state(
    data_dir: Path,
    genesis: Genesis,
    *,
    map_size_bytes: int = DEFAULT_MAP_SIZE_BYTES,
    walk_pages: bool = True,
) -> int:
    """Open the store in ``data_dir`` (no node running on it), rebuild the exchange state
    and audit it; returns its height. ChainError if it cannot be opened, AuditFailed if the
    audit fails."""
    chain = Chain.open_existing(
        data_dir, genesis, map_size_bytes=map_size_bytes, walk_pages=walk_pages
    )
    try:
        run_audit(chain.state)
        return chain.height
    finally:
        chain.close()
