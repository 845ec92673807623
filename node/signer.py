"""Remote signer: a separate process holds the validator key and its own double-sign guard.

Theory of operation
-------------------
``perpbft signer`` loads the validator key file and listens on a Unix socket (mode 0600, in
the operator's private directory), or on TCP with mutual TLS 1.3 and pinned Ed25519 keys as
in ``p2p/tls.py`` (the signer presents the validator key and accepts only the node keys it
was given with ``--allow-node``). The node (``[signer] address = "unix:///path"`` or
``"tls://host:port"``) connects
and asks for signatures over the exact domain-tagged signing bytes the replica produces
(``consensus.types``: vote, proposal, NEW-VIEW). The signer parses those bytes itself, so it
knows what it signs, and keeps its own safety record, like tmkms or CometBFT's privval:

* per vote phase and for proposals, the last ``(view, block_hash)`` signed. A request for a
  lower view is refused (``regression``); for the same view and another block, refused
  (``double_sign``); for the same view and the same block, signed again (a node that crashed
  after the signature but before sending asks again; Ed25519 is deterministic, so the
  signature is the same bytes);
* NEW-VIEWs (timeout messages, not slashable here) must not go back in view;
* anything else (another chain id, an unknown domain tag, malformed bytes) is refused.

The record is written to a file (temporary file, fsync, rename, fsync of the directory) before
the signature is returned, so a signer crash never forgets a signature that left it. Requests
are served one at a time under a lock: two nodes sharing one signer (a failover pair) cannot
race past the guard.

Wire format: each request and each response is a 4-byte big-endian length and a JSON object
of at most :data:`FRAME_MAX_BYTES`. Requests: ``{"op": "public_key"}`` and ``{"op": "sign",
"message": "<hex>"}``. Responses: ``{"ok": true, ...}`` or ``{"ok": false, "code": "<code>",
"error": "<text>"}`` with the codes of :data:`REFUSAL_CODES`.

The node side (:class:`RemoteSigner`) is synchronous with a bounded timeout: the replica signs
inside its event handler, and a local Unix socket round trip is tens of microseconds. On a
refusal, a timeout or a lost connection it raises
:class:`~consensus.signing.SigningFailed`: the replica stays silent for that message (safe),
the next request reconnects.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consensus.check import check
from consensus.signing import SigningFailed
from consensus.types import NEWVIEW_DOMAIN_TAG, PROPOSAL_DOMAIN_TAG, VOTE_DOMAIN_TAG
from node.logs import fields, get_logger
from p2p.tls import ALPN_PROTOCOL, public_key_of_certificate
from state_machine.codec import DecodeError, decode_raw
from state_machine.crypto import HASH_BYTES, Keypair

FRAME_MAX_BYTES = 64 * 1024
SIGN_MESSAGE_MAX_BYTES = 1024  # a signing request is a tag, a chain id and a few integers
UNIX_PREFIX = "unix://"
TLS_PREFIX = "tls://"
TLS_HANDSHAKE_TIMEOUT_S = 5.0
CONNECTIONS_MAX = 8
STATE_VERSION = 1
REFUSAL_CODES = ("double_sign", "regression", "wrong_chain", "bad_request")

log = get_logger("signer")


class SignRefused(Exception):
    """The signer will not sign this; ``code`` is one of :data:`REFUSAL_CODES`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class SignRequest:
    """What a signing request vouches for: ``kind`` is ``vote``, ``proposal`` or ``newview``;
    ``phase`` is 0 except for votes; ``block`` is the block hash (the high QC digest for a
    NEW-VIEW)."""

    kind: str
    phase: int
    view: int
    block: bytes


@dataclass(frozen=True, slots=True)
class SignerAddress:
    """Where a signer listens: a Unix socket ``path``, or ``host``/``port`` with mutual TLS."""

    path: Path | None
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        return f"{UNIX_PREFIX}{self.path}" if self.path else f"{TLS_PREFIX}{self.host}:{self.port}"


def parse_signer_address(address: str) -> SignerAddress:
    """``unix:///run/perpbft/signer.sock`` or ``tls://10.0.0.5:26659``."""
    if address.startswith(UNIX_PREFIX) and len(address) > len(UNIX_PREFIX):
        return SignerAddress(Path(address[len(UNIX_PREFIX) :]))
    if address.startswith(TLS_PREFIX):
        host, _, port = address[len(TLS_PREFIX) :].rpartition(":")
        if host and port.isdigit() and 0 < int(port) < 65536:
            return SignerAddress(None, host.strip("[]"), int(port))
    raise ValueError(
        f"signer address must be unix:///path/to/socket or tls://host:port, got {address!r}"
    )


def parse_sign_request(chain_id: str, message: bytes) -> SignRequest:
    """Decode the signing bytes of a consensus message, refusing anything not for this chain
    or not one of the three shapes the replica signs."""
    if len(message) > SIGN_MESSAGE_MAX_BYTES:
        raise SignRefused("bad_request", "signing request too long")
    for tag, kind in (
        (VOTE_DOMAIN_TAG, "vote"),
        (PROPOSAL_DOMAIN_TAG, "proposal"),
        (NEWVIEW_DOMAIN_TAG, "newview"),
    ):
        if message.startswith(tag):
            return _parse_body(kind, chain_id, message[len(tag) :])
    raise SignRefused("bad_request", "not a consensus signing request")


def _parse_body(kind: str, chain_id: str, body: bytes) -> SignRequest:
    prefix = chain_id.encode("ascii") + b"\x00"
    if not body.startswith(prefix):
        raise SignRefused("wrong_chain", f"the request is not for chain {chain_id}")
    try:
        fields = decode_raw(body[len(prefix) :], SIGN_MESSAGE_MAX_BYTES)
    except DecodeError as exc:
        raise SignRefused("bad_request", f"malformed signing request: {exc}") from None
    shapes = {"vote": (int, int, int, bytes), "proposal": (int, bytes), "newview": (int, bytes)}
    shape = shapes[kind]
    if (
        not isinstance(fields, list)
        or len(fields) != len(shape)
        or not all(type(f) is t for f, t in zip(fields, shape, strict=True))
        or any(isinstance(f, int) and f < 0 for f in fields)
        or len(fields[-1]) != HASH_BYTES
    ):
        raise SignRefused("bad_request", f"malformed {kind} signing request")
    if kind == "vote":
        return SignRequest(kind, fields[0], fields[1], fields[3])
    return SignRequest(kind, 0, fields[0], fields[1])


@dataclass(slots=True)
class SignerState:
    """The signer's safety record: the last ``[view, block_hash_hex]`` per slot, where a slot
    is ``vote/<phase>``, ``proposal`` or ``newview``."""

    chain_id: str
    last: dict[str, list[Any]] = field(default_factory=dict)

    def check(self, request: SignRequest) -> bool:
        """Raise :class:`SignRefused` if signing ``request`` could double-sign; return whether
        the record must move forward (False: the same message signed again)."""
        slot = _slot(request)
        previous = self.last.get(slot)
        if previous is None or request.view > previous[0]:
            return True
        if request.view < previous[0]:
            raise SignRefused(
                "regression", f"{slot} view {request.view} is below the last signed {previous[0]}"
            )
        if request.kind != "newview" and previous[1] != request.block.hex():
            raise SignRefused(
                "double_sign", f"{slot} in view {request.view} was signed for another block"
            )
        return request.kind == "newview" and previous[1] != request.block.hex()

    def record(self, request: SignRequest) -> None:
        self.last[_slot(request)] = [request.view, request.block.hex()]


def _slot(request: SignRequest) -> str:
    return f"vote/{request.phase}" if request.kind == "vote" else request.kind


def load_state(path: Path, chain_id: str) -> SignerState:
    """The record on disk, or an empty one for a new signer; another chain's record is an
    error (the operator pointed the signer at the wrong file)."""
    if not path.exists():
        return SignerState(chain_id)
    body = json.loads(path.read_text())
    if body.get("version") != STATE_VERSION or body.get("chain_id") != chain_id:
        raise ValueError(f"{path}: signer state of another chain or version")
    last = body.get("last")
    if not isinstance(last, dict) or not all(_valid_entry(v) for v in last.values()):
        raise ValueError(f"{path}: malformed signer state")
    return SignerState(chain_id, last)


def _valid_entry(entry: Any) -> bool:
    """A record entry is ``[view, block_hash_hex]``."""
    return (
        isinstance(entry, list)
        and len(entry) == 2
        and type(entry[0]) is int
        and isinstance(entry[1], str)
    )


def save_state(path: Path, state: SignerState) -> None:
    """Durably replace the record: write a temporary file, fsync, rename, fsync the dir."""
    body = {"version": STATE_VERSION, "chain_id": state.chain_id, "last": state.last}
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps(body, sort_keys=True).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class SignerCore:
    """The signing decision: parse, check the record, persist, sign. One request at a time."""

    def __init__(self, key: Keypair, chain_id: str, state_path: Path) -> None:
        self.key = key
        self.chain_id = chain_id
        self.state_path = state_path
        self.state = load_state(state_path, chain_id)
        self._lock = threading.Lock()

    def sign(self, message: bytes) -> bytes:
        request = parse_sign_request(self.chain_id, message)
        with self._lock:
            if self.state.check(request):
                self.state.record(request)
                save_state(self.state_path, self.state)
            return self.key.sign(message)

    def answer(self, request: Any) -> dict[str, Any]:
        """The response to one decoded request object."""
        if not isinstance(request, dict):
            return _refusal("bad_request", "a request is a JSON object")
        op = request.get("op")
        if op == "public_key":
            return {"ok": True, "public_key": self.key.public_key.hex()}
        if op != "sign" or not isinstance(request.get("message"), str):
            return _refusal("bad_request", "op must be public_key or sign (with message)")
        try:
            message = bytes.fromhex(request["message"])
            return {"ok": True, "signature": self.sign(message).hex()}
        except ValueError:
            return _refusal("bad_request", "message is not hex")
        except SignRefused as exc:
            return _refusal(exc.code, str(exc))


def _refusal(code: str, error: str) -> dict[str, Any]:
    return {"ok": False, "code": code, "error": error}


def send_frame(sock: socket.socket, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    sock.sendall(struct.pack(">I", len(data)) + data)


def recv_frame(sock: socket.socket) -> Any:
    """One frame, or None at a clean end of stream; a bad frame raises ValueError."""
    header = _recv_exact(sock, 4)
    if header is None:
        return None
    (size,) = struct.unpack(">I", header)
    if size > FRAME_MAX_BYTES:
        raise ValueError(f"frame of {size} bytes is over {FRAME_MAX_BYTES}")
    data = _recv_exact(sock, size)
    if data is None:
        raise ValueError("connection closed inside a frame")
    return json.loads(data)


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    chunks, got = [], 0
    while got < size:
        chunk = sock.recv(size - got)
        if not chunk:
            if got:
                raise ValueError("connection closed inside a frame")
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


@dataclass(frozen=True, slots=True)
class TlsServer:
    """Mutual TLS for a ``tls://`` listener: the signer's context and the node keys it
    accepts (pinned, as in p2p/tls.py)."""

    context: ssl.SSLContext
    allowed_keys: frozenset[bytes]


def _listener(address: SignerAddress) -> socket.socket:
    if address.path is None:
        return socket.create_server((address.host, address.port), backlog=CONNECTIONS_MAX)
    path = address.path
    if path.exists() or path.is_symlink():
        path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # the socket file is created 0600: only the owner connects
    try:
        listener.bind(str(path))
    finally:
        os.umask(old_umask)
    listener.listen(CONNECTIONS_MAX)
    return listener


def serve(
    core: SignerCore,
    address: SignerAddress,
    stop: threading.Event | None = None,
    tls: TlsServer | None = None,
) -> None:
    """Listen on ``address`` and answer requests until ``stop`` is set; a ``tls://`` address
    needs ``tls``."""
    check(address.path is not None or tls is not None, "a TLS listener needs its TLS settings")
    listener = _listener(address)
    listener.settimeout(0.2)
    slots = threading.BoundedSemaphore(CONNECTIONS_MAX)
    try:
        while stop is None or not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            if not slots.acquire(blocking=False):
                conn.close()  # over the connection limit
                continue
            args = (core, conn, slots, tls)
            threading.Thread(target=_serve_one, args=args, daemon=True).start()
    finally:
        listener.close()
        if address.path is not None:
            address.path.unlink(missing_ok=True)


def _accept_tls(conn: socket.socket, tls: TlsServer) -> socket.socket | None:
    """The handshaken TLS socket of an allowed node key, or None (the connection is closed)."""
    conn.settimeout(TLS_HANDSHAKE_TIMEOUT_S)
    try:
        wrapped = tls.context.wrap_socket(conn, server_side=True)
    except (OSError, ssl.SSLError):
        conn.close()
        return None
    key = public_key_of_certificate(wrapped.getpeercert(binary_form=True))
    if wrapped.selected_alpn_protocol() != ALPN_PROTOCOL or key not in tls.allowed_keys:
        log.warning("signer_peer_refused", extra=fields(key=key.hex() if key else None))
        wrapped.close()
        return None
    wrapped.settimeout(None)
    return wrapped


def _serve_one(
    core: SignerCore,
    conn: socket.socket,
    slots: threading.BoundedSemaphore,
    tls: TlsServer | None,
) -> None:
    try:
        if tls is not None:
            accepted = _accept_tls(conn, tls)
            if accepted is None:
                return
            conn = accepted
        with conn:
            while True:
                try:
                    request = recv_frame(conn)
                except (ValueError, OSError):
                    return  # a malformed or broken stream: drop the connection
                if request is None:
                    return
                send_frame(conn, core.answer(request))
    except OSError:
        return
    finally:
        slots.release()


class RemoteSigner:
    """The node's client: a :class:`~consensus.signing.Signer` backed by a signer process.

    One persistent connection, reopened on the next request after any failure. Every call is
    bounded by ``timeout_ms``."""

    def __init__(
        self,
        address: str,
        timeout_ms: int,
        tls: ssl.SSLContext | None = None,
        signer_key: bytes | None = None,
    ) -> None:
        """A ``tls://`` address needs ``tls`` (the node's client context) and ``signer_key``,
        the key the signer must present (pinned)."""
        self.address = parse_signer_address(address)
        if self.address.path is None and (tls is None or signer_key is None):
            raise ValueError("a tls:// signer needs the node's TLS context and the signer's key")
        self.tls = tls
        self.signer_key = signer_key
        self.timeout_s = timeout_ms / 1000
        self._sock: socket.socket | None = None
        self.failures = 0
        self.refusals = 0
        # Called with "unavailable" or "refused" on each failure (the node counts them).
        self.on_failure: Callable[[str], None] = lambda reason: None
        self._public_key = bytes.fromhex(self._call({"op": "public_key"})["public_key"])

    @property
    def public_key(self) -> bytes:
        return self._public_key

    def sign(self, message: bytes) -> bytes:
        return bytes.fromhex(self._call({"op": "sign", "message": message.hex()})["signature"])

    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            sock = self._connection()
            send_frame(sock, request)
            response = recv_frame(sock)
        except (OSError, ValueError) as exc:
            self._drop()
            self.failures += 1
            self.on_failure("unavailable")
            log.warning(
                "signer_unavailable", extra=fields(signer=str(self.address), error=str(exc))
            )
            raise SigningFailed(f"signer at {self.address} unavailable: {exc}") from None
        if not isinstance(response, dict):
            self._drop()
            self.failures += 1
            self.on_failure("unavailable")
            raise SigningFailed(f"signer at {self.address} closed the connection")
        if not response.get("ok"):
            self.refusals += 1
            self.on_failure("refused")
            code, error = response.get("code"), response.get("error")
            log.error("signer_refused", extra=fields(code=code, error=error))
            raise SigningFailed(f"signer refused ({response.get('code')}): {response.get('error')}")
        return response

    def _connection(self) -> socket.socket:
        if self._sock is None:
            self._sock = self._open()
        return self._sock

    def _open(self) -> socket.socket:
        address = self.address
        if address.path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout_s)
            try:
                sock.connect(str(address.path))
            except OSError:
                sock.close()
                raise
            return sock
        if self.tls is None:  # the constructor refuses this
            raise ValueError("a tls:// signer without a TLS context")
        plain = socket.create_connection((address.host, address.port), timeout=self.timeout_s)
        try:
            sock = self.tls.wrap_socket(plain)
        except (OSError, ssl.SSLError):
            plain.close()
            raise
        key = public_key_of_certificate(sock.getpeercert(binary_form=True))
        if key != self.signer_key:
            sock.close()
            raise OSError(f"the signer presented key {key.hex()[:16] if key else None}")
        return sock

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def close(self) -> None:
        self._drop()
