"""Account actions: acting for another account, sub-accounts and agent keys (tags 56..63).

``ActAs(account)`` changes nothing by itself: the actions after it in the same transaction act
for ``account`` (until the next ``ActAs``). Whether the signer may act for that account, and
which actions it may take there, is decided per action when it runs, by
``accounts/authority.resolve_acting_account``. Existing transactions encode exactly as before.
"""

from __future__ import annotations

from typing import ClassVar

from state_machine.codec import U32, U64, Bool, Bytes, Text, Wire, wire

PUBKEY = Bytes(exact=32)
NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_. "
MAX_NAME_CHARS = 32


@wire
class ActAs(Wire):
    """The following actions of this transaction act for ``account`` (a sub-account of the
    signer, or the account, or a sub-account of the account, that approved the signer as agent)."""

    TAG: ClassVar[int] = 56
    WIRE = (("account", PUBKEY),)
    account: bytes


@wire
class CreateSubAccount(Wire):
    """Create the acting account's next sub-account (address: accounts/authority.py)."""

    TAG: ClassVar[int] = 57
    WIRE = (("name", Text(MAX_NAME_CHARS, NAME_CHARS)),)
    name: str


@wire
class SubAccountTransfer(Wire):
    """Move an asset between the acting (master) account and one of its sub-accounts:
    ``deposit`` true is master -> sub, false sub -> master."""

    TAG: ClassVar[int] = 58
    WIRE = (("sub", PUBKEY), ("deposit", Bool), ("asset_id", U32), ("amount_atoms", U64))
    sub: bytes
    deposit: bool
    asset_id: int
    amount_atoms: int


@wire
class ApproveAgent(Wire):
    """Let ``agent`` trade for the acting account (orders and leverage only) until
    ``expires_at_ms`` of block time (0: until revoked). Approving it again renames or re-times."""

    TAG: ClassVar[int] = 59
    WIRE = (("agent", PUBKEY), ("name", Text(MAX_NAME_CHARS, NAME_CHARS)), ("expires_at_ms", U64))
    agent: bytes
    name: str
    expires_at_ms: int


@wire
class RevokeAgent(Wire):
    TAG: ClassVar[int] = 60
    WIRE = (("agent", PUBKEY),)
    agent: bytes


AccountAction = ActAs | CreateSubAccount | SubAccountTransfer | ApproveAgent | RevokeAgent
ACCOUNT_ACTIONS: tuple[type[Wire], ...] = (
    ActAs,
    CreateSubAccount,
    SubAccountTransfer,
    ApproveAgent,
    RevokeAgent,
)
