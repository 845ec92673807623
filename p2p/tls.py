"""Mutual TLS 1.3 with Ed25519 node certificates, pinned to public keys.

Pinning scheme
--------------
Every node presents an X.509 certificate for its Ed25519 node key (the same key as its
validator key), built at start-up from the 32-byte seed with ``cryptography``. Both sides
present certificates (mutual TLS, TLS 1.3 only) and each side accepts the other only if the
Ed25519 public key in the peer's leaf certificate is in its allowed set; for a dial, it must
equal the key the dialer expected. Identity is therefore the key, never a name or a CA.

Why the certificates chain to a public "anchor": stdlib ``ssl`` has no verification callback.
A server that asks for a client certificate (``CERT_REQUIRED`` or ``CERT_OPTIONAL``) makes
OpenSSL verify the chain, and a genuinely self-signed peer certificate fails that check with
"self-signed certificate" unless the very same certificate is in the trust store, which we
cannot know in advance. So each node's certificate is issued by a fixed anchor whose private
key is derived from a public constant (:data:`ANCHOR_SEED_TAG`). Anyone can issue anchor
certificates; the anchor is not a trust root in any security sense. It only lets OpenSSL's
mandatory chain check pass, while the security comes from two things OpenSSL always does and
one thing we do:

1. TLS 1.3 CertificateVerify: the peer signs the handshake transcript with the private key of
   its leaf certificate, so it holds the key it claims (OpenSSL checks this in every mode);
2. the Finished messages bind that to this connection's keys;
3. after the handshake we read the leaf (``getpeercert(binary_form=True)``), extract its
   Ed25519 key and compare it with the allowed set: the pin.

All certificate fields are deterministic (fixed validity 2020-01-01 .. 9999-12-31, serial from
the key), so clock skew between validators never breaks a handshake and a node's certificate
is the same on every start. ``ssl`` loads keys only from files, so the private key is written,
encrypted under a one-time random password, to a private temporary directory (0700, file
0600), loaded, and deleted at once.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import os
import ssl
import tempfile
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PUBLIC_KEY_BYTES = 32
SEED_BYTES = 32
ALPN_PROTOCOL = "perpbft-p2p/1"
ANCHOR_SEED_TAG = b"perpbft/p2p-anchor/v1"
# Peer certificates larger than this are not ours; refuse to parse them.
CERTIFICATE_BYTES_MAX = 4096

_NOT_VALID_BEFORE = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
_NOT_VALID_AFTER = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@functools.cache
def _anchor_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(ANCHOR_SEED_TAG).digest())


@functools.cache
def anchor_certificate() -> x509.Certificate:
    """The public anchor every node certificate chains to (see the module docstring)."""
    key = _anchor_key()
    return (
        x509.CertificateBuilder()
        .subject_name(_name("perpbft p2p anchor"))
        .issuer_name(_name("perpbft p2p anchor"))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(_NOT_VALID_BEFORE)
        .not_valid_after(_NOT_VALID_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, None)
    )


def node_certificate(seed: bytes) -> x509.Certificate:
    """The certificate of the node whose Ed25519 seed is ``seed``; CN is the key in hex."""
    if len(seed) != SEED_BYTES:
        raise ValueError(f"Ed25519 seed must be {SEED_BYTES} bytes, got {len(seed)}")
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    raw = _raw_public_key(public)
    anchor = _anchor_key()
    return (
        x509.CertificateBuilder()
        .subject_name(_name(raw.hex()))
        .issuer_name(anchor_certificate().subject)
        .public_key(public)
        .serial_number(int.from_bytes(hashlib.sha256(raw).digest()[:16], "big") >> 1 or 1)
        .not_valid_before(_NOT_VALID_BEFORE)
        .not_valid_after(_NOT_VALID_AFTER)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(anchor.public_key()), critical=False
        )
        .sign(anchor, None)
    )


def public_key_from_seed(seed: bytes) -> bytes:
    return _raw_public_key(Ed25519PrivateKey.from_private_bytes(seed).public_key())


def public_key_of_certificate(der: bytes | None) -> bytes | None:
    """The raw 32-byte Ed25519 key of a DER certificate, or None if it is anything else."""
    if not der or len(der) > CERTIFICATE_BYTES_MAX:
        return None
    try:
        key = x509.load_der_x509_certificate(der).public_key()
    except ValueError:
        return None
    if not isinstance(key, Ed25519PublicKey):
        return None
    return _raw_public_key(key)


def peer_public_key(stream: Any) -> bytes | None:
    """The pinned identity of a handshaken ``trio.SSLStream``: its peer's Ed25519 key.

    None when the peer presented no usable certificate or did not speak our ALPN protocol.
    """
    if stream.selected_alpn_protocol() != ALPN_PROTOCOL:
        return None
    der: bytes | None = stream.getpeercert(binary_form=True)
    return public_key_of_certificate(der)


@dataclasses.dataclass(frozen=True, slots=True)
class TlsContexts:
    """One node's TLS configuration: ``server`` for accepted sockets, ``client`` for dials."""

    public_key: bytes
    server: ssl.SSLContext
    client: ssl.SSLContext


def _base_context(
    protocol: int, cert_file: Path, key_file: Path, password: bytes
) -> ssl.SSLContext:
    context = ssl.SSLContext(protocol)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(cert_file, key_file, password=password)
    # Identity is the pinned key, never a host name: see the module docstring.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(
        cadata=anchor_certificate().public_bytes(serialization.Encoding.DER)
    )
    context.set_alpn_protocols([ALPN_PROTOCOL])
    return context


def make_tls_contexts(seed: bytes) -> TlsContexts:
    """Server and client contexts presenting the certificate of ``seed``'s key."""
    certificate = node_certificate(seed)
    password = os.urandom(32).hex().encode()
    key_pem = Ed25519PrivateKey.from_private_bytes(seed).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    with tempfile.TemporaryDirectory(prefix="perpbft-tls-") as directory:
        cert_file = Path(directory) / "node.crt"
        key_file = Path(directory) / "node.key"
        cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)
        server = _base_context(ssl.PROTOCOL_TLS_SERVER, cert_file, key_file, password)
        client = _base_context(ssl.PROTOCOL_TLS_CLIENT, cert_file, key_file, password)
    # Session tickets would let a later connection skip the certificate exchange; every
    # connection must prove its key again, and the tickets are wasted bytes.
    server.num_tickets = 0
    return TlsContexts(public_key=public_key_from_seed(seed), server=server, client=client)
