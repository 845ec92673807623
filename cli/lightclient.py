"""Light-client check of an account proof from ``GET /v1/proofs/accounts/{address}``.

Trust comes only from the genesis file the user holds: its validator set, chain id and genesis
time. The node's answer is treated as hostile input. The check, in order:

1. the key of every balance (per asset) and position (per perp) of the account, and of its
   order-tools record (0x4b: the ids of its TWAPs, TP/SL groups and good-til records), is in
   the answer exactly once, and nothing else, so a node cannot hide a position or a TWAP
   (open orders and triggers are not proven: their keys carry order ids a client cannot
   derive). The assets and perps are the genesis ones and those governance listed by that
   height, which the answer proves too: listed ids are consecutive, so the proven listing
   records (0x30 market, 0x32 asset) up to the first proven absent id are all of them
   (``state_machine/proofkeys.py``);
2. each entry's Merkle proof leads from its key and value (or absence) to ``state_root``
   (:func:`state_machine.merkle_state.verify_proof`);
3. the certifying header (decoded from its wire bytes, never from the JSON fields beside them)
   is at ``height + 1`` and carries ``state_root`` (a header carries the root after its parent);
4. the commit QC is a COMMIT-phase certificate for exactly that header's hash and height,
   signed by more than 2/3 of the genesis voting power with valid Ed25519 signatures over the
   consensus vote signing bytes (:func:`consensus.quorum.qc_valid`). With staking, the QC of a
   height in epoch e >= 2 is checked against the set of e, which ``cli/handover.py`` follows
   from genesis hand-over by hand-over (the ``validators`` argument).

:func:`verify_record_proof` checks one record of any kind (``GET /v1/proofs/records/{kind}``)
the same way, with step 1 being "the answer proves exactly the key the client derived from the
ids it asked for": the presence *or absence* of that one key is then proven at that height.

The answer is :class:`ProofCheck`: ``ok`` and, when not ok, every failed step in words.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from consensus.quorum import qc_valid
from consensus.types import COMMIT, BlockHeader, QuorumCert, genesis_block
from consensus.validators import ValidatorSet
from state_machine.codec import DecodeError, decode_raw
from state_machine.genesis import Genesis
from state_machine.governance.records import P_GOV_ASSET, P_GOV_MARKET
from state_machine.merkle_state import verify_proof
from state_machine.proofkeys import Listings, account_keys, listing_walk

P_LISTING_MARKET = bytes((P_GOV_MARKET,))
P_LISTING_ASSET = bytes((P_GOV_ASSET,))


@dataclasses.dataclass(slots=True)
class ProofCheck:
    ok: bool
    height: int
    state_root: str
    failures: list[str]
    values: dict[str, Any]  # key hex -> decoded value (None: absent), only of verified entries


def expected_account_keys(
    genesis: Genesis, who: bytes, listings: Listings | None = None
) -> list[bytes]:
    """The account's balance and position keys (the layout of ``state_machine.state``): the
    entries that hold its funds, whose keys follow from the address, the genesis and the
    ``listings`` (none: a chain where governance listed nothing) with the listing records
    that prove them; and its sub-account record (0x42: present iff the address is a
    sub-account, naming its master) and its order-tools record (0x4b,
    ``state_machine/algo/records.py``), which lists the ids of its TWAPs, TP/SL groups and
    good-til records."""
    return account_keys(genesis, who, listings)


def proven_listings(
    body: dict[str, Any], genesis: Genesis, root: bytes, failures: list[str]
) -> Listings:
    """The markets and assets listed at the answer's height, from the listing records among
    its entries whose proofs verify against ``root``; a missing or bad one is a failure."""
    proven: dict[bytes, bytes | None] = {}
    entries = body.get("entries")
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        key = _quiet_hex(entry.get("key"))
        proof = _quiet_hex(entry.get("proof"))
        raw = entry.get("value")
        value = None if raw is None else _quiet_hex(raw)
        if key is None or proof is None or (raw is not None and value is None):
            continue
        if key[:1] in (P_LISTING_MARKET, P_LISTING_ASSET) and verify_proof(root, key, value, proof):
            proven[key] = value
    walk = listing_walk(genesis, lambda k: (k in proven, proven.get(k)))
    if walk.need is not None:
        failures.append(
            f"no valid proof for listing key {walk.need.hex()} (the node left out which "
            "markets or assets governance listed)"
        )
    if walk.error is not None:
        failures.append(walk.error)
    return walk.listings


def _quiet_hex(value: Any) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return bytes.fromhex(value)
    except ValueError:
        return None


def hex_field(value: Any, what: str, failures: list[str]) -> bytes | None:
    """A hex string of an answer as bytes; None (and the failure noted) if it is not one."""
    if not isinstance(value, str):
        failures.append(f"{what} is missing or not a hex string")
        return None
    try:
        return bytes.fromhex(value)
    except ValueError:
        failures.append(f"{what} is not valid hex")
        return None


def _check_entries(
    body: dict[str, Any], expected: set[str], whose: str, root: bytes, failures: list[str]
) -> dict[str, Any]:
    """Each entry's Merkle proof against ``root``; exactly the ``expected`` keys (hex)."""
    entries = body.get("entries")
    if not isinstance(entries, list):
        failures.append("answer has no entries list")
        return {}
    seen: set[str] = set()
    values: dict[str, Any] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            failures.append(f"entry {i} is not an object")
            continue
        key = hex_field(entry.get("key"), f"entry {i} key", failures)
        proof = hex_field(entry.get("proof"), f"entry {i} proof", failures)
        raw_value = entry.get("value")
        value = None if raw_value is None else hex_field(raw_value, f"entry {i} value", failures)
        if key is None or proof is None or (raw_value is not None and value is None):
            continue
        if key.hex() not in expected:
            failures.append(f"entry {i} key {key.hex()} is not a key of {whose}")
            continue
        if key.hex() in seen:
            failures.append(f"key {key.hex()} appears twice")
            continue
        seen.add(key.hex())
        if not verify_proof(root, key, value, proof):
            state = "absence" if value is None else "value"
            failures.append(f"Merkle proof of the {state} of key {key.hex()} does not match root")
            continue
        values[key.hex()] = None if value is None else _decode(value)
    for missing in sorted(expected - seen):
        failures.append(f"no proof for key {missing} (the node left part of {whose} out)")
    return values


def _decode(value: bytes) -> Any:
    try:
        return decode_raw(value)
    except DecodeError:
        return value.hex()


def _check_certificate(
    body: dict[str, Any],
    genesis: Genesis,
    height: int,
    root: bytes,
    failures: list[str],
    validators: ValidatorSet | None = None,
) -> None:
    """The certifying header and its commit QC, signed by ``validators`` (default: the genesis
    set; across epochs, the set the light client trusts for height ``height + 1``, see
    ``cli/handover.py``)."""
    cert = body.get("certified_by")
    if not isinstance(cert, dict):
        failures.append(
            f"no certifying block: the root after height {height} is signed only by block "
            f"{height + 1}'s commit QC, and the node sent none"
        )
        return
    header_wire = hex_field((cert.get("header") or {}).get("wire"), "header wire", failures)
    qc_wire = hex_field((cert.get("commit_qc") or {}).get("wire"), "commit QC wire", failures)
    if header_wire is None or qc_wire is None:
        return
    try:
        header = BlockHeader.from_wire(header_wire)
        qc = QuorumCert.from_wire(qc_wire)
    except DecodeError as exc:
        failures.append(f"certificate does not decode: {exc}")
        return
    block_hash = header.block_hash()
    if header.height != height + 1:
        failures.append(f"certifying header is at height {header.height}, not {height + 1}")
    if header.state_root != root:
        failures.append(
            f"certifying header carries state root {header.state_root.hex()}, "
            f"not the proof's {root.hex()}"
        )
    if qc.phase != COMMIT:
        failures.append(f"QC phase is {qc.phase}, not COMMIT")
    if qc.block_hash != block_hash or qc.height != header.height:
        failures.append("commit QC certifies a different block than the certifying header")
    whose = "the genesis validators'" if validators is None else "the trusted set's"
    if validators is None:
        validators = genesis_validator_set(genesis)
    genesis_hash = genesis_block(genesis.genesis_time_ms).block_hash()
    if not qc_valid(qc, genesis.chain_id, validators, genesis_hash):
        failures.append(
            f"commit QC is not signed by more than 2/3 of {whose} power "
            "(bad signature, unknown signer or too few signers)"
        )


def genesis_validator_set(genesis: Genesis) -> ValidatorSet:
    return ValidatorSet([(v.pubkey, v.power) for v in genesis.validators])


def verify_account_proof(
    body: Any,
    genesis: Genesis,
    who: bytes,
    expected_height: int | None = None,
    validators: ValidatorSet | None = None,
) -> ProofCheck:
    """Check a proof answer for account ``who`` against ``genesis`` (steps in the module doc).

    With ``expected_height`` the answer must also be the state at that height: a proof that
    verifies but is of another height does not answer the question asked."""
    failures: list[str] = []
    if not isinstance(body, dict):
        return ProofCheck(False, 0, "", ["answer is not a JSON object"], {})
    height = body.get("height")
    if not isinstance(height, int) or isinstance(height, bool) or height < 0:
        return ProofCheck(False, 0, "", ["answer has no valid height"], {})
    if expected_height is not None and height != expected_height:
        failures.append(
            f"answer is the state at height {height}, not at the requested height {expected_height}"
        )
    if body.get("address") != who.hex():
        failures.append(f"answer is for address {body.get('address')!r}, not {who.hex()}")
    root = hex_field(body.get("state_root"), "state_root", failures)
    if root is None or len(root) != 32:
        failures.append("state_root is not 32 bytes")
        return ProofCheck(False, height, str(body.get("state_root")), failures, {})
    listings = proven_listings(body, genesis, root, failures)
    expected = {k.hex() for k in expected_account_keys(genesis, who, listings)}
    values = _check_entries(body, expected, "this account", root, failures)
    _check_certificate(body, genesis, height, root, failures, validators)
    return ProofCheck(not failures, height, root.hex(), failures, values)


def _check_height(body: dict[str, Any], expected_height: int | None, failures: list[str]) -> int:
    """The answer's height (-1 when it has none), which must be the one asked for if any."""
    height = body.get("height")
    if not isinstance(height, int) or isinstance(height, bool) or height < 0:
        failures.append("answer has no valid height")
        return -1
    if expected_height is not None and height != expected_height:
        failures.append(
            f"answer is the state at height {height}, not at the requested height {expected_height}"
        )
    return height


def verify_record_proof(
    body: Any,
    genesis: Genesis,
    key: bytes,
    kind: str,
    expected_height: int | None = None,
    validators: ValidatorSet | None = None,
    also: tuple[bytes, ...] = (),
) -> ProofCheck:
    """Check an answer of ``GET /v1/proofs/records/{kind}`` for the state key ``key``, which
    the caller derived itself from the ids it asked for (``node.api.recordkeys``), so a proof
    of another record does not pass. Same steps as an account's, with that one key (and the
    keys ``also``, proven in the same state)."""
    failures: list[str] = []
    if not isinstance(body, dict):
        return ProofCheck(False, 0, "", ["answer is not a JSON object"], {})
    height = _check_height(body, expected_height, failures)
    if height < 0:
        return ProofCheck(False, 0, "", failures, {})
    if body.get("kind") != kind:
        failures.append(f"answer is for a record of kind {body.get('kind')!r}, not {kind}")
    root = hex_field(body.get("state_root"), "state_root", failures)
    if root is None or len(root) != 32:
        failures.append("state_root is not 32 bytes")
        return ProofCheck(False, height, str(body.get("state_root")), failures, {})
    expected = {key.hex(), *(k.hex() for k in also)}
    values = _check_entries(body, expected, f"this {kind} record", root, failures)
    _check_certificate(body, genesis, height, root, failures, validators)
    return ProofCheck(not failures, height, root.hex(), failures, values)
