"""History indexer under load: events/s on SQLite and PostgreSQL beside a localnet at --rate.

Runs ``perpbft bench localnet`` (same options: a fresh localnet, ``--rate`` tx/s for
``--duration`` s) with every validator indexing in-process into its SQLite file (the default
``[indexer]``), and beside it two ``perpbft indexer`` processes following node0's data dir: one
into a fresh SQLite file, one into PostgreSQL (``--postgresql DSN``, or else a temporary server
started from Debian's binaries, as the tests do; without them the PostgreSQL row says why).

Figures, from the indexers' own counters (``perpbft_indexer_*`` of each validator's /metrics,
the JSON summary of each ``perpbft indexer`` process):

* ``events_per_busy_s``: events written per second of indexing work, the indexer's capacity
  (the load itself produces far fewer events per second; the indexers keep up and wait);
* ``cpu_ms_per_block``: the CPU time of the indexing thread per block, for the in-process
  indexer the CPU it adds to its validator, also as a share of that validator's CPU in the run;
* ``backfill``: after the load, node0's whole chain indexed at once into fresh databases
  (``perpbft indexer --once``, many blocks per database transaction): events/s with a backlog.

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench import localnet as localnet_bench
from bench.pgserver import PgUnavailable, running_server
from client.errors import CliError
from localnet.net import Localnet
from node.config import load_config

INDEXER_COUNTERS = ("events", "blocks", "busy_seconds", "cpu_seconds")
EXTERNAL_POLL_MS = 100
EXTERNAL_STOP_TIMEOUT_S = 30.0
EXTERNAL_START_TIMEOUT_S = 60.0
CATCH_UP_S = 3.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    localnet_bench.add_arguments(parser)
    pg = parser.add_mutually_exclusive_group()
    pg.add_argument(
        "--postgresql",
        metavar="DSN",
        help="index into this PostgreSQL database (default: a temporary server from Debian's "
        "binaries)",
    )
    pg.add_argument("--no-postgresql", action="store_true", help="SQLite only")


NewDsn = Callable[[], str | None]


@contextlib.contextmanager
def postgresql_dsn(args: argparse.Namespace) -> Iterator[tuple[str | None, NewDsn, str]]:
    """(DSN of the database the live run indexes into, a maker of fresh databases for the
    backfill, "") or (None, ..., why there is no PostgreSQL)."""
    if args.no_postgresql:
        yield None, lambda: None, "--no-postgresql"
    elif args.postgresql:
        yield args.postgresql, lambda: None, ""  # the operator's database: no fresh ones
    else:
        with contextlib.ExitStack() as stack:
            try:
                server = stack.enter_context(running_server())
            except PgUnavailable as exc:
                yield None, lambda: None, str(exc)
                return
            yield server.new_database(), server.new_database, ""


class External:
    """``perpbft indexer`` processes following node0's blocks while the load runs."""

    def __init__(self, work: Path, dsn: str | None) -> None:
        self.work = work
        self.dsn = dsn
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.node_cpu_s: dict[str, float] = {}
        self.metrics_before: dict[str, dict[str, float]] = {}

    def start(self, net: Localnet) -> None:
        """``on_up`` of the localnet benchmark: note each validator's counters, start both."""
        for name, url in zip(net.node_names(), metrics_urls(net), strict=True):
            self.metrics_before[name] = indexer_counters(url)
            self.node_cpu_s[name] = net.procs.cpu_seconds(name) or 0.0
        data = load_config(Path(net.layout()["nodes"][0]["home"])).data_path
        databases = {"sqlite": ["--sqlite", str(self.work / "external.sqlite3")]}
        if self.dsn is not None:
            databases["postgresql"] = ["--postgresql", self.dsn]
        for backend, db_args in databases.items():
            argv = [sys.executable, "-m", "cli.main", "indexer", "--data", str(data), *db_args]
            argv += ["--poll-ms", str(EXTERNAL_POLL_MS), "--json"]
            log = (self.work / f"external-{backend}.log").open("w")
            self.procs[backend] = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=log, text=True
            )
        for backend in self.procs:
            self.wait_started(backend)

    def wait_started(self, backend: str) -> None:
        """Until the process logs that it runs (imports take seconds on a loaded machine, and
        it must be following the chain before the load starts)."""
        log = self.work / f"external-{backend}.log"
        deadline = time.monotonic() + EXTERNAL_START_TIMEOUT_S
        while "indexer_started" not in log.read_text(errors="replace"):
            if self.procs[backend].poll() is not None or time.monotonic() > deadline:
                raise CliError(f"perpbft indexer ({backend}) did not start: {log.read_text()}")
            time.sleep(0.1)

    def stop(self) -> dict[str, Any]:
        """Stop each process (SIGINT) and read its summary line."""
        out: dict[str, Any] = {}
        for backend, proc in self.procs.items():
            proc.send_signal(signal.SIGINT)
            try:
                stdout, _ = proc.communicate(timeout=EXTERNAL_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                stdout, _ = proc.communicate()
            lines = stdout.strip().splitlines()
            out[backend] = json.loads(lines[-1]) if lines else {"error": f"exit {proc.returncode}"}
        return out


def backfill(net: Localnet, work: Path, new_dsn: NewDsn) -> dict[str, Any]:
    """Index node0's whole stored chain at once into fresh databases (``perpbft indexer
    --once``): the indexer's throughput when it has a backlog, batching many blocks per
    database transaction."""
    data = load_config(Path(net.layout()["nodes"][0]["home"])).data_path
    databases = {"sqlite": ["--sqlite", str(work / "backfill.sqlite3")]}
    dsn = new_dsn()
    if dsn is not None:
        databases["postgresql"] = ["--postgresql", dsn]
    out: dict[str, Any] = {}
    for backend, db_args in databases.items():
        argv = [sys.executable, "-m", "cli.main", "indexer", "--data", str(data), *db_args]
        done = subprocess.run(
            [*argv, "--once", "--json"], capture_output=True, text=True, timeout=600
        )
        lines = done.stdout.strip().splitlines()
        out[backend] = json.loads(lines[-1]) if lines else {"error": done.stderr[-500:]}
    return out


def metrics_urls(net: Localnet) -> list[str]:
    return [str(n["metrics"]) for n in net.layout()["nodes"]]


def indexer_counters(url: str) -> dict[str, float]:
    """The ``perpbft_indexer_*`` counters of one node's /metrics."""
    text = httpx.get(url, timeout=10).text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        name = family.name.removeprefix("perpbft_indexer_")
        if family.name.startswith("perpbft_indexer_") and name in INDEXER_COUNTERS:
            found[name] = sum(s.value for s in family.samples if s.name.endswith("_total"))
    return found


def in_process_rows(net: Localnet, ext: External) -> list[dict[str, Any]]:
    """Each validator's in-process indexer over the run: counters after minus before."""
    rows = []
    for name, url in zip(net.node_names(), metrics_urls(net), strict=True):
        after, before = indexer_counters(url), ext.metrics_before[name]
        d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in INDEXER_COUNTERS}
        node_cpu_s = (net.procs.cpu_seconds(name) or 0.0) - ext.node_cpu_s[name]
        rows.append(
            {
                "node": name,
                "events": int(d["events"]),
                "blocks": int(d["blocks"]),
                "busy_s": round(d["busy_seconds"], 3),
                "cpu_s": round(d["cpu_seconds"], 3),
                "events_per_busy_s": round(d["events"] / d["busy_seconds"])
                if d["busy_seconds"] > 0
                else None,
                "cpu_ms_per_block": round(1000 * d["cpu_seconds"] / d["blocks"], 3)
                if d["blocks"]
                else None,
                "share_of_node_cpu_pct": round(100 * d["cpu_seconds"] / node_cpu_s, 2)
                if node_cpu_s > 0
                else None,
            }
        )
    return rows


def external_row(summary: dict[str, Any]) -> dict[str, Any]:
    blocks = summary.get("blocks") or 0
    cpu_s = summary.get("cpu_s") or 0.0
    return {
        **summary,
        "cpu_ms_per_block": round(1000 * cpu_s / blocks, 3) if blocks else None,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="perpbft-bench-indexer-"))
    args.home, args.keep, args.attach = work / "localnet", True, None
    net = Localnet(args.home)
    try:
        with postgresql_dsn(args) as (dsn, new_dsn, why_not):
            ext = External(work, dsn)
            try:
                load = localnet_bench.run(args, on_up=ext.start)
                time.sleep(CATCH_UP_S)  # the followers poll every 100 ms: let them catch up
                rows = in_process_rows(net, ext)
            finally:
                summaries = ext.stop()
            try:
                backfilled = backfill(net, work, new_dsn)
            finally:
                net.down()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    external = {k: external_row(v) for k, v in summaries.items()}
    if dsn is None:
        external["postgresql"] = {"skipped": why_not}
    result = {
        "bench": "indexer",
        "load": load,
        "in_process_sqlite": rows,
        "external": external,
        "backfill": backfilled,
    }
    print_summary(result)
    return result


def print_summary(result: dict[str, Any]) -> None:
    load = result["load"]
    print(
        f"load: {load['committed_tx_per_s']} committed tx/s, "
        f"p50 {load['latency_s']['p50']} s, node CPU {load['node_cpu_ms_per_committed_tx']} "
        "ms per tx (all validators)",
        file=sys.stderr,
    )
    for row in result["in_process_sqlite"]:
        print(
            f"  {row['node']} in-process SQLite: {row['events']} events in {row['blocks']} "
            f"blocks, {row['events_per_busy_s']} events/s of indexing work, "
            f"{row['cpu_ms_per_block']} ms CPU per block ({row['share_of_node_cpu_pct']} % of "
            "the validator's CPU)",
            file=sys.stderr,
        )
    for backend, row in result["external"].items():
        if "skipped" in row:
            print(f"  external {backend}: skipped ({row['skipped']})", file=sys.stderr)
            continue
        print(
            f"  external {backend}: {row.get('events')} events up to height "
            f"{row.get('indexed_height')}, {row.get('events_per_busy_s')} events/s of indexing "
            f"work, {row.get('cpu_ms_per_block')} ms CPU per block",
            file=sys.stderr,
        )
    for backend, row in result["backfill"].items():
        print(
            f"  backfill {backend} (--once, fresh database): {row.get('events')} events of "
            f"{row.get('blocks')} blocks, {row.get('events_per_s')} events/s",
            file=sys.stderr,
        )
