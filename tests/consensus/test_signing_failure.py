"""A replica whose signer refuses or fails (consensus/signing.py) stays silent for that message
and keeps its promises and timers; the signer here is the remote signer's real decision core
(node/signer.py) without the socket."""

from __future__ import annotations

from pathlib import Path

from consensus import Action, Broadcast, MessageReceived, NewView, PersistSafety, SetTimer
from consensus.signing import SigningFailed
from consensus.types import PREPARE, vote_signing_bytes
from node.signer import SignerCore, SignRefused
from tests.consensus.harness import CHAIN_ID
from tests.consensus.test_replica import (
    cluster_at_height,
    crafted_proposal,
    newview_from,
    votes_in,
)


class CoreSigner:
    """The node's view of a signer: SignRefused becomes SigningFailed, as over the socket."""

    def __init__(self, core: SignerCore) -> None:
        self.core = core

    @property
    def public_key(self) -> bytes:
        return self.core.key.public_key

    def sign(self, message: bytes) -> bytes:
        try:
            return self.core.sign(message)
        except SignRefused as exc:
            raise SigningFailed(exc.code) from None


def newviews_in(actions: list[Action]) -> list[NewView]:
    return [
        a.message for a in actions if isinstance(a, Broadcast) and isinstance(a.message, NewView)
    ]


def test_a_vote_the_signer_refuses_is_not_sent_but_the_promise_is_kept(tmp_path: Path) -> None:
    c = cluster_at_height(2)
    voter, p = crafted_proposal(c)
    r = c.replicas[voter]
    core = SignerCore(c.keys[voter], CHAIN_ID, tmp_path / "state.json")
    # The key already voted PREPARE in this view for another block (another node with it).
    core.sign(vote_signing_bytes(CHAIN_ID, PREPARE, p.view, p.block.header.height, b"\x01" * 32))
    r.key = CoreSigner(core)
    out = r.handle(MessageReceived(p.proposer, p))
    assert votes_in(out) == []
    persisted = [a.safety for a in out if isinstance(a, PersistSafety)]
    assert persisted and persisted[-1].voted_prepare_view == p.view


def test_a_replica_without_its_signer_joins_timeouts_silently_and_keeps_its_timer(
    tmp_path: Path,
) -> None:
    c = cluster_at_height(2, n=7)
    r = c.replicas[0]
    # A signer for another chain refuses everything this replica asks (wrong_chain).
    r.key = CoreSigner(SignerCore(c.keys[0], "another-chain", tmp_path / "state.json"))
    view = r.view
    target = view + 3
    for i in (1, 2, 3):  # 3 of 7 > 1/3: the join rule makes it give up views below target
        out = r.handle(MessageReceived(c.keys[i].public_key, newview_from(c, i, target)))
        assert newviews_in(out) == []
    assert r.safety.voted_prepare_view >= target - 1  # gave the views up all the same
    out = r.handle(MessageReceived(c.keys[4].public_key, newview_from(c, 4, target)))
    assert r.view == view  # its own NEW-VIEW was never signed: 4 of 7 is no certificate
    out = r.handle(MessageReceived(c.keys[5].public_key, newview_from(c, 5, target)))
    assert r.view == target  # moved on a certificate of the others
    assert any(isinstance(a, SetTimer) for a in out)
