"""What goes into :meth:`consensus.replica.Replica.handle` (events) and what comes out (actions).

Plain frozen dataclasses: they never cross the network (messages do, see ``types.py``).
The driver's contract is documented on :class:`consensus.replica.Replica`.
"""

from __future__ import annotations

import dataclasses
import enum

from consensus.epochs import EpochSchedule
from consensus.types import Block, Evidence, Message, QuorumCert, SafetyData
from consensus.validators import ValidatorSet


class TimerKind(enum.IntEnum):
    VIEW = 1  # the view made no progress in time: move to the next view
    PROPOSE = 2  # the block interval has passed: the leader may propose


# ---- events ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class MessageReceived:
    """A decoded consensus message from an authenticated peer (its validator key)."""

    sender: bytes
    message: Message


@dataclasses.dataclass(frozen=True, slots=True)
class TimerFired:
    """A timer set by a :class:`SetTimer` action expired."""

    kind: TimerKind
    view: int


@dataclasses.dataclass(frozen=True, slots=True)
class ClockTick:
    """The local wall clock; feed it whenever time moved, at least before every other event."""

    now_ms: int


@dataclasses.dataclass(frozen=True, slots=True)
class PayloadAvailable:
    """The transactions for the block the replica asked for with :class:`RequestPayload`."""

    view: int
    height: int
    payload: tuple[bytes, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class BlockExecuted:
    """A committed block was executed and durably stored; ``state_root`` is the state after it.
    ``next_set``: with epochs, on the last block of epoch e, the set of epoch e + 2 as the
    state machine computed it from the state after this block; None for every other block.
    ``block_limits``: the block limits the state after this block schedules, as
    (from_height, max_block_txs, max_block_bytes) (consensus/block_limits.py).
    ``schedule``: with ``next_set``, the epoch schedule in the state after this block (None:
    unchanged); a governance change of the epoch length is handed over with it."""

    height: int
    block_hash: bytes
    state_root: bytes
    next_set: ValidatorSet | None = None
    schedule: EpochSchedule | None = None
    block_limits: tuple[tuple[int, int, int], ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class PeerConnected:
    """The validator with key ``peer`` has just (re)connected: whatever we sent it while it was
    away is lost, so the replica re-sends its latest NEW-VIEW (and its proposal, if it leads
    the current view and proposed)."""

    peer: bytes


Event = MessageReceived | TimerFired | ClockTick | PayloadAvailable | BlockExecuted | PeerConnected


# ---- actions --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class PersistSafety:
    """Write ``safety`` durably (fsync) before carrying out any later action of the same list."""

    safety: SafetyData


@dataclasses.dataclass(frozen=True, slots=True)
class Send:
    """Send ``message`` to the validator with public key ``to``."""

    to: bytes
    message: Message


@dataclasses.dataclass(frozen=True, slots=True)
class Broadcast:
    """Send ``message`` to every other validator (the replica has already handled its own copy)."""

    message: Message


@dataclasses.dataclass(frozen=True, slots=True)
class SetTimer:
    """Deliver ``TimerFired(kind, view)`` after ``delay_ms``. Timers are never cancelled: the
    replica ignores ones that no longer apply."""

    kind: TimerKind
    view: int
    delay_ms: int


@dataclasses.dataclass(frozen=True, slots=True)
class RequestPayload:
    """The replica leads ``view`` and will propose block ``height``: answer with
    :class:`PayloadAvailable` holding at most ``max_txs`` transactions and ``max_bytes`` bytes."""

    view: int
    height: int
    max_txs: int
    max_bytes: int


@dataclasses.dataclass(frozen=True, slots=True)
class Execute:
    """Execute the committed ``block`` (emitted in height order, each height once), store it with
    its ``commit_qc`` and the resulting state in one write, then feed :class:`BlockExecuted`."""

    block: Block
    commit_qc: QuorumCert


@dataclasses.dataclass(frozen=True, slots=True)
class Committed:
    """Informational: block ``height`` was committed by a commit QC of ``view``."""

    height: int
    block_hash: bytes
    view: int
    timestamp_ms: int


@dataclasses.dataclass(frozen=True, slots=True)
class ReportEvidence:
    """Two conflicting signed messages from one validator: gossip and record them."""

    evidence: Evidence


@dataclasses.dataclass(frozen=True, slots=True)
class PeerFault:
    """A message from ``peer`` failed a check that an honest validator's messages always pass
    (e.g. it carries a QC whose signatures do not verify): count it against that peer."""

    peer: bytes
    reason: str


Action = (
    PersistSafety
    | Send
    | Broadcast
    | SetTimer
    | RequestPayload
    | Execute
    | Committed
    | ReportEvidence
    | PeerFault
)
