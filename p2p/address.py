"""Peer addresses: ``<64 hex chars of the Ed25519 key>@<host>:<port>``.

The key comes first because it is the identity; the host and port are only where to find it
today. IPv6 hosts are written in brackets (``...@[::1]:26656``).
"""

from __future__ import annotations

import dataclasses

from p2p.tls import PUBLIC_KEY_BYTES

HOST_CHARS_MAX = 253  # the longest DNS name


def parse_host_port(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` to ``(host, port)``; ValueError says what is wrong."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 host in brackets, e.g. [::1]:26656")
    if not host or len(host) > HOST_CHARS_MAX or any(c.isspace() for c in host):
        raise ValueError(f"{text!r} has an invalid host")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65_535:
        raise ValueError(f"{text!r} has an invalid port (0..65535)")
    return host, int(port_text)


def format_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_public_key(text: str) -> bytes:
    if len(text) != 2 * PUBLIC_KEY_BYTES:
        raise ValueError(f"public key must be {2 * PUBLIC_KEY_BYTES} hex characters")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ValueError("public key is not hexadecimal") from None


@dataclasses.dataclass(frozen=True, slots=True)
class PeerAddress:
    public_key: bytes
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> PeerAddress:
        key_text, sep, where = text.partition("@")
        if not sep:
            raise ValueError(f"{text!r} is not <public key hex>@<host>:<port>")
        host, port = parse_host_port(where)
        if port == 0:
            raise ValueError(f"{text!r}: a peer's port cannot be 0")
        return cls(parse_public_key(key_text), host, port)

    def __str__(self) -> str:
        return f"{self.public_key.hex()}@{format_host_port(self.host, self.port)}"
