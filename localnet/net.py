"""A localnet: N validators, their oracle feeders and demo traffic as background processes.

Layout of a localnet home (default ``$PERPBFT_LOCALNET_HOME``, else ``~/.perpbft-localnet``)::

    net/            the testnet (node homes, genesis.json, testnet.json, keys/demo*.json)
    keys/           maker.json, taker.json, counterparty.json (funded in genesis, used by the
                    demo bots), lev0.json.. (the leveraged accounts, LEVERAGED_USDC each)
    run/NAME.pid    one per background process: node0.., oracle0.., maker, taker, leverage, anvil
    logs/NAME.log   their output
    evm/            the EVM chain of the bridge, when anvil is installed (localnet/evm.py)
    oracle_control.json   the feeders' price shift (``perpbft localnet oracle``)

``up`` writes a fresh testnet if there is none (or with ``fresh``), else reuses it and its
chain data; starts the validators, waits until every one has committed blocks, then starts a
feeder per validator and the bots.

Staking is on (:data:`LOCALNET_STAKING`): epochs of 20 blocks (10 s at the default block
interval), each genesis validator a self-stake of 1,000 USDC. ``join`` adds validators that
are not in genesis (``nodeN..``, after any full nodes): each starts as a non-voting node with
its own key and funds, and ``up`` has it send a create-validator transaction with
:data:`JOIN_STAKE_USDC` of self-stake once the network commits. Its stake enters the active set
computed at the next epoch end, which votes from the epoch after that (20 to 40 blocks).

Nothing is held by the ``up`` process: everything runs in the background until ``down``.
Node API ports are ``base_port + 10*i + 1``; the default base port puts node0's API on 26657,
the command line's default ``--node``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from client.staking_tx import create_validator_tx
from localnet import leverage
from localnet.evm import BridgeInfo, EvmUnavailable, LocalEvm
from localnet.procs import Procs
from node.config import BridgeSettings, HomeError
from node.keys import generate_keypair, read_key_file, write_key_file
from node.testnet import DEFAULT_BASE_PORT as TESTNET_BASE_PORT
from node.testnet import write_testnet
from state_machine.bridge.params import BridgeParams
from state_machine.genesis import USDC, USDC_ASSET_ID, Parameters
from state_machine.staking.genesis import StakingGenesis

HOME_ENV = "PERPBFT_LOCALNET_HOME"
DEFAULT_BASE_PORT = TESTNET_BASE_PORT  # the same network layout as `perpbft testnet`
CHAIN_ID = "perpbft-localnet"
BOT_KEYS = ("maker", "taker")
# The localnet's insurance fund: enough for the vault to take some of the leveraged demo
# accounts over (the rest goes to ADL), little enough that a crash shows its loss limit.
INSURANCE_FUND_USDC = 50_000
COMMIT_HEIGHT_MIN = 2
STARTUP_TIMEOUT_S = 90.0
# Short epochs so a join is visible within a minute; a jailed validator may ask back after 4.
LOCALNET_STAKING = StakingGenesis(
    epoch_length_blocks=20,
    min_self_stake_atoms=1_000 * USDC,
    unbonding_blocks=200,
    jail_blocks=80,
)
JOIN_STAKE_USDC = 1_000
# anvil mines a block a second: two confirmations credit a deposit in about 3 s.
LOCALNET_CONFIRMATIONS = 2
JOIN_TIMEOUT_S = 40.0
NOT_STARTED = "not started"

Progress = Callable[[str, float], None]  # (what is happening, fraction done 0..1)


class LocalnetError(Exception):
    """A localnet that cannot be brought up or used; the message says why in one line."""


def default_home() -> Path:
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".perpbft-localnet")


@dataclasses.dataclass(frozen=True, slots=True)
class UpOptions:
    validators: int = 4
    block_ms: int = 500
    base_port: int = DEFAULT_BASE_PORT
    demo_accounts: int = 4
    fresh: bool = False
    oracle: bool = True
    traffic: bool = True
    extra_funded: Sequence[bytes] = ()
    oracle_source: str | None = None
    full_nodes: int = 0  # full nodes after the validators (nodes N..), following them
    join: int = 0  # validators that join by staking (after the full nodes)
    bridge: bool = True  # anvil with the bridge deployed, when anvil is installed


class Localnet:
    def __init__(self, home: Path) -> None:
        self.home = home.expanduser().resolve()
        self.net = self.home / "net"
        self.procs = Procs(self.home)
        self.evm = LocalEvm(self.home)
        # The bridge's EVM chain after up: its contracts, or why the localnet runs without it.
        self.bridge: BridgeInfo | str = NOT_STARTED

    # ---- layout ------------------------------------------------------------------------------

    def exists(self) -> bool:
        return (self.net / "testnet.json").exists()

    def layout(self) -> dict[str, Any]:
        try:
            body: dict[str, Any] = json.loads((self.net / "testnet.json").read_text())
        except (OSError, ValueError):
            raise LocalnetError(
                f"no localnet in {self.home} (run: perpbft localnet up --home {self.home})"
            ) from None
        return body

    def node_names(self) -> list[str]:
        return [f"node{i}" for i in range(len(self.layout()["nodes"]))]

    def api_urls(self) -> list[str]:
        return [str(n["api"]) for n in self.layout()["nodes"]]

    def genesis_path(self) -> Path:
        return self.net / "genesis.json"

    # ---- up ----------------------------------------------------------------------------------

    def write(self, opts: UpOptions) -> None:
        if self.running():
            raise LocalnetError("the localnet is running; stop it first (perpbft localnet down)")
        if self.home.exists() and (opts.fresh or not self.exists()):
            # A fresh start, or the leftovers of a write that did not finish.
            for sub in ("net", "keys", "run", "logs", "evm"):
                shutil.rmtree(self.home / sub, ignore_errors=True)
            (self.home / "oracle_control.json").unlink(missing_ok=True)
        self.home.mkdir(parents=True, exist_ok=True)
        keys_dir = self.home / "keys"
        keys_dir.mkdir(mode=0o700, exist_ok=True)
        bot_pubkeys = [self.new_key(name) for name in (*BOT_KEYS, leverage.COUNTERPARTY)]
        leveraged = [
            (self.new_key(name), USDC_ASSET_ID, leverage.LEVERAGED_USDC * USDC)
            for name in leverage.key_names()
        ]
        # Before the genesis: the bridge contract's address and the validators' bridge keys
        # belong in it.
        self.bridge = self.deploy_bridge(opts)
        try:
            write_testnet(
                self.net,
                opts.validators,
                chain_id=CHAIN_ID,
                base_port=opts.base_port,
                demo_accounts=opts.demo_accounts,
                block_interval_ms=opts.block_ms,
                extra_funded=[*bot_pubkeys, *opts.extra_funded],
                extra_balances=leveraged,
                parameters=Parameters(insurance_fund_atoms=INSURANCE_FUND_USDC * USDC),
                full_nodes=opts.full_nodes,
                staking=LOCALNET_STAKING,
                joiners=opts.join,
                **self.bridge_sections(opts.validators),
            )
        except HomeError as exc:
            raise LocalnetError(str(exc)) from None

    def bridge_sections(self, validators: int) -> dict[str, Any]:
        """With a deployed bridge: the genesis bridge section (its contract, the validators'
        bridge keys) and each validator's ``[bridge]`` duties (anvil's URL, its key file in
        evm/, the block the contract was deployed in). Without one: nothing."""
        info = self.bridge
        if not isinstance(info, BridgeInfo):
            return {}
        params = BridgeParams(info.chain_id, bytes.fromhex(info.bridge[2:]), LOCALNET_CONFIRMATIONS)
        service = [
            BridgeSettings(
                rpc_url=info.rpc_url,
                key_file=str(self.evm.dir / f"validator{i}.key"),
                start_block=info.start_block,
            )
            for i in range(validators)
        ]
        addresses = [bytes.fromhex(a[2:]) for a in self.evm.validator_addresses(validators)]
        return {"bridge": params, "bridge_addresses": addresses, "bridge_service": service}

    def new_key(self, name: str) -> bytes:
        """A fresh key file ``keys/NAME.json`` (its nonce file removed); its public key."""
        key = generate_keypair()
        keys_dir = self.home / "keys"
        write_key_file(keys_dir / f"{name}.json", key, force=True)
        (keys_dir / f"{name}.json.nonce").unlink(missing_ok=True)
        return key.public_key

    def check_reuse(self, opts: UpOptions) -> None:
        roles = [str(n.get("role", "validator")) for n in self.layout()["nodes"]]
        count = roles.count("validator")
        if count != opts.validators or roles.count("joiner") != opts.join:
            raise LocalnetError(
                f"the localnet in {self.home} has {count} validators and "
                f"{roles.count('joiner')} joining ones, not {opts.validators} and {opts.join}; "
                "use --fresh to write a new one"
            )

    def up(self, opts: UpOptions, progress: Progress) -> None:
        if self.exists() and not opts.fresh:
            self.check_reuse(opts)
            progress(f"reusing the localnet in {self.home}", 0.05)
        else:
            progress(f"writing a {opts.validators}-validator testnet in {self.home}", 0.0)
            self.write(opts)
        self.check_ports_free()
        self.bridge = self.bridge_up(opts)
        progress(f"bridge: {self.bridge_summary()}", 0.08)
        names = self.node_names()
        for i, name in enumerate(names):
            if not self.procs.alive(name):
                home = self.layout()["nodes"][i]["home"]
                self.procs.start(name, ["-m", "cli.main", "start", "--home", home])
        progress("validators starting", 0.1)
        self.wait_committed(progress)
        for i, node in enumerate(self.layout()["nodes"]):
            if node.get("role") == "joiner":
                progress(f"node{i} stakes {JOIN_STAKE_USDC} USDC to join", 0.9)
                self.join_by_staking(i)
        if opts.oracle:
            for i in range(len(names)):
                argv = ["-m", "localnet.oracle", "--home", str(self.home), "--index", str(i)]
                if opts.oracle_source:
                    argv += ["--source", opts.oracle_source]
                self.start_once(f"oracle{i}", argv)
        if opts.traffic:
            for seed, role in enumerate(BOT_KEYS, start=1):
                argv = ["-m", "localnet.traffic", "--home", str(self.home), "--role", role]
                self.start_once(role, [*argv, "--node", str(seed), "--seed", str(seed)])
            if (self.home / "keys" / f"{leverage.COUNTERPARTY}.json").exists():
                argv = ["-m", "localnet.leverage", "--home", str(self.home), "--node", "3"]
                self.start_once("leverage", argv)
        progress("up", 1.0)

    def join_by_staking(self, index: int) -> None:
        """Node ``index`` registers as a validator operating its own node key, with its p2p
        address and JOIN_STAKE_USDC of self-stake (once: a second up finds it registered)."""
        node = self.layout()["nodes"][index]
        key = read_key_file(Path(node["home"]) / "config" / "node_key.json")
        tx = create_validator_tx(
            key,
            CHAIN_ID,
            int(time.time() * 1000),
            p2p_address=str(node["p2p"]),
            self_stake_atoms=JOIN_STAKE_USDC * USDC,
        )
        with httpx.Client(timeout=JOIN_TIMEOUT_S + 5) as http:
            try:
                r = http.post(
                    str(node["api"]) + "/v1/txs",
                    content=tx.to_wire(),
                    params={"wait": "commit", "timeout_s": JOIN_TIMEOUT_S},
                    headers={"content-type": "application/msgpack"},
                )
                body = r.json()
            except (httpx.HTTPError, ValueError) as exc:
                raise LocalnetError(f"node{index} could not send its stake: {exc}") from None
        codes = [a.get("code") for a in body.get("results", [])] if r.status_code == 200 else []
        if codes not in (["ok"], ["validator_exists"]):
            raise LocalnetError(f"node{index}'s create-validator was refused: {body}")
    def deploy_bridge(self, opts: UpOptions) -> BridgeInfo | str:
        if not opts.bridge:
            return "turned off (--no-bridge)"
        try:
            return self.evm.ensure_deployed(self.evm.start(self.procs, opts.base_port),
                                            opts.validators)
        except EvmUnavailable as exc:
            return str(exc)

    def bridge_up(self, opts: UpOptions) -> BridgeInfo | str:
        """anvil running, the contracts deployed and the demo wallets funded, or why not."""
        if not opts.bridge:
            return "turned off (--no-bridge)"
        if self.evm.info() is None:  # no contract in the genesis: none can be added now
            if isinstance(self.bridge, str) and self.bridge != NOT_STARTED:
                return self.bridge  # why the write just now deployed none
            return "this localnet was written without a bridge (use --fresh with anvil installed)"
        count = len(self.layout()["nodes"])
        accounts = [self.demo_address(i) for i in range(len(self.demo_keys()))]
        try:
            return self.evm.up(self.procs, opts.base_port, count, accounts)
        except EvmUnavailable as exc:
            return str(exc)

    def bridge_summary(self) -> str:
        if isinstance(self.bridge, BridgeInfo):
            return f"bridge {self.bridge.bridge} on {self.bridge.rpc_url}"
        return f"off: {self.bridge}"

    def start_once(self, name: str, argv: list[str]) -> None:
        if not self.procs.alive(name):
            self.procs.start(name, argv)

    def check_ports_free(self) -> None:
        import socket

        for i, node in enumerate(self.layout()["nodes"]):
            if self.procs.alive(f"node{i}"):
                continue
            host, port = str(node["p2p"]).rsplit(":", 1)
            for p in (int(port), int(port) + 1, int(port) + 2):
                with socket.socket() as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    try:
                        s.bind((host, p))
                    except OSError:
                        raise LocalnetError(
                            f"port {p} of node{i} is in use; stop what uses it, or write a "
                            "new localnet with --fresh --base-port P"
                        ) from None

    def wait_committed(self, progress: Progress, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        """Until every validator has committed COMMIT_HEIGHT_MIN blocks (or one died)."""
        deadline = time.monotonic() + timeout_s
        names = self.node_names()
        with httpx.Client(timeout=2.0) as http:
            while True:
                heights = [self.node_height(http, url) for url in self.api_urls()]
                done = sum(1 for h in heights if h >= COMMIT_HEIGHT_MIN)
                progress(
                    f"waiting for commits: heights {['-' if h < 0 else h for h in heights]}",
                    0.1 + 0.8 * done / len(heights),
                )
                if done == len(heights):
                    return
                for name in names:
                    if not self.procs.alive(name):
                        tail = "\n".join(self.procs.tail(name, 15))
                        raise LocalnetError(
                            f"{name} exited during startup (if the code changed since this "
                            f"localnet was written, start a new one with --fresh); "
                            f"its log ends:\n{tail}"
                        )
                if time.monotonic() > deadline:
                    raise LocalnetError(
                        f"validators did not commit within {timeout_s:.0f} s (heights {heights}); "
                        f"see perpbft localnet logs --home {self.home}"
                    )
                time.sleep(0.25)

    @staticmethod
    def node_height(http: httpx.Client, url: str) -> int:
        try:
            r = http.get(url + "/v1/status")
            return int(r.json()["height"]) if r.status_code == 200 else -1
        except (httpx.HTTPError, ValueError, KeyError):
            return -1

    # ---- down, status ------------------------------------------------------------------------

    def running(self) -> list[str]:
        return [n for n in self.procs.names() if self.procs.alive(n)]

    def down(self) -> list[str]:
        """Stop the bots and feeders first (so they do not log errors about dead nodes)."""
        names = self.procs.names()
        helpers = [n for n in names if not n.startswith("node") and n != "anvil"]
        stopped = self.procs.stop(helpers, grace_s=3.0)
        stopped += self.procs.stop([n for n in names if n.startswith("node")])
        return stopped + self.procs.stop([n for n in names if n == "anvil"])

    def status(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        layout = self.layout()
        with httpx.Client(timeout=2.0) as http:
            for i, node in enumerate(layout["nodes"]):
                name = f"node{i}"
                row: dict[str, Any] = {
                    "name": name,
                    "pid": self.procs.pid(name),
                    "api": node["api"],
                    "height": None,
                    "view": None,
                    "peers": None,
                    "mempool_txs": None,
                    "ready": False,
                }
                try:
                    body = http.get(node["api"] + "/v1/status").json()
                    row.update(
                        height=body["height"],
                        view=body["view"],
                        peers=len(body["peers"]),
                        mempool_txs=body["mempool"]["txs"],
                        ready=body["ready"],
                    )
                except (httpx.HTTPError, ValueError, KeyError, TypeError):
                    pass
                rows.append(row)
        return rows

    def helpers_status(self) -> dict[str, int | None]:
        names = [n for n in self.procs.names() if not n.startswith("node")]
        return {n: self.procs.pid(n) for n in names}

    def demo_keys(self) -> list[str]:
        return [str(p) for p in self.layout()["demo_keys"]]

    def demo_address(self, index: int) -> str:
        return read_key_file(Path(self.demo_keys()[index])).public_key.hex()
