"""A real N-validator cluster of `perpbft start` processes on 127.0.0.1, for integration tests.

Ports come from a randomly chosen free block, every process is killed when the cluster closes,
and every wait has a deadline, so a test using it always stops by itself.

When the cluster closes, after its processes are gone, every node's data dir is opened and the
whole-state conservation audit runs on its state (``node.audit_runner.audit_stored_state``):
whatever a test did to the network, no node may have stored a state that creates or loses
money. A failure fails the test. A test that breaks a node's data on purpose exempts that node
(``audit_exempt``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from node.audit_runner import audit_stored_state
from node.config import Config, init_home, load_config
from node.keys import read_key_file
from node.storage import store_path
from node.testnet import TestnetLayout, write_testnet
from state_machine.bridge.params import BridgeParams
from state_machine.crypto import Keypair
from state_machine.genesis import genesis_from_json
from state_machine.governance.params import GovernanceParams
from state_machine.staking.genesis import StakingGenesis

STARTUP_TIMEOUT_S = 60.0


def ports_free(base: int, count: int) -> bool:
    for port in range(base, base + count):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


# Linux hands out outgoing connections' local ports from 32768 up: a node's port taken that way
# while the node is down would make its restart fail to bind, so stay below.
PORTS_LOW, PORTS_HIGH = 10_000, 32_000


def free_base_port(validators: int) -> int:
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(PORTS_LOW, PORTS_HIGH - 10 * validators, 10)
        if ports_free(base, 10 * validators):
            return base
    raise RuntimeError("no free block of ports found")


class Cluster:
    def __init__(
        self,
        root: Path,
        validators: int = 4,
        block_ms: int = 200,
        demo_accounts: int = 4,
        chain_id: str = "perpbft-test",
        configure: Callable[[Config], Config] | None = None,
        full_nodes: int = 0,
        hosts: tuple[str, ...] = (),
        netns: tuple[str, ...] = (),
        staking: StakingGenesis | None = None,
        joiners: int = 0,
        governance: GovernanceParams | None = None,
        bridge: BridgeParams | None = None,
        bridge_addresses: tuple[bytes, ...] = (),
    ) -> None:
        """``configure`` rewrites each node's config before any node starts; ``full_nodes``
        adds that many full nodes (indexes ``validators ..``) following the validators;
        ``hosts`` gives each node its own address and ``netns`` the Linux network namespace
        its process runs in (tests/integration/test_netns.py); ``staking`` turns staking on in
        genesis and ``joiners`` adds validators that join by staking (after the full nodes);
        ``bridge`` is the genesis bridge section with ``bridge_addresses`` as the validators'
        keys (tests/e2e/test_bridge_e2e.py)."""
        self.root = root
        self.layout: TestnetLayout = write_testnet(
            root / "net",
            validators,
            chain_id=chain_id,
            base_port=free_base_port(1 if hosts else validators + full_nodes + joiners),
            full_nodes=full_nodes,
            staking=staking,
            joiners=joiners,
            hosts=hosts,
            demo_accounts=demo_accounts,
            block_interval_ms=block_ms,
            governance=governance,
            bridge=bridge,
            bridge_addresses=bridge_addresses,
        )
        if configure is not None:
            for home in self.layout.homes:
                init_home(home, force=True, config=configure(load_config(home)))
        self.chain_id = chain_id
        self.netns = netns
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.http = httpx.Client(timeout=10.0)
        self.audit_exempt: set[int] = set()  # nodes whose data a test broke on purpose
        self.audited_heights: dict[int, int] = {}  # filled by close()

    # ---- processes ---------------------------------------------------------------------

    def log_path(self, i: int) -> Path:
        return self.root / f"node{i}.log"

    def start(self, i: int) -> None:
        assert i not in self.procs or self.procs[i].poll() is not None
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        log = open(self.log_path(i), "ab")  # noqa: SIM115 - owned by the process
        command = [sys.executable, "-m", "cli.main", "start", "--home", str(self.layout.homes[i])]
        if self.netns:
            command = ["ip", "netns", "exec", self.netns[i], *command]
        self.procs[i] = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()

    def running(self, i: int) -> bool:
        proc = self.procs.get(i)
        return proc is not None and proc.poll() is None

    def start_all(self) -> None:
        for i in range(len(self.layout.homes)):
            self.start(i)

    def kill(self, i: int) -> None:
        """SIGKILL: the node loses everything not on disk."""
        proc = self.procs.get(i)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)

    def stop(self, i: int, sig: signal.Signals = signal.SIGTERM) -> int:
        """SIGTERM (or ``sig``, e.g. SIGINT): graceful shutdown; returns the exit code."""
        proc = self.procs[i]
        if proc.poll() is None:
            proc.send_signal(sig)
            return proc.wait(timeout=30)
        return proc.returncode

    def close(self, audit: bool = True) -> None:
        """Kill every node, then (``audit``) audit each node's stored state."""
        for i in list(self.procs):
            self.kill(i)
        self.http.close()
        if audit:
            self.audit_all()

    def audit_all(self) -> None:
        """Run the conservation audit on every stopped node's data dir (a node that never
        created its store is skipped). Cheap: no page walk (the nodes are our own and were
        stopped by signals, which LMDB survives), one state rebuild per node."""
        for i, home in enumerate(self.layout.homes):
            if i in self.audit_exempt or self.running(i):
                continue
            config = load_config(home)
            if not (store_path(config.data_path) / "data.mdb").exists():
                continue
            genesis = genesis_from_json(config.genesis_path.read_text(encoding="utf-8"))
            try:
                self.audited_heights[i] = audit_stored_state(
                    config.data_path,
                    genesis,
                    map_size_bytes=config.storage.map_size_bytes,
                    walk_pages=False,
                )
            except Exception as exc:
                raise AssertionError(
                    f"node {i}: the state stored in {config.data_path} fails the audit: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        # After a failed test, only clean up: the test's own failure is the one to read.
        self.close(audit=exc_type is None)

    # ---- API ---------------------------------------------------------------------------

    def api(self, i: int) -> str:
        return f"http://{self.layout.host(i)}:{self.layout.ports[i].api}"

    def metrics_url(self, i: int) -> str:
        return f"http://{self.layout.host(i)}:{self.layout.ports[i].metrics}/metrics"

    def get(self, i: int, path: str, **params: Any) -> Any:
        r = self.http.get(self.api(i) + path, params=params)
        r.raise_for_status()
        return r.json()

    def status(self, i: int) -> dict[str, Any] | None:
        try:
            r = self.http.get(self.api(i) + "/v1/status", timeout=2.0)
        except httpx.HTTPError:
            return None
        return r.json() if r.status_code == 200 else None

    def height(self, i: int) -> int:
        s = self.status(i)
        return -1 if s is None else int(s["height"])

    def wait_height(
        self, height: int, nodes: list[int] | None = None, timeout_s: float = 60.0
    ) -> None:
        nodes = list(range(len(self.layout.homes))) if nodes is None else nodes
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(self.height(i) >= height for i in nodes):
                return
            for i in nodes:
                proc = self.procs.get(i)
                if proc is not None and proc.poll() is not None:
                    raise AssertionError(
                        f"node {i} exited with {proc.returncode}:\n{self.tail_log(i)}"
                    )
            time.sleep(0.1)
        heights = {i: self.height(i) for i in nodes}
        raise AssertionError(f"nodes did not reach height {height} in {timeout_s}s: {heights}")

    def heights(self, nodes: list[int]) -> dict[int, int]:
        return {i: self.height(i) for i in nodes}

    def wait_for(self, condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
        """Poll ``condition`` until it holds; fail naming ``what`` after the deadline."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")

    def wait_ready(self, i: int, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        """Wait until node ``i`` answers /v1/status with 200: its store is open (before that
        the API says 503 "starting")."""
        self.wait_for(lambda: self.status(i) is not None, f"node {i} API", timeout_s)

    def metric(self, i: int, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` whose labels include ``labels`` (0 if none)."""
        r = self.http.get(self.metrics_url(i), timeout=5.0)
        r.raise_for_status()
        total = 0.0
        for family in text_string_to_metric_families(r.text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    total += sample.value
        return total

    def log_lines(self, i: int, event: str | None = None) -> list[dict[str, Any]]:
        """Node ``i``'s JSON log lines (all runs), optionally only those of ``event``."""
        out: list[dict[str, Any]] = []
        try:
            text = self.log_path(i).read_text(errors="replace")
        except FileNotFoundError:
            return out
        for line in text.splitlines():
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by SIGKILL
            if event is None or record.get("event") == event:
                out.append(record)
        return out

    def tail_log(self, i: int, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path(i).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def block(self, i: int, height: int) -> dict[str, Any]:
        result: dict[str, Any] = self.get(i, f"/v1/blocks/{height}")
        return result

    def demo_key(self, index: int) -> Keypair:
        return read_key_file(self.layout.demo_keys[index])

    def validator_key(self, index: int) -> Keypair:
        return read_key_file(self.layout.homes[index] / "config" / "node_key.json")

    def submit(self, i: int, raw: bytes, wait: bool = True) -> httpx.Response:
        params = {"wait": "commit"} if wait else {}
        return self.http.post(
            self.api(i) + "/v1/txs",
            content=raw,
            params=params,
            headers={"content-type": "application/msgpack"},
            timeout=40.0,
        )


def view_timeouts_with_signed_record(base_ms: int, cap_ms: int) -> Callable[[Config], Config]:
    """A ``configure`` hook: the given view timeouts, and debug logs (every signature a node
    sends is logged as a ``signed`` line, which the fault tests read)."""

    def configure(config: Config) -> Config:
        return dataclasses.replace(
            config,
            consensus=dataclasses.replace(
                config.consensus, view_timeout_base_ms=base_ms, view_timeout_cap_ms=cap_ms
            ),
            log=dataclasses.replace(config.log, level="debug"),
        )

    return configure
