"""The localnet's EVM chain: Foundry's ``anvil`` beside the validators, with the bridge
contract deployed for the validators' bridge keys and demo wallets funded (docs/BRIDGE.md).

Layout under the localnet home::

    evm/deployer.key        secp256k1 key (hex) that deployed the token and the bridge
    evm/validatorI.key      validator I's bridge key (hex, mode 0600)
    evm/bridge.json         rpc_url, chain_id, token, bridge, dispute_period_s, start_block
    evm/wallets.json        demo wallets: EVM key and address, and the perpbft account they fund
    evm/anvil-state.json    anvil's state, dumped every few seconds and on exit, loaded on start
    run/anvil.pid, logs/anvil.log

Addresses are deterministic: a contract's address depends only on its deployer and the
deployer's nonce, so deploying token then bridge with the same deployer key on an empty chain
gives the same addresses again. If anvil's state is lost, ``ensure_deployed`` redeploys to the
same addresses and the localnet's genesis stays valid (deposits made before are gone on the EVM
side; a localnet only).

anvil comes from the npm package ``@foundry-rs/anvil-linux-amd64`` (``make anvil`` installs it
into ``.tools/``); ``PERPBFT_ANVIL`` or ``anvil`` on PATH also work. Without it the localnet
starts without the bridge and says why.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from eth_utils.address import to_checksum_address
from web3 import Web3

from evm import chain, voucher
from localnet.procs import Procs

ANVIL_ENV = "PERPBFT_ANVIL"
ANVIL_VERSION = "1.7.1"  # the Makefile's ANVIL_VERSION
REPO_ANVIL = Path(__file__).resolve().parents[1] / ".tools" / "node_modules" / ".bin" / "anvil"
EVM_CHAIN_ID = 31337  # anvil's default, which wallets know as a development chain
PORT_OFFSET = 9  # anvil listens on base_port + 9, a port no node uses
BLOCK_TIME_S = 1  # interval mining: confirmations grow even when nobody transacts
STATE_INTERVAL_S = 5
DISPUTE_PERIOD_S = 30  # short, so a localnet withdrawal pays out within a minute
DEMO_TOKENS_ATOMS = 1_000_000 * 10**6  # 1 million test USD per demo wallet
DEMO_ETH_WEI = 100 * 10**18
VALIDATOR_ETH_WEI = 10 * 10**18  # gas for freeze, attestations are perpbft transactions
START_TIMEOUT_S = 20.0


class EvmUnavailable(Exception):
    """The localnet runs without the bridge; the message says why in one line."""


@dataclass(frozen=True)
class BridgeInfo:
    rpc_url: str
    chain_id: int
    token: str
    bridge: str
    dispute_period_s: int
    start_block: int


@dataclass(frozen=True)
class DemoWallet:
    name: str
    evm_address: str
    evm_key: str  # hex
    account: str  # perpbft account (public key hex) its deposits credit by default


def anvil_path() -> str | None:
    for candidate in (os.environ.get(ANVIL_ENV, ""), str(REPO_ANVIL), "anvil"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


def missing_reason() -> str:
    return (f"anvil not found (run `make anvil`, or set {ANVIL_ENV}); "
            "the localnet runs without the bridge")


def rpc_url(base_port: int) -> str:
    return f"http://127.0.0.1:{base_port + PORT_OFFSET}"


def anvil_argv(anvil: str, port: int, state_path: Path) -> list[str]:
    return [
        anvil, "--host", "127.0.0.1", "--port", str(port), "--chain-id", str(EVM_CHAIN_ID),
        "--block-time", str(BLOCK_TIME_S), "--state", str(state_path),
        "--state-interval", str(STATE_INTERVAL_S),
    ]


def wait_ready(url: str, timeout_s: float = START_TIMEOUT_S) -> Web3:
    """Until the node answers eth_chainId; raises EvmUnavailable on timeout."""
    w3 = chain.connect(url, timeout_s=2.0)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if int(w3.eth.chain_id) > 0:
                return w3
        except Exception:  # connection refused while it starts; anything else shows on timeout
            if time.monotonic() > deadline:
                raise EvmUnavailable(
                    f"no EVM node answered at {url} within {timeout_s:.0f} s") from None
        time.sleep(0.2)


def set_balance(w3: Web3, address: str, wei: int) -> None:
    """anvil's cheat code: give an account ETH without a funded faucet key."""
    w3.provider.make_request("anvil_setBalance", [to_checksum_address(address), hex(wei)])  # type: ignore[arg-type]


class LocalEvm:
    """The EVM side of one localnet home."""

    def __init__(self, home: Path) -> None:
        self.dir = home / "evm"

    # ---- keys ----

    def key(self, name: str) -> bytes:
        """The key ``evm/NAME.key``, created on first use."""
        path = self.dir / f"{name}.key"
        if not path.exists():
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(voucher.new_private_key().hex() + "\n")
        return bytes.fromhex(path.read_text().strip())

    def validator_keys(self, count: int) -> list[bytes]:
        return [self.key(f"validator{i}") for i in range(count)]

    def validator_addresses(self, count: int) -> list[str]:
        return [voucher.key_address(k) for k in self.validator_keys(count)]

    # ---- records ----

    def info(self) -> BridgeInfo | None:
        try:
            return BridgeInfo(**json.loads((self.dir / "bridge.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def wallets(self) -> list[DemoWallet]:
        try:
            rows = json.loads((self.dir / "wallets.json").read_text())
        except (OSError, ValueError):
            return []
        return [DemoWallet(**row) for row in rows]

    def _write(self, name: str, body: object) -> None:
        path = self.dir / name
        path.write_text(json.dumps(body, indent=1) + "\n")
        path.chmod(0o600)  # wallets.json holds keys

    # ---- anvil ----

    def start(self, procs: Procs, base_port: int) -> Web3:
        """Start anvil (unless running) and wait until it answers; a localnet written before
        keeps the port it recorded."""
        anvil = anvil_path()
        if anvil is None:
            raise EvmUnavailable(missing_reason())
        self.dir.mkdir(parents=True, exist_ok=True)
        recorded = self.info()
        url = recorded.rpc_url if recorded is not None else rpc_url(base_port)
        if not procs.alive("anvil"):
            port = int(url.rsplit(":", 1)[1])
            argv = anvil_argv(anvil, port, self.dir / "anvil-state.json")
            procs.start("anvil", argv[1:], executable=argv[0])
        try:
            return wait_ready(url)
        except EvmUnavailable:
            tail = "; ".join(procs.tail("anvil", 3))
            raise EvmUnavailable(f"anvil did not start on {url}: {tail}") from None

    def ensure_deployed(self, w3: Web3, validators: int) -> BridgeInfo:
        """The token and bridge on this chain: found at their recorded addresses, else
        deployed (a fresh chain, or anvil's state lost) with the validators' bridge keys."""
        recorded = self.info()
        if recorded is not None and w3.eth.get_code(to_checksum_address(recorded.bridge)):
            return recorded
        deployer = self.key("deployer")
        set_balance(w3, voucher.key_address(deployer), DEMO_ETH_WEI)
        start_block = int(w3.eth.block_number)
        token = chain.deploy_token(w3, deployer)
        addresses = self.validator_addresses(validators)
        bridge = chain.deploy_bridge(w3, deployer, token, addresses, [1] * validators,
                                     DISPUTE_PERIOD_S)
        for address in addresses:
            set_balance(w3, address, VALIDATOR_ETH_WEI)
        info = BridgeInfo(str(w3.provider.endpoint_uri), int(w3.eth.chain_id),  # type: ignore[attr-defined]
                          token, bridge, DISPUTE_PERIOD_S, start_block)
        if recorded is not None and (recorded.token, recorded.bridge) != (token, bridge):
            raise EvmUnavailable("redeployed contracts landed at other addresses; "
                                 "write a new localnet with --fresh")
        self._write("bridge.json", asdict(info))
        return info

    def fund_demo_wallets(self, w3: Web3, info: BridgeInfo, accounts: Sequence[str]) -> None:
        """One EVM wallet per demo account, with ETH for gas and test USD to deposit."""
        deployer = self.key("deployer")
        wallets = []
        for i, account in enumerate(accounts):
            key = self.key(f"demo{i}")
            address = voucher.key_address(key)
            set_balance(w3, address, DEMO_ETH_WEI)
            if chain.token_contract(w3, info.token).functions.balanceOf(address).call() == 0:
                chain.mint(w3, deployer, info.token, address, DEMO_TOKENS_ATOMS)
            wallets.append(DemoWallet(f"demo{i}", address, key.hex(), account))
        self._write("wallets.json", [asdict(w) for w in wallets])

    def up(self, procs: Procs, base_port: int, validators: int,
           accounts: Sequence[str]) -> BridgeInfo:
        w3 = self.start(procs, base_port)
        info = self.ensure_deployed(w3, validators)
        self.fund_demo_wallets(w3, info, accounts)
        return info
