"""Key files: an Ed25519 seed on disk, readable by its owner only.

Format (JSON, one object)::

    {"kind": "ed25519", "seed": "<64 hex chars>", "public_key": "<64 hex chars>"}

The public key is stored for humans and as a corruption check: it must equal the key derived
from the seed. The file must not be readable or writable by group or others (mode 0600), as
with ssh keys; a looser mode is refused rather than silently used (the node does not start).

A key file may instead hold the seed encrypted under a passphrase (``perpbft keys new
--encrypt``, ``perpbft keys encrypt FILE``)::

    {"kind": "ed25519-encrypted", "public_key": "<hex>",
     "kdf": {"name": "scrypt", "n": 32768, "r": 8, "p": 1, "salt": "<hex>"},
     "cipher": "chacha20-poly1305", "nonce": "<hex>", "ciphertext": "<hex>"}

scrypt (memory-hard, from ``cryptography``) derives a 32-byte key from the passphrase and the
random salt; ChaCha20-Poly1305 (an AEAD, also ``cryptography``) encrypts the seed with the
public key as associated data, so a wrong passphrase or an edited file fails authentication
instead of giving a wrong key. The KDF parameters read from a file are bounded, so a crafted
file cannot make a reader spend unbounded memory. Whoever reads a key (the node, the trader
commands, the localnet tools) gets the passphrase from ``$PERPBFT_KEY_PASSPHRASE``, else the
file named by ``$PERPBFT_KEY_PASSPHRASE_FILE`` (private, like the key), else a prompt on a
terminal; with none of them an encrypted key is a one-line error.

An account address is the lowercase hex of the 32-byte public key (64 characters).
"""

from __future__ import annotations

import getpass
import json
import os
import stat
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from state_machine.crypto import PUBLIC_KEY_BYTES, SECRET_SEED_BYTES, Keypair

KEY_FILE_MAX_BYTES = 4096
ENCRYPTED_KIND = "ed25519-encrypted"
PASSPHRASE_ENV = "PERPBFT_KEY_PASSPHRASE"
PASSPHRASE_FILE_ENV = "PERPBFT_KEY_PASSPHRASE_FILE"
PASSPHRASE_BYTES_MAX = 1024
SCRYPT_N = 2**15  # about 0.1 s and 32 MiB per derivation
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_N_MAX = 2**20  # a file asking for more (1 GiB of memory) is refused
SCRYPT_R_MAX = 16
SCRYPT_P_MAX = 4
SALT_BYTES = 16
NONCE_BYTES = 12

# Returns the passphrase of the key file it is given (prompting if need be).
PassphraseSource = Callable[[Path], bytes]


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


def encrypted_key_text(key: Keypair, passphrase: bytes) -> str:
    """The encrypted key file body of ``key`` under ``passphrase`` (see the module doc)."""
    check_passphrase(passphrase)
    salt, nonce = os.urandom(SALT_BYTES), os.urandom(NONCE_BYTES)
    secret = _derive(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    sealed = ChaCha20Poly1305(secret).encrypt(nonce, key.seed, _aad(key.public_key))
    body = {
        "kind": ENCRYPTED_KIND,
        "public_key": key.public_key.hex(),
        "kdf": {"name": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P, "salt": salt.hex()},
        "cipher": "chacha20-poly1305",
        "nonce": nonce.hex(),
        "ciphertext": sealed.hex(),
    }
    return json.dumps(body, indent=2) + "\n"


def check_passphrase(passphrase: bytes) -> None:
    if not passphrase:
        raise KeyFileError("the passphrase is empty")
    if len(passphrase) > PASSPHRASE_BYTES_MAX:
        raise KeyFileError(f"the passphrase is longer than {PASSPHRASE_BYTES_MAX} bytes")


def _derive(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase)


def _aad(public_key: bytes) -> bytes:
    return ENCRYPTED_KIND.encode() + public_key


def write_key_file(
    path: Path, key: Keypair, *, force: bool = False, passphrase: bytes | None = None
) -> None:
    """Write ``key`` to ``path`` with mode 0600, encrypted if a ``passphrase`` is given;
    refuse to overwrite unless ``force``."""
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
        text = key_file_text(key) if passphrase is None else encrypted_key_text(key, passphrase)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise KeyFileError(f"cannot write {path}: {exc.strerror}") from None


def read_key_file(path: Path, passphrase: PassphraseSource | None = None) -> Keypair:
    """Load and check a key file; every failure is a KeyFileError with a one-line reason.
    An encrypted file's passphrase comes from ``passphrase`` (default: the environment, else
    a prompt on a terminal: :func:`passphrase_from_environment`)."""
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
    if f'"{ENCRYPTED_KIND}"' in text:
        source = passphrase_from_environment if passphrase is None else passphrase
        return parse_encrypted_key_text(text, str(path), lambda: source(path))
    return parse_key_text(text, str(path))


def private_file_text(path: Path, what: str) -> str:
    """The text of a small file that must be private (mode 0600), like a key file."""
    try:
        st = path.stat()
        if stat.S_IMODE(st.st_mode) & 0o077:
            raise KeyFileError(f"{what} {path} must be private (chmod 600 {path})")
        if st.st_size > KEY_FILE_MAX_BYTES:
            raise KeyFileError(f"{what} {path} is too large ({st.st_size} bytes)")
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read {what} {path}: {exc}") from None


def passphrase_from_environment(
    path: Path, environ: Mapping[str, str] | None = None, prompt: bool = True
) -> bytes:
    """The passphrase of key file ``path``: ``$PERPBFT_KEY_PASSPHRASE``, else the first line of
    the file ``$PERPBFT_KEY_PASSPHRASE_FILE`` names, else typed at a terminal prompt."""
    env = os.environ if environ is None else environ
    if env.get(PASSPHRASE_ENV):
        return env[PASSPHRASE_ENV].encode("utf-8")
    if env.get(PASSPHRASE_FILE_ENV):
        text = private_file_text(Path(env[PASSPHRASE_FILE_ENV]), "passphrase file")
        return text.splitlines()[0].encode("utf-8") if text else b""
    if prompt and sys.stdin.isatty():
        return getpass.getpass(f"passphrase of {path}: ").encode("utf-8")
    raise KeyFileError(
        f"key file {path} is encrypted: set ${PASSPHRASE_FILE_ENV} (or ${PASSPHRASE_ENV}), "
        "or run on a terminal to be asked"
    )


def parse_encrypted_key_text(text: str, where: str, passphrase: Callable[[], bytes]) -> Keypair:
    try:
        body = json.loads(text)
        public = bytes.fromhex(body["public_key"])
        kdf = body["kdf"]
        n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
        salt = bytes.fromhex(kdf["salt"])
        nonce = bytes.fromhex(body["nonce"])
        sealed = bytes.fromhex(body["ciphertext"])
        ok = kdf["name"] == "scrypt" and body["cipher"] == "chacha20-poly1305"
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyFileError(f"key file {where} is corrupt: {exc}") from None
    bounded = 2 <= n <= SCRYPT_N_MAX and n & (n - 1) == 0 and 1 <= r <= SCRYPT_R_MAX
    if not ok or not bounded or not 1 <= p <= SCRYPT_P_MAX or len(nonce) != NONCE_BYTES:
        raise KeyFileError(f"key file {where}: unsupported or out-of-bounds encryption settings")
    secret = passphrase()
    check_passphrase(secret)
    try:
        seed = ChaCha20Poly1305(_derive(secret, salt, n, r, p)).decrypt(
            nonce, sealed, _aad(public)
        )
    except InvalidTag:
        wrong = f"key file {where}: wrong passphrase (or the file was altered)"
        raise KeyFileError(wrong) from None
    key = Keypair(seed)
    if key.public_key != public:
        raise KeyFileError(f"key file {where} is corrupt: public_key does not match the seed")
    return key


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
