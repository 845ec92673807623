"""The remote signer (node/signer.py): its double-sign guard, and a real `perpbft signer`
process serving a node's client over a real Unix socket."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from consensus.signing import SigningFailed
from consensus.types import (
    PRECOMMIT,
    PREPARE,
    newview_digest_signing_bytes,
    proposal_signing_bytes,
    vote_signing_bytes,
)
from node.config import Config, SignerSettings
from node.keys import write_key_file
from node.runner import StartError, connect_signer
from node.signer import RemoteSigner, SignerCore, SignRefused, parse_sign_request
from p2p.tls import make_tls_contexts
from state_machine.crypto import Keypair, verify

CHAIN = "signer-test"
KEY = Keypair(bytes(range(32)))
BLOCK_A = b"\xaa" * 32
BLOCK_B = b"\xbb" * 32


def vote(view: int, block: bytes, phase: int = PREPARE) -> bytes:
    return vote_signing_bytes(CHAIN, phase, view, 5, block)


def refusal_code(core: SignerCore, message: bytes) -> str:
    with pytest.raises(SignRefused) as info:
        core.sign(message)
    return info.value.code


def test_a_second_vote_in_the_same_view_and_phase_for_another_block_is_refused(
    tmp_path: Path,
) -> None:
    core = SignerCore(KEY, CHAIN, tmp_path / "state.json")
    signature = core.sign(vote(7, BLOCK_A))
    assert verify(KEY.public_key, vote(7, BLOCK_A), signature)
    assert refusal_code(core, vote(7, BLOCK_B)) == "double_sign"
    # The same vote again (a node that crashed before sending it) is signed again.
    assert core.sign(vote(7, BLOCK_A)) == signature
    # Another phase of the same view is another slot.
    core.sign(vote(7, BLOCK_B, PRECOMMIT))
    assert refusal_code(core, vote(6, BLOCK_A)) == "regression"
    core.sign(vote(8, BLOCK_B))


def test_proposals_are_guarded_and_newviews_only_move_forward(tmp_path: Path) -> None:
    core = SignerCore(KEY, CHAIN, tmp_path / "state.json")
    core.sign(proposal_signing_bytes(CHAIN, 4, BLOCK_A))
    assert refusal_code(core, proposal_signing_bytes(CHAIN, 4, BLOCK_B)) == "double_sign"
    core.sign(newview_digest_signing_bytes(CHAIN, 9, BLOCK_A))
    core.sign(newview_digest_signing_bytes(CHAIN, 9, BLOCK_B))  # a newer high QC, same view
    assert refusal_code(core, newview_digest_signing_bytes(CHAIN, 8, BLOCK_A)) == "regression"


def test_the_guard_survives_a_signer_restart(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    SignerCore(KEY, CHAIN, state).sign(vote(3, BLOCK_A))
    assert oct(state.stat().st_mode & 0o777) == "0o600"
    assert refusal_code(SignerCore(KEY, CHAIN, state), vote(3, BLOCK_B)) == "double_sign"
    with pytest.raises(ValueError, match="another chain"):
        SignerCore(KEY, "other-chain", state)
    state.write_text('{"version": 1, "chain_id": "signer-test", "last": {"vote/1": [3]}}')
    with pytest.raises(ValueError, match="malformed"):
        SignerCore(KEY, CHAIN, state)


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (vote_signing_bytes("other-chain", PREPARE, 1, 1, BLOCK_A), "wrong_chain"),
        (b"perpbft/block/v1\x00" + CHAIN.encode() + b"\x00\x90", "bad_request"),
        (b"arbitrary bytes to sign", "bad_request"),
        (vote_signing_bytes(CHAIN, PREPARE, 1, 1, b"short"), "bad_request"),
        (vote_signing_bytes(CHAIN, PREPARE, 1, 1, BLOCK_A) + b"\x00", "bad_request"),
    ],
)
def test_anything_but_a_consensus_message_of_this_chain_is_refused(
    tmp_path: Path, message: bytes, code: str
) -> None:
    core = SignerCore(KEY, CHAIN, tmp_path / "state.json")
    assert refusal_code(core, message) == code
    assert not (tmp_path / "state.json").exists()  # nothing recorded


def test_a_vote_request_parses_to_its_slot() -> None:
    request = parse_sign_request(CHAIN, vote(12, BLOCK_A, PRECOMMIT))
    assert (request.kind, request.phase, request.view, request.block) == (
        "vote",
        PRECOMMIT,
        12,
        BLOCK_A,
    )


def start_signer(tmp_path: Path, socket_file: Path) -> subprocess.Popen[str]:
    key_file = tmp_path / "validator.json"
    if not key_file.exists():
        write_key_file(key_file, KEY)
    process = subprocess.Popen(
        [
            sys.executable, "-m", "cli.main", "signer",
            "--key", str(key_file),
            "--chain-id", CHAIN,
            "--listen", f"unix://{socket_file}",
            "--state", str(tmp_path / "signer-state.json"),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while not socket_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"signer did not start: {process.stderr.read()}")  # type: ignore[union-attr]
        time.sleep(0.05)
    return process


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # A Unix socket path is limited to 107 bytes: pytest's tmp_path can be longer.
    import tempfile

    with tempfile.TemporaryDirectory(prefix="sgn") as d:
        os.chmod(d, 0o700)
        yield Path(d)


@pytest.mark.slow
def test_a_signer_process_signs_over_a_unix_socket_and_refuses_a_double_sign(
    tmp_path: Path, socket_dir: Path
) -> None:
    socket_file = socket_dir / "signer.sock"
    process = start_signer(tmp_path, socket_file)
    try:
        assert oct(socket_file.stat().st_mode & 0o777) == "0o600"
        client = RemoteSigner(f"unix://{socket_file}", timeout_ms=2_000)
        assert client.public_key == KEY.public_key
        assert verify(KEY.public_key, vote(2, BLOCK_A), client.sign(vote(2, BLOCK_A)))
        with pytest.raises(SigningFailed, match="double_sign"):
            client.sign(vote(2, BLOCK_B))
        assert client.refusals == 1

        # Signer down: a bounded failure, not a hang; the guard survives its restart.
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        with pytest.raises(SigningFailed, match="unavailable"):
            client.sign(vote(3, BLOCK_A))
        process = start_signer(tmp_path, socket_file)
        with pytest.raises(SigningFailed, match="double_sign"):
            client.sign(vote(2, BLOCK_B))
        client.sign(vote(3, BLOCK_B))
        client.close()
    finally:
        process.kill()
        process.wait(timeout=10)


def test_a_hung_signer_fails_the_signature_within_the_timeout(socket_dir: Path) -> None:
    # A signer that accepts the connection and then never answers.
    path = socket_dir / "hung.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    try:
        with pytest.raises(SigningFailed, match="unavailable"):
            RemoteSigner(f"unix://{path}", timeout_ms=200)
    finally:
        listener.close()


@pytest.mark.slow
def test_the_node_refuses_a_signer_holding_another_key(tmp_path: Path, socket_dir: Path) -> None:
    socket_file = socket_dir / "signer.sock"
    process = start_signer(tmp_path, socket_file)
    try:
        config = Config(home=tmp_path, signer=SignerSettings(address=f"unix://{socket_file}"))
        with pytest.raises(StartError, match="holds key"):
            connect_signer(config, Keypair(b"\x01" * 32))
        signer = connect_signer(config, KEY)
        assert signer is not None and signer.public_key == KEY.public_key
        signer.close()
    finally:
        process.kill()
        process.wait(timeout=10)
    with pytest.raises(StartError, match="unavailable"):
        connect_signer(config, KEY)


def free_port() -> int:
    for _ in range(100):
        port = random.randint(31_000, 39_000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port")


@pytest.mark.slow
def test_a_signer_over_mutual_tls_serves_only_allowed_node_keys(tmp_path: Path) -> None:
    key_file = tmp_path / "validator.json"
    write_key_file(key_file, KEY)
    other = Keypair(b"\x02" * 32)
    port = free_port()
    address = f"tls://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            sys.executable, "-m", "cli.main", "signer", "--key", str(key_file),
            "--chain-id", CHAIN, "--listen", address, "--state", str(tmp_path / "state.json"),
            "--allow-node", KEY.public_key.hex(),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                client = RemoteSigner(
                    address, 2_000, make_tls_contexts(KEY.seed).client, KEY.public_key
                )
                break
            except SigningFailed:
                assert process.poll() is None and time.monotonic() < deadline, "no signer"
                time.sleep(0.1)
        assert verify(KEY.public_key, vote(2, BLOCK_A), client.sign(vote(2, BLOCK_A)))
        with pytest.raises(SigningFailed, match="double_sign"):
            client.sign(vote(2, BLOCK_B))
        client.close()
        # A node key the signer was not given is dropped after the handshake.
        with pytest.raises(SigningFailed, match="closed the connection"):
            RemoteSigner(address, 2_000, make_tls_contexts(other.seed).client, KEY.public_key)
        # A signer presenting another key than the validator key is refused by the node.
        with pytest.raises(SigningFailed, match="presented key"):
            RemoteSigner(address, 2_000, make_tls_contexts(KEY.seed).client, other.public_key)
    finally:
        process.kill()
        process.wait(timeout=10)
