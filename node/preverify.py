"""Which blocks in a peer's message are worth verifying before the replica sees them.

The peer-inbound task verifies the transactions of blocks on the signature pool before a
proposal, a NEW-VIEW carrying a block, or a sync response reaches the replica, so that the
replica's payload check only reads the cache. That costs one Ed25519 check per transaction,
tens of thousands for one 4 MiB frame, so it is spent only on blocks the replica could use.
The cheap structural checks the replica would make anyway come first:

* a proposal's block must carry the payload its header commits to, from the view's leader;
* a NEW-VIEW's block must be the block its (signed) high QC certifies, with its payload;
* a sync response's blocks count only above our committed height, each certified (by hash
  and height) by the QC next to it, with its payload.

A proposal or NEW-VIEW that fails is something no honest validator sends (the replica would
drop it silently): it is reported as a fault of the sender. A sync answer's block at or below
our height is not (we may have caught up since we asked); it is only skipped. A QC that does
not verify is the replica's to find (``PeerFault``), which penalises the sender, so a forged
certificate cannot be used over and over to buy verification work.
"""

from __future__ import annotations

from consensus.epochs import EpochSets
from consensus.follow import verifying_set
from consensus.types import Block, Message, NewView, Proposal, SyncResponse
from consensus.validators import ValidatorSet

BLOCK_MISMATCH = "block_mismatch"


def blocks_to_preverify(
    message: Message, committed_height: int, validators: ValidatorSet | EpochSets
) -> tuple[list[Block], str]:
    """``(blocks, fault)``: the blocks whose transactions to verify now, and "" or the reason
    the message is a fault of its sender (then it is dropped). A proposal for a height whose
    set we do not know yet is left to the replica (which asks for the blocks it lacks)."""
    if isinstance(message, Proposal):
        block = message.block
        height_set = verifying_set(block.height, validators)
        if height_set is None:
            return [], ""
        if height_set.leader(message.view) != message.proposer:
            return [], BLOCK_MISMATCH
        if not block.payload_matches_header():
            return [], BLOCK_MISMATCH
        return [block], ""
    if isinstance(message, NewView) and message.high_block is not None:
        block = message.high_block
        if block.block_hash() != message.high_qc.block_hash or not block.payload_matches_header():
            return [], BLOCK_MISMATCH
        return ([block] if block.height > committed_height else []), ""
    if isinstance(message, SyncResponse):
        out: list[Block] = []
        for entry in message.blocks:
            block, qc = entry.block, entry.commit_qc
            if block.height <= committed_height:
                continue
            if qc.block_hash != block.block_hash() or qc.height != block.height:
                break  # the replica stops at the same entry
            if not block.payload_matches_header():
                break
            out.append(block)
        return out, ""
    return [], ""
