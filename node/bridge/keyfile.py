"""The validator's secp256k1 bridge key file: the 32-byte private key in hex on one line
(``0x`` optional), mode 0600, like ``evm/validatorI.key`` of a localnet."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from node.keys import KeyFileError

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
KEY_FILE_BYTES_MAX = 256


def read_bridge_key(path: Path) -> bytes:
    """The private key in ``path``; KeyFileError with a one-line reason otherwise."""
    try:
        info = path.stat()
        if info.st_size > KEY_FILE_BYTES_MAX:
            raise KeyFileError(f"{path} is not a bridge key file (too large)")
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise KeyFileError(f"bridge key file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read bridge key file {path}: {exc}") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"bridge key file {path} is readable by others (chmod 600 it)")
    body = text[2:] if text.startswith(("0x", "0X")) else text
    try:
        key = bytes.fromhex(body)
    except ValueError:
        key = b""
    if len(key) != 32 or not 0 < int.from_bytes(key, "big") < SECP256K1_N:
        raise KeyFileError(f"{path} must hold a secp256k1 private key as 64 hex characters")
    return key


def write_bridge_key(path: Path, key: bytes) -> None:
    """Write ``key`` to a new file ``path`` with mode 0600 (never overwrites)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise KeyFileError(f"cannot write {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
