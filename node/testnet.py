"""``perpbft testnet``: the homes of an N-validator network on one machine.

Writes ``OUT/node0 .. OUT/node{N-1}`` (each a full node home: config with the other validators
as peers, a node key, ``data/``), one shared ``genesis.json`` copied into every home (the
validators with voting power 1 each, the default markets, funded demo accounts), and
``OUT/keys/demo{i}.json`` (mode 0600) for the funded demo traders. Ports are
``base_port + 10 * i`` (p2p), ``+1`` (API) and ``+2`` (metrics).

``full_nodes`` adds homes ``OUT/node{N} ..`` after the validators': full nodes (``[role] mode =
"full"``) that dial every validator, and whose keys every validator accepts
(``p2p.full_nodes``). ``staking`` turns staking on in genesis (each validator's power is then
its self-stake in whole USDC: ``staking.min_self_stake_atoms`` by default); ``joiners`` adds
homes after the full nodes for validators that join later by staking: ``[role] mode =
"validator"`` but not in genesis, funded like the demo accounts, accepted by the validators
like full nodes until their stake puts them in the set. ``hosts`` gives each node
(validators first) its own host name or address: each then listens on its own address, with
the same ports on every host (the nodes are meant for separate machines or network
namespaces); without it all are on 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path

from node.config import (
    ApiSettings,
    BridgeSettings,
    Config,
    ConsensusSettings,
    HomeError,
    LogSettings,
    MetricsSettings,
    NodeSettings,
    P2PSettings,
    RoleSettings,
    init_home,
)
from node.keys import generate_keypair, write_key_file
from p2p.address import PeerAddress
from state_machine.bridge.params import BridgeKey, BridgeParams
from state_machine.genesis import Parameters, default_genesis, validate_genesis
from state_machine.governance.params import GovernanceParams
from state_machine.staking.genesis import StakingGenesis
from state_machine.staking.params import ATOMS_PER_POWER

# node0 gets p2p 26656 and API 26657: the CometBFT ports and the command line's default --node.
DEFAULT_BASE_PORT = 26_656
DEFAULT_CHAIN_ID = "perpbft-localnet"
GENESIS_FILE = "genesis.json"


@dataclasses.dataclass(frozen=True, slots=True)
class NodePorts:
    p2p: int
    api: int
    metrics: int


@dataclasses.dataclass(frozen=True, slots=True)
class TestnetLayout:
    out: Path
    chain_id: str
    homes: list[Path]
    node_ids: list[bytes]
    ports: list[NodePorts]
    demo_keys: list[Path]
    full_nodes: int = 0  # the ``full_nodes`` homes after the validators are full nodes
    hosts: tuple[str, ...] = ()  # each node's host (validators first); () = 127.0.0.1
    joiners: int = 0  # the last ``joiners`` homes: validators that join by staking

    def summary(self) -> dict[str, object]:
        return {
            "out": str(self.out),
            "chain_id": self.chain_id,
            "nodes": [
                {
                    "home": str(home),
                    "node_id": node_id.hex(),
                    "role": self.role(i),
                    "p2p": f"{_url_host(self.host(i))}:{ports.p2p}",
                    "api": f"http://{_url_host(self.host(i))}:{ports.api}",
                    "metrics": f"http://{_url_host(self.host(i))}:{ports.metrics}/metrics",
                }
                for i, (home, node_id, ports) in enumerate(
                    zip(self.homes, self.node_ids, self.ports, strict=True)
                )
            ],
            "demo_keys": [str(p) for p in self.demo_keys],
        }

    @property
    def validators(self) -> int:
        return len(self.homes) - self.full_nodes - self.joiners

    def role(self, index: int) -> str:
        if index < self.validators:
            return "validator"
        return "full" if index < self.validators + self.full_nodes else "joiner"

    def host(self, index: int) -> str:
        return self.hosts[index] if self.hosts else "127.0.0.1"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def ports_for(base_port: int, index: int) -> NodePorts:
    p2p = base_port + 10 * index
    return NodePorts(p2p, p2p + 1, p2p + 2)


def write_testnet(
    out: Path,
    validators: int,
    *,
    chain_id: str = DEFAULT_CHAIN_ID,
    base_port: int = DEFAULT_BASE_PORT,
    demo_accounts: int = 4,
    block_interval_ms: int = 500,
    genesis_time_ms: int | None = None,
    log_format: str = "json",
    force: bool = False,
    extra_funded: Sequence[bytes] = (),
    extra_balances: Sequence[tuple[bytes, int, int]] = (),
    parameters: Parameters | None = None,
    governance: GovernanceParams | None = None,
    full_nodes: int = 0,
    hosts: Sequence[str] = (),
    staking: StakingGenesis | None = None,
    joiners: int = 0,
    bridge: BridgeParams | None = None,
    bridge_addresses: Sequence[bytes] = (),
    bridge_service: Sequence[BridgeSettings] = (),
) -> TestnetLayout:
    """Write the network; ``extra_funded`` public keys are funded like the demo accounts but
    get no key file (their owner, e.g. a load generator or the localnet bots, holds the keys);
    ``extra_balances`` are explicit ``(pubkey, asset_id, amount_atoms)`` balances (the
    localnet's small leveraged accounts); ``parameters`` replace the default ones,
    ``governance`` is the genesis governance section (absent: the defaults); ``bridge``
    is the genesis bridge section, with ``bridge_addresses[i]`` as validator i's bridge key, and
    ``bridge_service[i]`` validator i's ``[bridge]`` settings (rpc_url, key_file, start_block)."""
    if not 1 <= validators <= 64:
        raise HomeError("--validators must be between 1 and 64")
    if not 0 <= full_nodes <= 64:
        raise HomeError("--full-nodes must be between 0 and 64")
    if not 0 <= joiners <= 16 or (joiners and staking is None):
        raise HomeError("--join needs staking and is at most 16")
    if hosts and len(hosts) != validators + full_nodes:
        raise HomeError(
            f"--hosts names {len(hosts)} hosts for {validators + full_nodes} nodes (one each, "
            "validators first)"
        )
    if not 1 <= demo_accounts <= 1000:
        raise HomeError("--demo-accounts must be between 1 and 1000")
    if len(extra_funded) + len(extra_balances) > 10_000:
        raise HomeError("at most 10,000 extra funded accounts")
    nodes = validators + full_nodes + joiners
    if not 1024 <= base_port <= 65_535 - 10 * (1 if hosts else nodes):
        raise HomeError("--base-port leaves no room for the nodes' ports")
    if out.exists() and any(out.iterdir()) and not force:
        raise HomeError(f"{out} is not empty (use --force to write into it)")
    out.mkdir(parents=True, exist_ok=True)
    homes = [out / f"node{i}" for i in range(nodes)]
    # On separate hosts every node has the same ports; on one host each its own block.
    ports = [ports_for(base_port, 0 if hosts else i) for i in range(nodes)]
    host_of = [hosts[i] if hosts else "127.0.0.1" for i in range(nodes)]
    node_ids: list[bytes] = []
    for i, home in enumerate(homes):
        result = init_home(home, moniker=f"node{i}", force=force)
        node_ids.append(result.node_id)
    keys_dir = out / "keys"
    keys_dir.mkdir(mode=0o700, exist_ok=True)
    demo_paths: list[Path] = []
    demo_pubkeys: list[bytes] = []
    for i in range(demo_accounts):
        path = keys_dir / f"demo{i}.json"
        key = generate_keypair()
        write_key_file(path, key, force=True)
        demo_paths.append(path)
        demo_pubkeys.append(key.public_key)
    power = 1 if staking is None else staking.min_self_stake_atoms // ATOMS_PER_POWER
    joiner_keys = node_ids[validators + full_nodes :]
    genesis = default_genesis(
        chain_id,
        [(node_id, power) for node_id in node_ids[:validators]],
        [*demo_pubkeys, *extra_funded, *joiner_keys, *extra_balances],
        genesis_time_ms=genesis_time_ms if genesis_time_ms is not None else int(time.time() * 1000),
        parameters=parameters,
        staking=staking,
    )
    if governance is not None:
        genesis = dataclasses.replace(genesis, governance=governance)
    if bridge is not None:
        keys = tuple(BridgeKey(node_ids[i], a) for i, a in enumerate(bridge_addresses))
        genesis = dataclasses.replace(genesis, bridge=dataclasses.replace(bridge, bridge_keys=keys))
        validate_genesis(genesis)
    genesis_text = genesis.to_json()
    (out / GENESIS_FILE).write_text(genesis_text)
    # Full nodes and joiners (until their stake puts them in the set) connect as full nodes.
    full_node_keys = tuple(node_id.hex() for node_id in node_ids[validators:])
    for i, home in enumerate(homes):
        # Everyone dials the validators; validators accept the full nodes' keys.
        peers = tuple(
            str(PeerAddress(node_ids[j], host_of[j], ports[j].p2p))
            for j in range(validators)
            if j != i
        )
        full = validators <= i < validators + full_nodes
        host = _url_host(host_of[i])
        config = Config(
            home=home,
            node=NodeSettings(moniker=f"node{i}", genesis_file=f"config/{GENESIS_FILE}"),
            p2p=P2PSettings(
                listen=f"{host}:{ports[i].p2p}",
                peers=peers,
                full_nodes=() if full or i >= validators else full_node_keys,
            ),
            # One load generator on loopback is every client of a localnet: the per-address
            # limits are lifted (the totals and load shedding stay).
            api=ApiSettings(
                listen=f"{host}:{ports[i].api}",
                client_rate_per_s=1_000_000,
                client_burst=1_000_000,
                connections_per_client_max=ApiSettings().connections_max,
                websocket_connections_per_client_max=ApiSettings().websocket_connections_max,
                # The page at any node's /app may point at any other node of the testnet
                # (nodes on separate hosts may share a port: each origin is listed once).
                cors_allowed_origins=tuple(
                    dict.fromkeys(
                        f"http://{_url_host(host_of[j])}:{p.api}" for j, p in enumerate(ports)
                    )
                ),
            ),
            metrics=MetricsSettings(listen=f"{host}:{ports[i].metrics}"),
            consensus=ConsensusSettings(block_interval_ms=block_interval_ms),
            log=LogSettings(format=log_format),
            role=RoleSettings(mode="full" if full else "validator"),
            bridge=bridge_service[i] if i < len(bridge_service) else BridgeSettings(),
        )
        (home / "config" / GENESIS_FILE).write_text(genesis_text)
        init_home(home, force=True, config=config)
    layout = TestnetLayout(
        out, chain_id, homes, node_ids, ports, demo_paths, full_nodes, tuple(hosts), joiners
    )
    (out / "testnet.json").write_text(json.dumps(layout.summary(), indent=2) + "\n")
    return layout
