"""Quorum certificates: collecting votes into a QC and checking a QC someone else formed.

A QC is a plain list of individual Ed25519 vote signatures (no aggregate signatures: the one
verifier is libsodium's, see ``state_machine/crypto.py``). Rules:

* only genesis validators count; a signer outside the set makes the QC invalid;
* duplicate signers are ignored when counting power (and never produced here);
* every listed signature must verify, otherwise the QC is invalid: an honest aggregator lists
  only votes it verified, and accepting padding would let two byte-different QCs certify the
  same thing;
* the distinct signers must hold more than 2/3 of the voting power.

A timeout certificate (TC) for view ``w`` is the same idea for NEW-VIEW messages: the NEW-VIEW
signatures of validators holding more than 2/3 of the power, each for ``w`` or a later view.
An honest replica signs NEW-VIEW for ``w`` only once it is in ``w`` or has given up every view
below ``w`` (both persisted first), so a TC shows that a quorum will never vote below ``w``
again. Rules (:func:`tc_valid`), stricter than for QCs because a TC is only ever built here:

* ``view`` >= 1, at least one and at most as many entries as validators;
* signers strictly increasing in genesis order (distinct, and one byte string per TC);
* each signer a validator, each entry's view >= the TC's view, each signature valid over
  ``newview_digest_signing_bytes(chain_id, entry.view, entry.high_qc_digest)``;
* the signers hold more than 2/3 of the voting power.
"""

from __future__ import annotations

from consensus.types import (
    PHASES,
    NewView,
    QCSignature,
    QuorumCert,
    TimeoutCert,
    TimeoutSignature,
    Vote,
    newview_digest,
    newview_digest_signing_bytes,
    vote_signing_bytes,
)
from consensus.validators import ValidatorSet
from state_machine.crypto import verify


def vote_signature_valid(chain_id: str, vote: Vote) -> bool:
    message = vote_signing_bytes(chain_id, vote.phase, vote.view, vote.height, vote.block_hash)
    return verify(vote.voter, message, vote.signature)


def qc_valid(qc: QuorumCert, chain_id: str, validators: ValidatorSet, genesis_hash: bytes) -> bool:
    """True iff ``qc`` certifies its ``(phase, view, height, block_hash)`` (rules above)."""
    if qc.phase not in PHASES:
        return False
    if qc.view == 0:
        # The genesis QC: view 0 exists only for the genesis block, which needs no votes.
        return qc.height == 0 and qc.block_hash == genesis_hash and not qc.signatures
    if qc.height == 0 or len(qc.signatures) > len(validators):
        return False
    message = vote_signing_bytes(chain_id, qc.phase, qc.view, qc.height, qc.block_hash)
    seen: set[bytes] = set()
    power = 0
    for entry in qc.signatures:
        if entry.signer not in validators:
            return False
        if not verify(entry.signer, message, entry.signature):
            return False
        if entry.signer not in seen:
            seen.add(entry.signer)
            power += validators.power_of(entry.signer)
    return validators.is_quorum(power)


def tc_valid(tc: TimeoutCert, chain_id: str, validators: ValidatorSet) -> bool:
    """True iff ``tc`` proves that validators with more than 2/3 of the power sent NEW-VIEW
    for ``tc.view`` or later (rules above)."""
    if tc.view == 0 or not 1 <= len(tc.signatures) <= len(validators):
        return False
    previous_index = -1
    power = 0
    for entry in tc.signatures:
        if entry.signer not in validators or entry.view < tc.view:
            return False
        index = validators.index_of(entry.signer)
        if index <= previous_index:
            return False  # not in genesis order, or a signer twice
        previous_index = index
        message = newview_digest_signing_bytes(chain_id, entry.view, entry.high_qc_digest)
        if not verify(entry.signer, message, entry.signature):
            return False
        power += validators.power_of(entry.signer)
    return validators.is_quorum(power)


def timeout_cert(view: int, newviews: list[NewView], validators: ValidatorSet) -> TimeoutCert:
    """The TC for ``view`` made of verified NEW-VIEWs for ``view`` or later, one per sender
    (the caller checked that their senders form a quorum), in canonical order."""
    entries = sorted(
        (nv for nv in newviews if nv.view >= view and nv.sender in validators),
        key=lambda nv: validators.index_of(nv.sender),
    )
    signatures = tuple(
        TimeoutSignature(nv.sender, nv.view, newview_digest(nv.high_qc), nv.signature)
        for nv in entries
    )
    return TimeoutCert(view, signatures)


class VoteCollector:
    """Votes for one ``(phase, view, height, block_hash)`` until they form a QC.

    Callers pass only votes whose signature they verified. A second vote of the same voter is
    ignored (it is either a duplicate delivery or, if it differs, equivocation handled elsewhere).
    """

    __slots__ = ("_signatures", "block_hash", "height", "phase", "power", "validators", "view")

    def __init__(
        self, validators: ValidatorSet, phase: int, view: int, height: int, block_hash: bytes
    ) -> None:
        self.validators = validators
        self.phase = phase
        self.view = view
        self.height = height
        self.block_hash = block_hash
        self.power = 0
        self._signatures: dict[bytes, bytes] = {}

    def add(self, vote: Vote) -> QuorumCert | None:
        """Add a verified vote; return the QC the first time the votes reach a quorum."""
        if vote.voter in self._signatures or vote.voter not in self.validators:
            return None
        was_quorum = self.validators.is_quorum(self.power)
        self._signatures[vote.voter] = vote.signature
        self.power += self.validators.power_of(vote.voter)
        if was_quorum or not self.validators.is_quorum(self.power):
            return None
        return self.certificate()

    def certificate(self) -> QuorumCert:
        """The votes so far as a QC, signatures in genesis order (so the QC is canonical)."""
        ordered = sorted(self._signatures.items(), key=lambda kv: self.validators.index_of(kv[0]))
        signatures = tuple(QCSignature(k, s) for k, s in ordered)
        return QuorumCert(self.phase, self.view, self.height, self.block_hash, signatures)
