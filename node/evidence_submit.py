"""Equivocation evidence onto the chain: a ``SubmitEvidence`` transaction, once per proof.

The evidence book (``node/evidence.py``) proves each (validator, view) equivocation once,
whoever reported it. On a chain with staking the proof then goes on chain, where every node
verifies it again in the state machine (``state_machine/staking/engine.py``) and the
offender is jailed and slashed: this node signs a ``SubmitEvidence`` with its own key and a
nonce of its own (milliseconds, above the last it used), and admits it to its mempool like a
client's transaction, which gossips it to the validators.

Every node that proves the evidence submits it; the chain applies the first that lands and
refuses the others with ``evidence_duplicate`` (nothing changes). A node does not submit
what its state already holds (the record 0x24 of that offender and view). The submission is
tried a few times if the nonce collides (another program, e.g. an oracle feeder, signing with
the same key at about the same millisecond); any other refusal is logged, and the evidence is
not retried (the other nodes submit theirs).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import trio

from consensus.types import Evidence
from node.evidence import evidence_epoch, offender_and_view
from node.logs import fields, get_logger
from node.mempool import Admit
from state_machine.staking.actions import SubmitEvidence
from state_machine.staking.records import evidence_id
from state_machine.tx import sign_transaction

if TYPE_CHECKING:
    from node.node import Node

SUBMIT_ATTEMPTS_MAX = 3
SUBMISSIONS_IN_FLIGHT_MAX = 64

log = get_logger("node.evidence")


class EvidenceSubmitter:
    __slots__ = ("_in_flight", "_last_nonce", "node", "submitted")

    def __init__(self, node: Node) -> None:
        self.node = node
        self._last_nonce = 0
        self._in_flight = 0
        self.submitted = 0  # transactions admitted to our mempool

    def next_nonce(self) -> int:
        """Milliseconds, above the last nonce this node signed (DESIGN section 3)."""
        self._last_nonce = max(int(time.time() * 1000), self._last_nonce + 1)
        return self._last_nonce

    def already_on_chain(self, evidence: Evidence) -> bool:
        chain = self.node.chain
        staking = None if chain is None else chain.state.staking
        if staking is None:
            return True  # no staking: nothing to submit to (the evidence is only logged)
        return evidence_id(*offender_and_view(evidence)) in staking.evidence

    def submit(self, evidence: Evidence, current_epoch: int) -> bool:
        """Start submitting ``evidence`` (proven and new to this node). False if there is
        nothing to do or too many submissions are under way."""
        nursery = self.node._nursery
        if nursery is None or self.already_on_chain(evidence):
            return False
        if self._in_flight >= SUBMISSIONS_IN_FLIGHT_MAX:
            self.node.metrics.evidence_ignored.labels(reason="submissions_busy").inc()
            return False
        epoch = evidence_epoch(evidence, self.node.sets.schedule, current_epoch)
        self._in_flight += 1
        nursery.start_soon(self._submit, SubmitEvidence(epoch, evidence))
        return True

    async def _submit(self, action: SubmitEvidence) -> None:
        try:
            for _ in range(SUBMIT_ATTEMPTS_MAX):
                verdict = await self._submit_once(action)
                if verdict not in (Admit.NONCE_USED, Admit.NONCE_TOO_LOW):
                    break
        finally:
            self._in_flight -= 1

    async def _submit_once(self, action: SubmitEvidence) -> Admit | None:
        node = self.node
        tx = sign_transaction(node.key, node.chain_id, self.next_nonce(), [action])
        raw = tx.to_wire()
        sub = await node.submit(raw)
        offender, view = offender_and_view(action.evidence)
        about = fields(
            offender=offender.hex()[:16],
            view=view,
            epoch=action.epoch,
            tx_id=sub.tx_id.hex(),
            verdict=None if sub.verdict is None else sub.verdict.value,
        )
        if sub.verdict is Admit.OK:
            self.submitted += 1
            log.warning("evidence_submitted", extra=about)
        else:
            log.warning("evidence_submit_refused", extra=about)
        await trio.lowlevel.checkpoint()
        return sub.verdict
