"""Key files: an Ed25519 seed on disk, readable by its owner only.

Format (JSON, one object)::

    {"kind": "ed25519", "seed": "<64 hex chars>", "public_key": "<64 hex chars>"}

The public key is stored for humans and as a corruption check: it must equal the key derived
from the seed. The file must not be readable or writable by group or others (mode 0600), as
with ssh keys; a looser mode is refused rather than silently used.

An account address is the lowercase hex of the 32-byte public key (64 characters).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from state_machine.crypto import PUBLIC_KEY_BYTES, SECRET_SEED_BYTES, Keypair

KEY_FILE_MAX_BYTES = 4096


class KeyFileError(Exception):
    """A key file that is missing, unreadable, too open or corrupt; the message says which."""


def generate_keypair() -> Keypair:
    return Keypair(os.urandom(SECRET_SEED_BYTES))


def address_of(public_key: bytes) -> str:
    assert len(public_key) == PUBLIC_KEY_BYTES
    return public_key.hex()


def parse_address(text: str) -> bytes:
    """An account address (64 hex chars, optional 0x prefix) to its public key bytes."""
    body = text[2:] if text.startswith(("0x", "0X")) else text
    if len(body) != 2 * PUBLIC_KEY_BYTES:
        raise ValueError(f"address must be {2 * PUBLIC_KEY_BYTES} hex characters, got {len(body)}")
    try:
        return bytes.fromhex(body)
    except ValueError:
        raise ValueError("address is not hexadecimal") from None


def key_file_text(key: Keypair) -> str:
    body = {"kind": "ed25519", "seed": key.seed.hex(), "public_key": key.public_key.hex()}
    return json.dumps(body, indent=2) + "\n"


def write_key_file(path: Path, key: Keypair, *, force: bool = False) -> None:
    """Write ``key`` to ``path`` with mode 0600; refuse to overwrite unless ``force``."""
    if path.exists() and not force:
        raise KeyFileError(f"{path} already exists (use --force to overwrite)")
    if path.parent and not path.parent.exists():
        raise KeyFileError(f"directory {path.parent} does not exist")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise KeyFileError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w") as f:
            f.write(key_file_text(key))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise KeyFileError(f"cannot write {path}: {exc.strerror}") from None


def read_key_file(path: Path) -> Keypair:
    """Load and check a key file; every failure is a KeyFileError with a one-line reason."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} does not exist") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"key file {path} is not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise KeyFileError(
            f"key file {path} has mode {mode:04o}; it must be private (chmod 600 {path})"
        )
    if st.st_size > KEY_FILE_MAX_BYTES:
        raise KeyFileError(f"key file {path} is too large to be a key ({st.st_size} bytes)")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise KeyFileError(f"key file {path} is corrupt: not UTF-8 text") from None
    return parse_key_text(text, str(path))


def parse_key_text(text: str, where: str) -> Keypair:
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise KeyFileError(f"key file {where} is corrupt: {exc.msg}") from None
    if not isinstance(body, dict) or body.get("kind") != "ed25519":
        raise KeyFileError(f"key file {where} is corrupt: not an ed25519 key object")
    seed_hex, public_hex = body.get("seed"), body.get("public_key")
    if not isinstance(seed_hex, str) or not isinstance(public_hex, str):
        raise KeyFileError(f"key file {where} is corrupt: missing seed or public_key")
    try:
        seed = bytes.fromhex(seed_hex)
        public = bytes.fromhex(public_hex)
    except ValueError:
        raise KeyFileError(f"key file {where} is corrupt: seed or public_key is not hex") from None
    if len(seed) != SECRET_SEED_BYTES:
        raise KeyFileError(f"key file {where} is corrupt: seed is {len(seed)} bytes, not 32")
    key = Keypair(seed)
    if key.public_key != public:
        raise KeyFileError(f"key file {where} is corrupt: public_key does not match the seed")
    return key
