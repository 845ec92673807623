"""`perpbft keys` and `perpbft bench verify` through the real command entry point."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import main
from node.keys import KeyFileError, read_key_file


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, timeout=120
    )


def test_keys_new_writes_private_file_and_show_prints_address(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    result = run_cli("keys", "new", "--out", str(path))
    assert result.returncode == 0, result.stderr
    address = result.stdout.strip()
    assert len(address) == 64 and int(address, 16) >= 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    shown = run_cli("keys", "show", str(path), "--json")
    assert shown.returncode == 0
    assert json.loads(shown.stdout)["address"] == address
    assert read_key_file(path).public_key.hex() == address


def test_keys_new_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    assert main(["keys", "new", "--out", str(path)]) == 0
    before = path.read_text()
    result = run_cli("keys", "new", "--out", str(path))
    assert result.returncode == 2
    assert "already exists" in result.stderr and "Traceback" not in result.stderr
    assert path.read_text() == before
    assert main(["keys", "new", "--out", str(path), "--force"]) == 0
    assert path.read_text() != before
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def valid_key_file(tmp_path: Path) -> Path:
    path = tmp_path / "k.json"
    assert main(["keys", "new", "--out", str(path)]) == 0
    return path


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("missing", "does not exist"),
        ("mode", "must be private"),
        ("garbage", "is corrupt"),
        ("truncated", "is corrupt"),
        ("wrong_public", "does not match the seed"),
        ("short_seed", "seed is 31 bytes"),
        ("binary", "not UTF-8"),
        ("directory", "not a regular file"),
    ],
)
def test_bad_key_files_give_one_line_and_exit_2(tmp_path: Path, damage: str, message: str) -> None:
    path = valid_key_file(tmp_path)
    body = json.loads(path.read_text())
    if damage == "missing":
        path.unlink()
    elif damage == "mode":
        os.chmod(path, 0o644)
    elif damage == "garbage":
        path.write_text("not json at all")
    elif damage == "truncated":
        path.write_text(path.read_text()[:30])
    elif damage == "wrong_public":
        body["public_key"] = "00" * 32
        path.write_text(json.dumps(body))
    elif damage == "short_seed":
        body["seed"] = body["seed"][:62]
        path.write_text(json.dumps(body))
    elif damage == "binary":
        path.write_bytes(b"\xff\xfe\x00")
    elif damage == "directory":
        path.unlink()
        path.mkdir()
    with pytest.raises(KeyFileError, match=message):
        read_key_file(path)
    result = run_cli("keys", "show", str(path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreadable_key_file_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Permission bits do not stop root, so the read failure is injected."""
    path = valid_key_file(tmp_path)
    capsys.readouterr()

    def refuse(self: Path, *args: object, **kwargs: object) -> str:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_text", refuse)
    with pytest.raises(KeyFileError, match=r"cannot read key file .*Permission denied"):
        read_key_file(path)
    assert main(["keys", "show", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Permission denied" in err and "Traceback" not in err


def test_bench_verify_prints_json_last_line() -> None:
    result = run_cli("bench", "verify", "--count", "400", "--keys", "5", "--threads", "2")
    assert result.returncode == 0, result.stderr
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert last["bench"] == "verify" and last["threads"] == 2
    assert last["verifies_per_s"] > 0 and last["raw_single_thread_per_s"] > 0
