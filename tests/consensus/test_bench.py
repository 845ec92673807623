"""`perpbft bench consensus` runs a fault-free cluster and reports its figures."""

from __future__ import annotations

import argparse

from bench import consensus as bench_consensus


def test_bench_consensus_reports_events_and_latency() -> None:
    parser = argparse.ArgumentParser()
    bench_consensus.add_arguments(parser)
    args = parser.parse_args(["--blocks", "5", "--delay-ms", "0.5"])
    result = bench_consensus.run(args)
    assert result["bench"] == "consensus"
    assert result["events_per_s"] > 0
    # Simulated time, not wall time: the leader commits after 6 one-way delays (proposal,
    # votes, pre-commit, votes, commit, votes), the others after 7 (DECIDE), so the mean of
    # four replicas is 3.375 ms plus the sub-millisecond truncation of block timestamps.
    assert 3.375 <= result["commit_latency_ms_mean"] < 4.375


def test_bench_is_registered() -> None:
    from cli.bench import BENCHMARKS

    assert BENCHMARKS["consensus"] == "bench.consensus"
