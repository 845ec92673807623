"""Byzantine replica behaviours for the simulator (test-only subclasses of the real replica)."""

from __future__ import annotations

from consensus import PREPARE, Decide, Message, QuorumCert, Replica, Send
from consensus.types import QCSignature, genesis_qc
from consensus.verify import sign_vote
from state_machine.crypto import Keypair
from tests.sim.cluster import validator_key

SIM_KEYS_MAX = 16  # the simulator's validator keys are validator_key(0..)


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


class DepartedSetForger(Replica):
    """A member of the new epoch's set (below a third of its stake) that colludes with the keys
    of a set that has left (which, at no stake any more, may sign anything), the attack that the
    hand-over rule (``safety.hand_over_safe``) stops:

    1. as leader of the first block ``h`` of an epoch whose previous set has left, it runs the
       block to its commit QC but sends the DECIDE to one member only (and does not commit
       itself), so the other honest members stay locked on it without committing it;
    2. as leader of a later view ``w``, it has the departed set sign a prepare QC for the
       committed block ``h - 1`` in view ``w - 1`` (after the lock's view, below its height)
       and proposes a new block at ``h`` justified by it.

    A replica that lets that QC release its lock votes for the second block, which then
    commits beside the first: a fork. It votes for its own proposals whatever its lock says.
    The departed keys are the simulator's (``cluster.validator_key``)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.withheld: set[int] = set()  # heights whose DECIDE went to one member only
        self.departed: dict[bytes, Keypair] = {
            k.public_key: k for k in (validator_key(i) for i in range(SIM_KEYS_MAX))
        }

    def _attack_height(self, height: int) -> bool:
        """``height`` opens an epoch whose set shares no member with the set before it (every
        key of which has left, so is ours to sign with)."""
        if height <= 1 or not self.sets.is_epoch_end(height - 1):
            return False
        before, now = self.sets.for_height(height - 1), self.sets.for_height(height)
        if before is None or now is None:
            return False
        return all(k in self.departed and k not in now for k in before.keys)

    def _broadcast(self, message: Message) -> None:
        height = message.qc.height if isinstance(message, Decide) else -1
        if height < 0 or not self._attack_height(height):
            super()._broadcast(message)
            return
        lucky = next(k for k in self.validators.keys if k != self.me)
        if height not in self.withheld:  # the first block: to one member only
            self.withheld.add(height)
            self._out.append(Send(lucky, message))
            return
        # The second block: to everyone but the one that committed the first, so the fork
        # shows as two honest nodes committing different blocks at one height.
        for key in self.validators.keys:
            if key != lucky:
                self._send(key, message)

    def _choose_high_qc(self, senders: list[bytes]) -> tuple[QuorumCert, bytes]:
        height = self.committed_height
        if not self._attack_height(height + 1) or height + 1 not in self.withheld:
            return super()._choose_high_qc(senders)
        block_hash = self._committed_hash_at(height)
        assert block_hash is not None
        before = self.sets.for_height(height)
        assert before is not None
        view = self.view - 1
        votes = [
            sign_vote(self.departed[k], self.config.chain_id, PREPARE, view, height, block_hash)
            for k in sorted(before.keys)
        ]
        sigs = tuple(QCSignature(v.voter, v.signature) for v in votes)
        return QuorumCert(PREPARE, self.view - 1, height, block_hash, sigs), self.me

    def _safe_node(self, extends_locked_block: bool, justify_view: int, locked_view: int) -> bool:
        return True

    def _hand_over_safe(
        self, extends_locked_block: bool, justify_height: int, locked_height: int
    ) -> bool:
        return True
