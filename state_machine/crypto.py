"""Hashing and Ed25519 signatures: the one verifier on every path that decides state.

Ed25519 verifiers disagree on edge cases (small-order keys, non-canonical encodings; see
``docs/ARCHITECTURE.md`` and ``tests/foundation/test_ed25519_vectors.py``). A replicated state
machine that mixed two verifiers could fork, so every signature in perpbft, transactions and
consensus messages alike, is checked by :func:`verify`, which is libsodium through PyNaCl and
nothing else.
Key generation needs randomness and therefore lives outside the pure cores (``node/keys.py``).
"""

from __future__ import annotations

import hashlib

import nacl.bindings
import nacl.exceptions

PUBLIC_KEY_BYTES = 32
SECRET_SEED_BYTES = 32
SIGNATURE_BYTES = 64
HASH_BYTES = 32


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True iff ``signature`` is a valid Ed25519 signature of ``message`` under ``public_key``.

    libsodium's rules (``crypto_sign_verify_detached``): rejects small-order public keys and R,
    non-canonical S (S >= L) and non-canonical R; cofactorless equation. Wrong lengths are
    simply invalid, never an exception.
    """
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        nacl.bindings.crypto_sign_open(signature + message, public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
        return False
    return True


class Keypair:
    """An Ed25519 key pair built deterministically from a 32-byte seed."""

    __slots__ = ("_secret", "public_key", "seed")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SECRET_SEED_BYTES:
            raise ValueError(f"Ed25519 seed must be {SECRET_SEED_BYTES} bytes, got {len(seed)}")
        public, secret = nacl.bindings.crypto_sign_seed_keypair(seed)
        self.seed: bytes = seed
        self.public_key: bytes = public
        self._secret: bytes = secret

    def sign(self, message: bytes) -> bytes:
        signed: bytes = nacl.bindings.crypto_sign(message, self._secret)
        return signed[:SIGNATURE_BYTES]

    def __repr__(self) -> str:  # never print the secret
        return f"Keypair(public_key={self.public_key.hex()})"
