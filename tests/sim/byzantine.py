"""Byzantine replica behaviours for the simulator (test-only subclasses of the real replica)."""

from __future__ import annotations

from consensus import PREPARE, Decide, Message, QuorumCert, Replica, Send
from consensus.types import genesis_qc


class StaleLeader(Replica):
    """When it leads, ignores the highest prepare QC it was sent and proposes a new block on its
    own committed tip, justified by the newest prepare QC it saw for a committed block. If a
    block was prepared and locked but not yet committed everywhere, that is a conflicting block
    that only the lock rule (``safe_node``) keeps honest replicas from voting for. It also votes
    for its own proposals whatever its lock says, and withholds its DECIDE messages from all but
    one validator, so that the others stay locked on a block that is already committed."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.prepare_qcs: dict[bytes, QuorumCert] = {}

    def _on_precommit(self, qc: QuorumCert) -> None:
        if qc.phase == PREPARE:
            current = self.prepare_qcs.get(qc.block_hash)
            if current is None or qc.view > current.view:
                self.prepare_qcs[qc.block_hash] = qc
        super()._on_precommit(qc)

    def _choose_high_qc(self, senders: list[bytes]) -> tuple[QuorumCert, bytes]:
        best = genesis_qc(self.genesis_hash)
        for qc in self.prepare_qcs.values():
            committed = self._committed_hash_at(qc.height) == qc.block_hash
            if committed and qc.view > best.view and qc.height <= self.committed_height:
                best = qc
        return best, self.me

    def _safe_node(self, extends_locked_block: bool, justify_view: int, locked_view: int) -> bool:
        return True

    def _hand_over_safe(
        self, extends_locked_block: bool, justify_height: int, locked_height: int
    ) -> bool:
        return True

    def _broadcast(self, message: Message) -> None:
        if not isinstance(message, Decide):
            super()._broadcast(message)
            return
        keys = self.validators.keys
        lucky = keys[(keys.index(self.me) + 2) % len(keys)]
        self._out.append(Send(lucky, message))
        self._inbox.append((self.me, message, True))
