"""Deposit-to-credit latency of the EVM bridge: anvil, the contract, four validators with
their bridge service, and deposits one after another.

Starts ``anvil`` (``$PERPBFT_ANVIL``, ``.tools/`` from ``make anvil``, or PATH) mining a block
every ``--evm-block-s``, deploys the test token and the bridge for four validators' bridge keys,
writes and starts a four-validator testnet whose genesis has the bridge section and whose nodes
run their bridge service, then makes ``--deposits`` deposits from one wallet. Each deposit's
latency runs from its transaction's receipt to the credit seen in ``GET /v1/bridge/deposits``
(polled every 50 ms): at least ``--confirmations`` EVM blocks, plus the validators' poll, the
commit of the attestation that crosses two thirds, and the poll here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from client.errors import CliError
from localnet.procs import Procs
from node.bridge.keyfile import write_bridge_key
from node.config import BridgeSettings
from node.testnet import write_testnet
from state_machine.bridge.params import BridgeParams

VALIDATORS = 4
REPO = Path(__file__).resolve().parents[1]
USDC = 10**6
POLL_S = 0.05
START_TIMEOUT_S = 90.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--deposits", type=int, default=5, help="deposits to time")
    parser.add_argument("--confirmations", type=int, default=2, help="EVM blocks to wait")
    parser.add_argument("--evm-block-s", type=int, default=1, help="anvil's block interval")
    parser.add_argument("--poll-ms", type=int, default=300, help="the validators' [bridge] poll")
    parser.add_argument("--base-port", type=int, default=34_200, help="first port of the nodes")


def anvil_binary() -> str:
    repo_anvil = str(REPO / ".tools" / "node_modules" / ".bin" / "anvil")
    for candidate in (os.environ.get("PERPBFT_ANVIL", ""), repo_anvil, "anvil"):
        if candidate and (found := shutil.which(candidate)):
            return found
    raise CliError("anvil is not installed (make anvil, or set $PERPBFT_ANVIL)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    if not 1 <= args.deposits <= 1_000:
        raise CliError("--deposits must be between 1 and 1000", 2)
    with tempfile.TemporaryDirectory(prefix="perpbft-bench-bridge-") as tmp:
        home = Path(tmp)
        url = f"http://127.0.0.1:{args.base_port + 9 * 10}"
        anvil = subprocess.Popen(
            [anvil_binary(), "--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1],
             "--block-time", str(args.evm_block_s)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        procs = Procs(home)
        try:
            latencies = _measure(args, home, url, procs)
        finally:
            procs.stop(procs.names())
            anvil.terminate()
            anvil.wait(timeout=10)
    latencies.sort()
    print(f"deposit-to-credit latency over {len(latencies)} deposits: "
          f"min {latencies[0]:.2f} s, median {latencies[len(latencies) // 2]:.2f} s, "
          f"max {latencies[-1]:.2f} s", flush=True)  # fmt: skip
    return {
        "bench": "bridge",
        "deposits": len(latencies),
        "confirmations": args.confirmations,
        "evm_block_s": args.evm_block_s,
        "poll_ms": args.poll_ms,
        "latency_s_min": round(latencies[0], 3),
        "latency_s_p50": round(latencies[len(latencies) // 2], 3),
        "latency_s_max": round(latencies[-1], 3),
    }


def _measure(args: argparse.Namespace, home: Path, url: str, procs: Procs) -> list[float]:
    from evm import chain, voucher  # web3: only this benchmark pays for its import

    w3 = _wait_evm(chain, url)
    keys = {name: voucher.new_private_key() for name in ("deployer", "wallet")}
    bridge_keys = [voucher.new_private_key() for _ in range(VALIDATORS)]
    for i, key in enumerate(bridge_keys):
        write_bridge_key(home / f"validator{i}.key", key)
    for key in keys.values():
        w3.provider.make_request("anvil_setBalance", [voucher.key_address(key), hex(10**20)])
    start_block = int(w3.eth.block_number)
    addresses = [voucher.key_address(k) for k in bridge_keys]
    token = chain.deploy_token(w3, keys["deployer"])
    bridge = chain.deploy_bridge(w3, keys["deployer"], token, addresses, [1] * VALIDATORS, 60)
    wallet = voucher.key_address(keys["wallet"])
    chain.mint(w3, keys["deployer"], token, wallet, args.deposits * USDC)
    params = BridgeParams(int(w3.eth.chain_id), bytes.fromhex(bridge[2:]),
                          confirmations=args.confirmations)  # fmt: skip
    api = _start_nodes(args, home, procs, params, addresses, url, start_block)
    account = bytes(range(1, 33))
    out = []
    with httpx.Client(timeout=10.0) as http:
        for _ in range(args.deposits):
            sent = chain.deposit(w3, keys["wallet"], token, bridge, account, USDC)
            mined = time.monotonic()
            _wait_credit(http, api, sent.tx_hash, chain.read_deposits, w3, bridge, sent)
            out.append(time.monotonic() - mined)
    return out


def _wait_evm(chain: Any, url: str) -> Any:
    w3 = chain.connect(url, timeout_s=2.0)
    deadline = time.monotonic() + 30
    while True:
        try:
            if int(w3.eth.chain_id) > 0:
                return w3
        except Exception:  # refused while anvil starts
            if time.monotonic() > deadline:
                raise CliError(f"anvil did not answer at {url}") from None
        time.sleep(0.2)


def _start_nodes(
    args: argparse.Namespace, home: Path, procs: Procs, params: BridgeParams,
    addresses: list[str], url: str, start_block: int,
) -> str:  # fmt: skip
    """Write and start the testnet; the API URL of node 0 once every node is ready."""
    keys = tuple(bytes.fromhex(a[2:]) for a in addresses)
    service = [
        BridgeSettings(rpc_url=url, key_file=str(home / f"validator{i}.key"),
                       poll_ms=args.poll_ms, start_block=start_block)
        for i in range(VALIDATORS)
    ]  # fmt: skip
    layout = write_testnet(home / "net", VALIDATORS, base_port=args.base_port,
                           block_interval_ms=200, bridge=params, bridge_addresses=keys,
                           bridge_service=service)  # fmt: skip
    for i, node_home in enumerate(layout.homes):
        procs.start(f"node{i}", ["-m", "cli.main", "start", "--home", str(node_home)])
    apis = [f"http://127.0.0.1:{p.api}" for p in layout.ports]
    deadline = time.monotonic() + START_TIMEOUT_S
    for api in apis:
        while not _ready(api):
            if time.monotonic() > deadline:
                raise CliError(f"the testnet did not become ready ({api})")
            time.sleep(0.2)
    return apis[0]


def _ready(api: str) -> bool:
    try:
        return httpx.get(api + "/readyz", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _wait_credit(http: httpx.Client, api: str, tx_hash: bytes, read: Any, w3: Any,
                 bridge: str, sent: Any) -> None:  # fmt: skip
    found = [d for d in read(w3, bridge, sent.block_number, sent.block_number)
             if d.tx_hash == tx_hash]  # fmt: skip
    path = f"{api}/v1/bridge/deposits/0x{tx_hash.hex()}/{found[0].log_index}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        answer = http.get(path)
        if answer.status_code == 200 and answer.json()["status"] == "credited":
            return
        time.sleep(POLL_S)
    raise CliError(f"deposit {tx_hash.hex()} not credited within 120 s")
