"""Replay or sweep simulator runs.

    python -m tests.sim --scenario twins --seed 17 --trace     # replay one run, print its trace
    python -m tests.sim --seeds 0..10000 --mix --jobs 2         # 10,000 runs across all kinds
    python -m tests.sim --scenario crash --seeds 0..500 --jobs 2  # 500 seeds of one kind

Exit status 1 if any run failed; each failure prints its seed and the replay command.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from tests.sim.cluster import Simulation, SimulationFailure
from tests.sim.scenarios import SCENARIOS, make_scenario


def parse_range(text: str) -> range:
    if ".." in text:
        a, b = text.split("..", 1)
        return range(int(a), int(b))
    return range(int(text), int(text) + 1)


def run_one(name: str, seed: int) -> dict[str, Any]:
    t0 = time.process_time()
    sim = Simulation(make_scenario(name, seed), seed)
    try:
        sim.run()
    except SimulationFailure as exc:
        return {
            "scenario": name,
            "seed": seed,
            "ok": False,
            "error": str(exc).splitlines()[0],
            "cpu_s": time.process_time() - t0,
        }
    return {
        "scenario": name,
        "seed": seed,
        "ok": True,
        "events": sim.events_handled,
        "height": max(n.committed_height for n in sim.nodes if n.honest),
        "resume_ms": sim.resume_ms or 0.0,
        "cpu_s": time.process_time() - t0,
    }


def _run_chunk(args: tuple[str, list[int]]) -> list[dict[str, Any]]:
    name, seeds = args
    return [run_one(name, s) for s in seeds]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.sim",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=sorted(SCENARIOS),
        help="scenario name (repeatable; default: all)",
    )
    parser.add_argument("--seed", type=int, help="replay this one seed")
    parser.add_argument("--seeds", default="0..10", help="seed range A..B (B excluded)")
    parser.add_argument("--trace", action="store_true", help="print the full event trace")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes for --seeds")
    parser.add_argument(
        "--mix",
        action="store_true",
        help="run each seed once, with the scenarios taken in turn (seed s -> scenario s mod k)",
    )
    args = parser.parse_args(argv)
    names = args.scenario or list(SCENARIOS)

    if args.seed is not None:
        status = 0
        for name in names:
            sim = Simulation(make_scenario(name, args.seed), args.seed)
            try:
                sim.run()
            except SimulationFailure as exc:
                print(sim.report(exc.reason) if args.trace else str(exc))
                status = 1
                continue
            if args.trace:
                print("\n".join(sim.format_trace()))
            heights = {n.node_id: n.committed_height for n in sim.nodes}
            print(
                f"ok scenario={name} seed={args.seed} events={sim.events_handled} "
                f"heights={heights} resume_ms={sim.resume_ms:.0f}"
            )
        return status

    seeds = list(parse_range(args.seeds))
    if args.mix:
        per_name = {name: [s for s in seeds if s % len(names) == k] for k, name in enumerate(names)}
    else:
        per_name = {name: seeds for name in names}
    # Interleave the kinds so that an interrupted sweep has covered all of them.
    longest = max(len(ss) for ss in per_name.values())
    chunks = [
        (name, ss[i : i + 25])
        for i in range(0, longest, 25)
        for name, ss in per_name.items()
        if ss[i : i + 25]
    ]
    total = sum(len(ss) for ss in per_name.values())
    t0 = time.monotonic()
    results: list[dict[str, Any]] = []

    def collect(chunk: list[dict[str, Any]]) -> None:
        results.extend(chunk)
        for r in chunk:
            if not r["ok"]:  # report at once: a long sweep may be interrupted
                print(f"FAILED scenario={r['scenario']} seed={r['seed']}: {r['error']}", flush=True)
        _progress(results, total, t0)

    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(_run_chunk, c) for c in chunks]
            for future in as_completed(futures):
                collect(future.result())
    else:
        for chunk_args in chunks:
            collect(_run_chunk(chunk_args))
    wall = time.monotonic() - t0
    failures = [r for r in results if not r["ok"]]
    for name in names:
        rs = [r for r in results if r["scenario"] == name and r["ok"]]
        if rs:
            resume = [r["resume_ms"] for r in rs]
            print(
                f"{name:<11} runs={len([r for r in results if r['scenario'] == name]):>6} "
                f"failed={len([r for r in results if r['scenario'] == name and not r['ok']])} "
                f"events={sum(r['events'] for r in rs)} "
                f"resume_ms mean={sum(resume) / len(resume):.0f} max={max(resume):.0f} "
                f"cpu_s={sum(r['cpu_s'] for r in rs):.1f}"
            )
    for r in failures:
        print(
            f"FAILED scenario={r['scenario']} seed={r['seed']}: {r['error']}\n"
            f"  replay: python -m tests.sim --scenario {r['scenario']} --seed {r['seed']} --trace"
        )
    print(f"{len(results)} runs, {len(failures)} failed, {wall:.1f} s wall")
    return 1 if failures else 0


def _progress(results: list[dict[str, Any]], total: int, t0: float) -> None:
    failed = sum(not r["ok"] for r in results)
    cpu = sum(r["cpu_s"] for r in results)
    print(
        f"progress: {len(results)}/{total} runs, {failed} failed, "
        f"{time.monotonic() - t0:.0f} s wall, {cpu:.0f} s cpu",
        file=sys.stderr,
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
