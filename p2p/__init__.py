"""Transport between validators: mutual TLS 1.3, length-prefixed frames, bounded queues, peers.

p2p knows bytes, peers and frames, not blocks or orders. The node owns a :class:`PeerManager`,
reads ``(peer_id, payload)`` from ``manager.inbound`` and calls ``send``/``broadcast``/
``penalize``.
"""

from p2p.address import PeerAddress, format_host_port, parse_host_port, parse_public_key
from p2p.config import TransportConfig
from p2p.connection import CloseReason, Direction, PeerStatistics
from p2p.frames import FrameDecoder, FrameTooLarge, OutboundQueue, encode_frame
from p2p.manager import (
    PENALTY_POINTS_DEFAULT,
    InboundFrame,
    InboundQueue,
    PeerManager,
    PeerManagerStatistics,
)
from p2p.tls import ALPN_PROTOCOL, TlsContexts, make_tls_contexts, node_certificate

__all__ = [
    "ALPN_PROTOCOL",
    "PENALTY_POINTS_DEFAULT",
    "CloseReason",
    "Direction",
    "FrameDecoder",
    "FrameTooLarge",
    "InboundFrame",
    "InboundQueue",
    "OutboundQueue",
    "PeerAddress",
    "PeerManager",
    "PeerManagerStatistics",
    "PeerStatistics",
    "TlsContexts",
    "TransportConfig",
    "encode_frame",
    "format_host_port",
    "make_tls_contexts",
    "node_certificate",
    "parse_host_port",
    "parse_public_key",
]
