"""``perpbft bench admission`` runs the real node's admission paths and reports a figure for
each (sanity only: performance is read from the bench, never asserted)."""

from __future__ import annotations

import argparse

import pytest

from bench import admission
from client.errors import CliError


def args(**overrides: object) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    admission.add_arguments(parser)
    parsed = parser.parse_args([])
    for name, value in overrides.items():
        setattr(parsed, name, value)
    return parsed


def test_bench_admission_admits_every_transaction_on_each_path() -> None:
    result = admission.run(args(txs=48, accounts=8, frame_txs="1,16", repeat=1))
    assert result["bench"] == "admission" and result["txs"] == 48
    kinds = [(r["kind"], r["frame_txs"]) for r in result["results"]]
    assert kinds == [("gossip", 1), ("gossip", 16), ("submit", None)]
    assert all(r["cpu_us_per_tx"] > 0 for r in result["results"])


@pytest.mark.parametrize(
    "overrides",
    [
        {"frame_txs": "0"},
        {"frame_txs": "513"},
        {"frame_txs": "a"},
        {"txs": 0},
        {"txs": 10_000, "accounts": 2},
    ],
)
def test_bench_admission_refuses_bad_arguments(overrides: dict[str, object]) -> None:
    with pytest.raises(CliError):
        admission.run(args(**overrides))
