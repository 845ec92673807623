"""``perpbft bench NAME``: benchmarks that print figures, last line one JSON object.

Each benchmark lives in its own module with ``add_arguments(parser)`` and ``run(args) -> dict``;
this module registers them and prints the result dict as the last line.
"""

from __future__ import annotations

import argparse
import importlib
import json
from typing import Any

from cli.errors import EXIT_OK

# bench name -> module implementing add_arguments(parser) and run(args) -> dict
BENCHMARKS = {
    "verify": "bench.verify",
    "matching": "bench.matching",
    "risk": "bench.risk",
    "state-root": "bench.state_root",
    "localnet": "bench.localnet",
    "admission": "bench.admission",
    "consensus": "bench.consensus",
    "statesync": "bench.statesync",
    "indexer": "bench.indexer",
    "bridge-gas": "bench.bridge_gas",
    "bridge": "bench.bridge",
}


def register(sub: Any) -> None:
    bench = sub.add_parser("bench", help="run a benchmark and print its figures")
    bench_sub = bench.add_subparsers(dest="bench_name", metavar="BENCHMARK")
    bench_sub.required = True
    for name, module_name in BENCHMARKS.items():
        module = importlib.import_module(module_name)
        parser = bench_sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
        module.add_arguments(parser)
        parser.set_defaults(func=_runner(module))


def _runner(module: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        result: dict[str, Any] = module.run(args)
        print(json.dumps(result), flush=True)
        return EXIT_OK

    return run
