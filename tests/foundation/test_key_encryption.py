"""Passphrase-protected key files (node/keys.py): scrypt + ChaCha20-Poly1305 from
``cryptography``, the passphrase from the environment, a file or a prompt; and the node's
refusal of a key file others can read."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cli.main import main
from node.keys import (
    KeyFileError,
    generate_keypair,
    passphrase_from_environment,
    read_key_file,
    write_key_file,
)
from node.runner import StartError, prepare
from node.testnet import write_testnet

PASS = b"correct horse battery staple"


def test_round_trip_and_the_file_holds_no_seed(tmp_path: Path) -> None:
    key = generate_keypair()
    path = tmp_path / "k.json"
    write_key_file(path, key, passphrase=PASS)
    text = path.read_text()
    assert key.seed.hex() not in text and json.loads(text)["kind"] == "ed25519-encrypted"
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert read_key_file(path, lambda _: PASS).seed == key.seed


def test_wrong_passphrase_and_tampering_fail_authentication(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    write_key_file(path, generate_keypair(), passphrase=PASS)
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        read_key_file(path, lambda _: b"guess")
    body = json.loads(path.read_text())
    for field, value in (("public_key", generate_keypair().public_key.hex()),
                         ("ciphertext", "00" + body["ciphertext"][2:])):  # fmt: skip
        path.write_text(json.dumps({**body, field: value}))
        with pytest.raises(KeyFileError, match="wrong passphrase"):
            read_key_file(path, lambda _: PASS)


def test_kdf_settings_from_the_file_are_bounded(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    write_key_file(path, generate_keypair(), passphrase=PASS)
    body = json.loads(path.read_text())
    body["kdf"]["n"] = 2**30  # 1 TiB of memory if honoured
    path.write_text(json.dumps(body))
    asked: list[Path] = []

    def source(p: Path) -> bytes:
        asked.append(p)
        return PASS

    with pytest.raises(KeyFileError, match="out-of-bounds"):
        read_key_file(path, source)
    assert asked == []  # refused before asking, before deriving


def test_passphrase_sources(tmp_path: Path) -> None:
    key_path = tmp_path / "k.json"
    assert passphrase_from_environment(key_path, {"PERPBFT_KEY_PASSPHRASE": "abc"}) == b"abc"
    secret = tmp_path / "pass"
    secret.write_text("from a file\nignored\n")
    secret.chmod(0o600)
    env = {"PERPBFT_KEY_PASSPHRASE_FILE": str(secret)}
    assert passphrase_from_environment(key_path, env) == b"from a file"
    secret.chmod(0o644)
    with pytest.raises(KeyFileError, match="must be private"):
        passphrase_from_environment(key_path, env)
    with pytest.raises(KeyFileError, match="is encrypted: set"):
        passphrase_from_environment(key_path, {}, prompt=False)


def test_cli_new_encrypted_show_and_encrypt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "pass"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    monkeypatch.setenv("PERPBFT_KEY_PASSPHRASE_FILE", str(secret))
    key_path = tmp_path / "k.json"
    assert main(["keys", "new", "--out", str(key_path), "--encrypt"]) == 0
    address = capsys.readouterr().out.strip()
    assert main(["keys", "show", str(key_path)]) == 0
    assert capsys.readouterr().out.strip() == address
    plain = tmp_path / "plain.json"
    assert main(["keys", "new", "--out", str(plain)]) == 0
    plain_address = capsys.readouterr().out.strip()
    assert main(["keys", "encrypt", str(plain)]) == 0
    assert "seed" not in json.loads(plain.read_text())
    assert read_key_file(plain, lambda _: b"s3cret").public_key.hex() == plain_address
    monkeypatch.delenv("PERPBFT_KEY_PASSPHRASE_FILE")
    assert main(["keys", "show", str(key_path)]) == 2
    assert "is encrypted" in capsys.readouterr().err


def test_node_refuses_a_readable_key_and_starts_with_an_encrypted_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = write_testnet(tmp_path / "net", 1, base_port=36_300).homes[0]
    node_key = home / "config" / "node_key.json"
    key = read_key_file(node_key)
    node_key.chmod(0o644)
    with pytest.raises(StartError, match="must be private"):
        prepare(home)
    write_key_file(node_key, key, force=True, passphrase=PASS)
    monkeypatch.setenv("PERPBFT_KEY_PASSPHRASE", PASS.decode())
    _, _, node = prepare(home)
    assert node.key.public_key == key.public_key
    monkeypatch.delenv("PERPBFT_KEY_PASSPHRASE")
    with pytest.raises(StartError, match="is encrypted"):
        prepare(home)
