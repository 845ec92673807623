"""What the replica signs with: a local key or a remote signer, behind one small interface.

The replica needs a public key and ``sign(message) -> signature`` over the domain-tagged
signing bytes of ``consensus.types`` (votes, proposals, NEW-VIEWs). A local
:class:`~state_machine.crypto.Keypair` is such a signer; so is the node's client of a remote
signer process (``node/signer.py``), which may refuse (a double-sign its own record forbids)
or fail (unreachable, timed out). Either is raised as :class:`SigningFailed`, and the replica
then stays silent for that message: not voting, not proposing and not announcing a view are
always safe, they only cost liveness, as if this validator were offline for the moment.
The replica persists its own promise before signing in any case, so a refused or lost
signature never lets it sign something conflicting later.
"""

from __future__ import annotations

from typing import Protocol


class Signer(Protocol):
    """Signs consensus messages with the validator key."""

    @property
    def public_key(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes: ...


class SigningFailed(Exception):
    """The signer refused or could not sign; the replica drops the message it was making."""
