"""The bridge end to end on a real EVM chain: Foundry's ``anvil`` over JSON-RPC with the bridge
contract deployed for four validators' bridge keys, and a real four-validator cluster whose
nodes run their bridge service ([bridge] rpc_url). A wallet deposits with ``perpbft deposit``
and the account is credited once the validators attested it; ``perpbft withdraw --relay``
debits the account, waits for the validators' signatures and submits the voucher; the
validators report it submitted, then finalised after the dispute period, and the wallet holds
the tokens. Skips without anvil (``make anvil``), except in CI, where it must run."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node.api.units import decimal_to_atoms
from node.bridge.keyfile import write_bridge_key
from node.config import BridgeSettings, Config
from state_machine.bridge.params import BridgeParams
from tests.cluster import Cluster

pytestmark = pytest.mark.slow
chain = pytest.importorskip("evm.chain", reason="the evm package (branch bridgeevm) is absent")
voucher = pytest.importorskip("evm.voucher", reason="the evm package is absent")

REPO = Path(__file__).resolve().parents[2]
VALIDATORS = 4
CONFIRMATIONS = 2
DISPUTE_PERIOD_S = 30
DEPOSIT_USDC = 250
WITHDRAW_USDC = 100
USDC = 10**6


def anvil_binary() -> str | None:
    for candidate in (
        os.environ.get("PERPBFT_ANVIL", ""),
        str(REPO / ".tools" / "node_modules" / ".bin" / "anvil"),
        "anvil",
    ):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


@pytest.fixture
def anvil(tmp_path: Path) -> Iterator[str]:
    """A fresh anvil mining a block a second; its JSON-RPC URL."""
    binary = anvil_binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("anvil is not installed in CI (make anvil)")
        pytest.skip("anvil is not installed (make anvil)")
    port = random.randrange(31_000, 39_000)
    log = open(tmp_path / "anvil.log", "wb")  # noqa: SIM115 - owned by the process
    proc = subprocess.Popen(
        [binary, "--host", "127.0.0.1", "--port", str(port), "--block-time", "1"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        w3 = chain.connect(url, timeout_s=2.0)
        deadline = time.monotonic() + 30
        while True:
            try:
                w3.eth.chain_id  # noqa: B018 - the probe
                break
            except Exception:
                assert time.monotonic() < deadline, (tmp_path / "anvil.log").read_text()
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def fund(w3: Any, address: str, wei: int) -> None:
    w3.provider.make_request("anvil_setBalance", [address, hex(wei)])


def new_key(path: Path) -> bytes:
    key: bytes = voucher.new_private_key()
    write_bridge_key(path, key)
    return key


def cli(net: Cluster, *argv: str) -> Any:
    """``perpbft ARGV --node node0 --json`` as a process; its JSON answer."""
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", *argv, "--node", net.api(0), "--json"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def api_get(net: Cluster, path: str, timeout_s: float = 60.0) -> Any:
    """GET from node 0, retrying while it sheds load (503 on this busy 2-core machine)."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = net.http.get(net.api(0) + path)
        if answer.status_code != 503 or time.monotonic() > deadline:
            answer.raise_for_status()
            return answer.json()
        time.sleep(float(answer.headers.get("retry-after", "0.5")))


def wait_status(net: Cluster, wid: int, status: str, timeout_s: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        w: dict[str, Any] = api_get(net, f"/v1/bridge/withdrawals/{wid}")
        if w["status"] == status:
            return w
        assert time.monotonic() < deadline, f"withdrawal {wid} stayed {w['status']}"
        time.sleep(0.3)


def test_deposit_and_withdrawal_through_anvil(tmp_path: Path, anvil: str) -> None:
    w3 = chain.connect(anvil)
    keys_dir = tmp_path / "evm"
    keys_dir.mkdir()
    deployer = new_key(keys_dir / "deployer.key")
    wallet_key = new_key(keys_dir / "wallet.key")
    wallet = voucher.key_address(wallet_key)
    bridge_keys = [new_key(keys_dir / f"validator{i}.key") for i in range(VALIDATORS)]
    addresses = [voucher.key_address(k) for k in bridge_keys]
    for address in [voucher.key_address(deployer), wallet]:
        fund(w3, address, 10**20)
    start_block = int(w3.eth.block_number)
    token = chain.deploy_token(w3, deployer)
    bridge = chain.deploy_bridge(w3, deployer, token, addresses, [1] * VALIDATORS,
                                 DISPUTE_PERIOD_S)  # fmt: skip
    chain.mint(w3, deployer, token, wallet, 1_000 * USDC)
    params = BridgeParams(int(w3.eth.chain_id), bytes.fromhex(bridge[2:]),
                          confirmations=CONFIRMATIONS, min_withdraw_atoms=USDC)  # fmt: skip

    def configure(config: Config) -> Config:
        index = int(config.home.name.removeprefix("node"))
        settings = BridgeSettings(rpc_url=anvil, key_file=str(keys_dir / f"validator{index}.key"),
                                  poll_ms=300, start_block=start_block)  # fmt: skip
        return dataclasses.replace(config, bridge=settings)

    keys = tuple(bytes.fromhex(a[2:]) for a in addresses)
    cluster = Cluster(
        tmp_path / "net", VALIDATORS, configure=configure, bridge=params, bridge_addresses=keys
    )
    with cluster as net:
        net.start_all()
        for i in range(VALIDATORS):
            net.wait_ready(i)
        demo = str(net.layout.demo_keys[0])
        account = net.demo_key(0).public_key.hex()
        before = _usdc(net, account)

        deposited = cli(net, "deposit", str(DEPOSIT_USDC), "--evm-key",
                        str(keys_dir / "wallet.key"), "--rpc", anvil, "--key", demo)  # fmt: skip
        assert deposited["status"] == "credited" and deposited["amount"] == str(DEPOSIT_USDC)
        print(f"deposit-to-credit latency: {deposited['credit_latency_s']} s "
              f"({CONFIRMATIONS} confirmations, 1 s EVM blocks)")  # fmt: skip
        assert _usdc(net, account) == before + DEPOSIT_USDC * USDC

        withdrawn = cli(net, "withdraw", str(WITHDRAW_USDC), "--to", wallet, "--relay",
                        "--evm-key", str(keys_dir / "wallet.key"), "--rpc", anvil,
                        "--key", demo)  # fmt: skip
        wid = withdrawn["relay"]["withdrawal_id"]
        assert withdrawn["relay"]["signatures"] >= 3
        assert _usdc(net, account) == before + (DEPOSIT_USDC - WITHDRAW_USDC) * USDC
        wait_status(net, wid, "submitted")
        w3.provider.make_request("evm_increaseTime", [DISPUTE_PERIOD_S + 1])
        w3.provider.make_request("evm_mine", [])
        chain.finalize_withdrawal(w3, wallet_key, bridge, wid)
        final = wait_status(net, wid, "finalised")
        assert final["signed_power"] > 2 * final["total_power"] // 3
        balance = chain.token_contract(w3, token).functions.balanceOf(wallet).call()
        assert balance == (1_000 - DEPOSIT_USDC + WITHDRAW_USDC) * USDC
        status = cli(net, "withdraw", "status", str(wid), "--rpc", anvil)
        assert status["on_contract"]["status"] == "finalised"
        assert all(s["valid"] for s in status["signatures"])
        info = api_get(net, "/v1/bridge")
        assert info["deposited"] == str(DEPOSIT_USDC) and info["withdrawn"] == str(WITHDRAW_USDC)


def _usdc(net: Cluster, account: str) -> int:
    """The account's available USDC in atoms (the API's decimal string, converted exactly)."""
    body = api_get(net, f"/v1/accounts/{account}")
    for b in body["balances"]:
        if b["asset"] == "USDC":
            return decimal_to_atoms(b["available"], 6)
    return 0
