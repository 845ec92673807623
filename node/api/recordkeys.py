"""The state key of every kind of record, from the ids a user names it by.

One table, :data:`RECORD_KINDS`, mirrors the key layout of ``state_machine/state.py`` (prefix
byte, then big-endian fixed-width ids). The node uses it to answer
``GET /v1/proofs/records/{kind}`` and the light client (``cli/lightclient.py``) uses the same
table to derive the key *itself* from the ids it asked for, so a node cannot answer a question
about one record with a proof of another. Pure: no I/O, nothing but bytes from text.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from consensus.epochs import EpochSchedule

KEY32_BYTES = 32
U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1
META_KEY = b"\x00\x00"  # state_machine.state.META_KEY


class RecordKeyError(ValueError):
    """A record kind or id that names no state key (the message says which and why)."""


@dataclasses.dataclass(frozen=True, slots=True)
class IdField:
    name: str
    width: str  # "key32" (an address or public key, 64 hex), "u32" or "u64" (decimal)
    help: str


@dataclasses.dataclass(frozen=True, slots=True)
class RecordKind:
    name: str
    prefix: bytes
    fields: tuple[IdField, ...]
    what: str


_ACCOUNT = IdField("account", "key32", "account address (64 hex)")
_ASSET = IdField("asset", "u32", "asset id")
_MARKET = IdField("market", "u32", "market id")
_ORDER = IdField("order", "u64", "order id")

# Staking's records (state_machine/staking/records.py, prefixes 0x20..0x25; evidence records,
# keyed by a hash, are not named by ids).
_OPERATOR = IdField("operator", "key32", "validator operator address (64 hex)")
STAKING_RECORD_KINDS = (
    RecordKind("validator", b"\x20", (_OPERATOR,), "a registered validator and its stake"),
    RecordKind(
        "delegation",
        b"\x21",
        (_OPERATOR, IdField("delegator", "key32", "delegator address (64 hex)")),
        "a delegation's shares of a validator's stake",
    ),
    RecordKind(
        "unbonding",
        b"\x22",
        (IdField("unbonding", "u64", "unbonding entry id"),),
        "an unbonding entry (stake on its way back to a balance)",
    ),
    RecordKind(
        "epoch_set",
        b"\x23",
        (IdField("epoch", "u64", "epoch number"),),
        "an epoch's active validator set",
    ),
    RecordKind("staking_meta", b"\x25\x25", (), "staking meta: next unbonding id, burnt stake"),
    RecordKind(
        "epoch_schedule", b"\x2f\x2f", (), "the epoch schedule (absent: the genesis length)"
    ),
)

EPOCH_SET_KIND = "epoch_set"


def epoch_set_key(epoch: int) -> bytes:
    """State key of the active set of ``epoch`` (record 0x23)."""
    return b"\x23" + epoch.to_bytes(8, "big")


def hand_over_height(epoch: int, schedule: EpochSchedule) -> int:
    """The height whose state first holds the set of ``epoch`` (>= 2): executing the last
    block of ``epoch - 2`` computes it (``consensus/epochs.py``); block ``height + 1``, the
    first of ``epoch - 1``, certifies that state. ``schedule`` must be one that cuts epochs
    through ``epoch - 2`` right (any schedule trusted with the set of ``epoch - 1`` does)."""
    return schedule.first_height(epoch - 1) - 1


RECORD_KINDS: dict[str, RecordKind] = {
    k.name: k
    for k in (
        RecordKind("meta", META_KEY, (), "chain meta: genesis hash, height, time, counters"),
        RecordKind("balance", b"\x01", (_ACCOUNT, _ASSET), "an account's balance of one asset"),
        RecordKind("position", b"\x02", (_ACCOUNT, _MARKET), "an account's perp position"),
        RecordKind("order", b"\x03", (_MARKET, _ORDER), "an open order on the book"),
        RecordKind("market", b"\x04", (_MARKET,), "a market's state (prices, funding, OI)"),
        RecordKind(
            "oracle",
            b"\x05",
            (_MARKET, IdField("validator", "key32", "validator public key (64 hex)")),
            "a validator's latest oracle price submission",
        ),
        RecordKind(
            "nonces",
            b"\x06",
            (IdField("signer", "key32", "signer public key (64 hex)"),),
            "a signer's kept nonces",
        ),
        RecordKind("fees", b"\x07", (_ASSET,), "the fee pool of an asset"),
        RecordKind("vault", b"\x08", (_ASSET,), "the vault's equity high-water mark"),
        RecordKind("asset", b"\x09", (_ASSET,), "an asset's totals (withdrawn)"),
        RecordKind(
            "withdrawal",
            b"\x0a",
            (IdField("withdrawal", "u64", "withdrawal id"),),
            "a pending withdrawal",
        ),
        RecordKind("trigger", b"\x0b", (_MARKET, _ORDER), "a waiting trigger order"),
        *STAKING_RECORD_KINDS,
        # Sub-accounts, agents, fee tiers (state_machine/accounts/registry.py).
        RecordKind("volume", b"\x40", (_ACCOUNT,), "an account's 14-day volume buckets"),
        RecordKind(
            "subaccounts",
            b"\x41",
            (IdField("master", "key32", "master address (64 hex)"),),
            "how many sub-accounts a master created",
        ),
        RecordKind("subaccount", b"\x42", (_ACCOUNT,), "a sub-account: its master and index"),
        RecordKind(
            "agent",
            b"\x43",
            (IdField("agent", "key32", "agent public key (64 hex)"),),
            "an agent key: the account that approved it, name, expiry",
        ),
        RecordKind("fee_tiers", b"\x44", (), "the fee tiers in force"),
        # The order tools (state_machine/algo/records.py).
        RecordKind("twap", b"\x48", (_MARKET, IdField("twap", "u64", "TWAP id")), "a running TWAP"),
        RecordKind(
            "tpsl",
            b"\x49",
            (_MARKET, IdField("group", "u64", "TP/SL group id")),
            "a TP/SL group (armed, or waiting for its parent order)",
        ),
        RecordKind("good_til", b"\x4a", (_MARKET, _ORDER), "an open order's good-til time"),
        # The bridge's records (state_machine/bridge/records.py).
        RecordKind(
            "bridge_key",
            b"\x38",
            (IdField("validator", "key32", "validator public key (64 hex)"),),
            "a validator's registered bridge key (secp256k1 address)",
        ),
        RecordKind(
            "bridge_deposit",
            b"\x39",
            (
                IdField("evm_chain", "u64", "EVM chain id"),
                IdField("tx", "key32", "EVM transaction hash (64 hex)"),
                IdField("log", "u32", "log index in the EVM block"),
            ),
            "a bridge deposit: its attestations, or its credit",
        ),
        RecordKind(
            "bridge_withdrawal",
            b"\x3a",
            (IdField("withdrawal", "u64", "bridge withdrawal id"),),
            "a bridge withdrawal: voucher, validators' signatures, status",
        ),
    )
}


def record_kind(name: str) -> RecordKind:
    kind = RECORD_KINDS.get(name)
    if kind is None:
        raise RecordKeyError(
            f"unknown record kind {name!r}; kinds: {', '.join(sorted(RECORD_KINDS))}"
        )
    return kind


def _id_bytes(field: IdField, text: str) -> bytes:
    if field.width == "key32":
        body = text[2:] if text.startswith(("0x", "0X")) else text
        if len(body) != 2 * KEY32_BYTES:
            raise RecordKeyError(f"{field.name} must be {2 * KEY32_BYTES} hex characters")
        try:
            return bytes.fromhex(body)
        except ValueError:
            raise RecordKeyError(f"{field.name} is not hexadecimal") from None
    hi, width = (U32_MAX, 4) if field.width == "u32" else (U64_MAX, 8)
    if not text.isascii() or not text.isdigit() or len(text) > 20:
        raise RecordKeyError(f"{field.name} must be a decimal integer")
    value = int(text)
    if value > hi:
        raise RecordKeyError(f"{field.name} must be at most {hi}")
    return value.to_bytes(width, "big")


def record_key(kind: RecordKind, ids: Mapping[str, str]) -> bytes:
    """The state key of the ``kind`` record named by ``ids`` (field name -> text); every field
    is required and no other name is allowed."""
    names = {f.name for f in kind.fields}
    extra = sorted(set(ids) - names)
    if extra:
        raise RecordKeyError(f"a {kind.name} record has no id {extra[0]!r}")
    parts = [kind.prefix]
    for field in kind.fields:
        text = ids.get(field.name)
        if text is None:
            raise RecordKeyError(f"a {kind.name} record needs {field.name} ({field.help})")
        parts.append(_id_bytes(field, text))
    return b"".join(parts)


def canonical_ids(kind: RecordKind, key: bytes) -> dict[str, str]:
    """The ids of ``key`` as text (hex for keys, decimal for integers), in the answer."""
    out: dict[str, str] = {}
    at = len(kind.prefix)
    for field in kind.fields:
        width = {"key32": KEY32_BYTES, "u32": 4, "u64": 8}[field.width]
        part = key[at : at + width]
        at += width
        out[field.name] = part.hex() if field.width == "key32" else str(int.from_bytes(part, "big"))
    return out
