"""EIP-712 messages of the bridge contract (contracts/bridge.vy) and their secp256k1 signatures.

Pure functions, no I/O: the node signs vouchers with them and the API can check recorded
signatures. Each digest is the one the contract recomputes (tests/evm/ compares them on a
real EVM): ``keccak256(0x1901 || domainSeparator || structHash)`` with the domain
``EIP712Domain(name "perpbft bridge", version "1", chainId, verifyingContract)``, so a signature
for one chain or one contract is worth nothing on another.

Signatures are 65 bytes ``r || s || v`` (v 27 or 28), always low-s: the contract refuses the
malleable high-s twin. ECDSA nonces are deterministic (RFC 6979, eth-keys), so signing the same
digest with the same key always gives the same bytes.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_account.messages import SignableMessage, encode_typed_data
from eth_keys.datatypes import PrivateKey, Signature
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

DOMAIN_NAME = "perpbft bridge"
DOMAIN_VERSION = "1"
SIGNATURE_BYTES = 65
# Order of the secp256k1 group; a canonical signature has s <= n // 2.
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
UINT256_MAX = 2**256 - 1

_DOMAIN_FIELDS = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
_WITHDRAWAL_FIELDS = [
    {"name": "id", "type": "uint256"},
    {"name": "recipient", "type": "address"},
    {"name": "amount", "type": "uint256"},
]
_VALIDATOR_SET_FIELDS = [
    {"name": "epoch", "type": "uint256"},
    {"name": "validators", "type": "address[]"},
    {"name": "powers", "type": "uint256[]"},
]
_UNFREEZE_FIELDS = [
    {"name": "nonce", "type": "uint256"},
    {"name": "invalidatedIds", "type": "uint256[]"},
]


@dataclass(frozen=True)
class Domain:
    """Where a message is valid: one EVM chain and one bridge contract."""

    chain_id: int
    contract: str

    def typed(self) -> dict[str, Any]:
        return {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": self.chain_id,
            "verifyingContract": to_checksum_address(self.contract),
        }


@dataclass(frozen=True)
class Voucher:
    """A withdrawal the chain has debited: pay ``amount_atoms`` token units to ``recipient``."""

    withdrawal_id: int
    recipient: str
    amount_atoms: int

    def __post_init__(self) -> None:
        if not 0 <= self.withdrawal_id <= UINT256_MAX:
            raise ValueError("withdrawal id must fit in uint256")
        if not 0 < self.amount_atoms <= UINT256_MAX:
            raise ValueError("amount must be positive and fit in uint256")
        to_checksum_address(self.recipient)  # raises ValueError on a malformed address


def _digest(
    domain: Domain, primary: str, fields: list[dict[str, str]], msg: dict[str, Any]
) -> bytes:
    full = {
        "types": {"EIP712Domain": _DOMAIN_FIELDS, primary: fields},
        "primaryType": primary,
        "domain": domain.typed(),
        "message": msg,
    }
    signable: SignableMessage = encode_typed_data(full_message=full)
    return bytes(keccak(b"\x19" + signable.version + signable.header + signable.body))


def voucher_digest(domain: Domain, voucher: Voucher) -> bytes:
    """The 32-byte digest validators sign for a withdrawal."""
    return _digest(domain, "Withdrawal", _WITHDRAWAL_FIELDS, {
        "id": voucher.withdrawal_id,
        "recipient": to_checksum_address(voucher.recipient),
        "amount": voucher.amount_atoms,
    })


def validator_set_digest(
    domain: Domain, epoch: int, validators: Sequence[str], powers: Sequence[int]
) -> bytes:
    """The digest the current set signs to hand over to ``validators`` at ``epoch``."""
    return _digest(domain, "ValidatorSet", _VALIDATOR_SET_FIELDS, {
        "epoch": epoch,
        "validators": [to_checksum_address(v) for v in validators],
        "powers": list(powers),
    })


def unfreeze_digest(domain: Domain, nonce: int, invalidated_ids: Sequence[int]) -> bytes:
    """The digest a supermajority signs to unfreeze, cancelling ``invalidated_ids``."""
    return _digest(domain, "Unfreeze", _UNFREEZE_FIELDS, {
        "nonce": nonce, "invalidatedIds": list(invalidated_ids),
    })


def sign_digest(private_key: bytes, digest: bytes) -> bytes:
    """``r || s || v`` with low s and v in {27, 28}."""
    _check_digest(digest)
    sig = PrivateKey(private_key).sign_msg_hash(digest)
    v, r, s = int(sig.v), int(sig.r), int(sig.s)
    if s > SECP256K1_N // 2:  # normalise: (r, n - s) with the other parity is the same signature
        s, v = SECP256K1_N - s, v ^ 1
    return r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([27 + v])


def sign_voucher(private_key: bytes, domain: Domain, voucher: Voucher) -> bytes:
    return sign_digest(private_key, voucher_digest(domain, voucher))


def split_signature(signature: bytes) -> tuple[int, int, int]:
    """(v, r, s) of a 65-byte signature; ValueError unless canonical (v 27/28, low s)."""
    if len(signature) != SIGNATURE_BYTES:
        raise ValueError(f"a signature is {SIGNATURE_BYTES} bytes, not {len(signature)}")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    if v not in (27, 28):
        raise ValueError("signature v must be 27 or 28")
    if not (0 < r < SECP256K1_N and 0 < s <= SECP256K1_N // 2):
        raise ValueError("signature r or s out of range (high s is refused)")
    return v, r, s


def recover_signer(digest: bytes, signature: bytes) -> str:
    """The checksum address whose key made ``signature`` over ``digest``."""
    _check_digest(digest)
    v, r, s = split_signature(signature)
    try:
        public = Signature(vrs=(v - 27, r, s)).recover_public_key_from_msg_hash(digest)
    except Exception as exc:  # eth-keys raises BadSignature and others for unrecoverable points
        raise ValueError(f"unrecoverable signature: {exc}") from exc
    return str(public.to_checksum_address())


def key_address(private_key: bytes) -> str:
    return str(PrivateKey(private_key).public_key.to_checksum_address())


def new_private_key() -> bytes:
    """A fresh secp256k1 key (32 bytes in [1, n - 1])."""
    while True:
        candidate = secrets.token_bytes(32)
        if 0 < int.from_bytes(candidate, "big") < SECP256K1_N:
            return candidate


def order_signatures(digest: bytes, signatures: Sequence[bytes]) -> list[bytes]:
    """Signatures sorted by signer address, one per signer: the order the contract requires."""
    by_signer = {int(recover_signer(digest, sig), 16): sig for sig in signatures}
    return [by_signer[signer] for signer in sorted(by_signer)]


def _check_digest(digest: bytes) -> None:
    if len(digest) != 32:
        raise ValueError(f"a digest is 32 bytes, not {len(digest)}")
