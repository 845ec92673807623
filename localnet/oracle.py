"""Oracle feeders of a localnet: one process per validator, signing with the validator's key.

``OracleUpdate`` is accepted only from validator keys (the chain takes the stake-weighted
median of fresh submissions), so each feeder reads ``nodeI/config/node_key.json`` and submits
to its own validator's public API every ``interval`` seconds.

Prices come from a :class:`PriceSource`. The default, :class:`RandomWalk`, is deterministic:
the price of an asset at step ``k`` (one step per ``step_ms`` since genesis) is a function of a
seed and ``k`` only, so all feeders agree without talking to each other and a run can be
replayed. Another source is plugged in with ``--source module:factory`` (a callable taking the
market list from ``GET /v1/markets`` and returning a PriceSource).

A control file (``HOME/oracle_control.json``, written by ``perpbft localnet oracle``) shifts
every price by ``shift_ppm`` (``--crash 30%`` is -300,000 ppm), to exercise liquidations.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib
import json
import math
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from client.errors import CliError
from client.http import ApiError, NodeClient
from client.signing import sign_actions
from state_machine.tx import OraclePrice, OracleUpdate

CONTROL_FILE = "oracle_control.json"
PPM = 1_000_000
STEP_MS = 1_000
STEP_VOLATILITY = 0.0005  # 0.05 % per one-second step: lively but within the price bands
DEFAULT_SEED = "perpbft-localnet"


class PriceSource(Protocol):
    def price_ticks(self, market: dict[str, Any], now_ms: int) -> int: ...


@dataclasses.dataclass
class _Walk:
    step: int
    log_factor: float


class RandomWalk:
    """Geometric random walk per base asset, from each market's genesis price.

    The step increments are standard normals drawn from SHA-256 of (seed, asset, step), so the
    walk is the same in every process; markets on the same base asset move together.
    """

    def __init__(
        self,
        genesis_time_ms: int,
        initial_ticks: dict[str, int],
        seed: str = DEFAULT_SEED,
        step_ms: int = STEP_MS,
        volatility: float = STEP_VOLATILITY,
    ) -> None:
        self.genesis_time_ms = genesis_time_ms
        self.initial_ticks = initial_ticks  # market symbol -> genesis price in ticks
        self.seed = seed
        self.step_ms = step_ms
        self.volatility = volatility
        self._walks: dict[str, _Walk] = {}

    def _normal(self, asset: str, step: int) -> float:
        digest = hashlib.sha256(f"{self.seed}/{asset}/{step}".encode()).digest()
        u1, u2 = struct.unpack(">QQ", digest[:16])
        a = (u1 + 1) / 2**64  # in (0, 1]
        b = u2 / 2**64
        return math.sqrt(-2.0 * math.log(a)) * math.cos(2 * math.pi * b)  # Box-Muller

    def log_factor(self, asset: str, now_ms: int) -> float:
        target = max(0, (now_ms - self.genesis_time_ms) // self.step_ms)
        walk = self._walks.get(asset)
        if walk is None or walk.step > target:
            walk = _Walk(0, 0.0)
        while walk.step < target:
            walk.step += 1
            walk.log_factor += self.volatility * self._normal(asset, walk.step)
        self._walks[asset] = walk
        return walk.log_factor

    def price_ticks(self, market: dict[str, Any], now_ms: int) -> int:
        initial = self.initial_ticks[market["symbol"]]
        factor = math.exp(self.log_factor(str(market["base_asset"]), now_ms))
        return max(1, round(initial * factor))


def read_shift_ppm(home: Path) -> int:
    """The control file's price shift (0 without a file or with a broken one)."""
    try:
        body = json.loads((home / CONTROL_FILE).read_text())
        shift = int(body.get("shift_ppm", 0))
    except (OSError, ValueError, AttributeError, TypeError):
        return 0
    return max(-PPM + 1, min(shift, 10 * PPM))


def write_shift_ppm(home: Path, shift_ppm: int) -> None:
    tmp = home / (CONTROL_FILE + ".tmp")
    body = {"shift_ppm": shift_ppm, "written_at_ms": int(time.time() * 1000)}
    tmp.write_text(json.dumps(body) + "\n")
    tmp.replace(home / CONTROL_FILE)


def shifted(ticks: int, shift_ppm: int, max_ticks: int) -> int:
    return max(1, min(max_ticks, ticks * (PPM + shift_ppm) // PPM))


def source_factory(spec: str) -> Callable[[list[dict[str, Any]]], Any]:
    """The factory a ``module:factory`` spec names; ValueError with a one-line reason.

    The factory takes the node's market list (``GET /v1/markets``) and returns an object
    with ``price_ticks(market, now_ms) -> int`` (:class:`PriceSource`)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"oracle source {spec!r} is not module:factory")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"oracle source module {module_name!r} does not import: {exc}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"oracle source {spec!r}: {module_name} has no callable {attr!r}")
    return factory  # type: ignore[no-any-return]


def load_source(spec: str | None, genesis: dict[str, Any], markets: list[dict[str, Any]]) -> Any:
    if spec is None:
        initial = {m["symbol"]: int(m["initial_price_ticks"]) for m in genesis["markets"]}
        return RandomWalk(int(genesis["genesis_time_ms"]), initial)
    return source_factory(spec)(markets)


def feed_once(
    client: NodeClient,
    key_path: Path,
    chain_id: str,
    source: Any,
    markets: list[dict[str, Any]],
    max_ticks: dict[str, int],
    shift_ppm: int,
) -> list[tuple[str, int]]:
    """Sign and submit one OracleUpdate for every market; returns (symbol, ticks) sent."""
    now = int(time.time() * 1000)
    prices = []
    sent = []
    for m in markets:
        ticks = shifted(source.price_ticks(m, now), shift_ppm, max_ticks[m["symbol"]])
        prices.append(OraclePrice(int(m["market_id"]), ticks))
        sent.append((str(m["symbol"]), ticks))
    tx = sign_actions(key_path, chain_id, [OracleUpdate(tuple(prices))])
    client.submit(tx, wait_commit=False)
    return sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localnet.oracle")
    parser.add_argument("--home", type=Path, required=True, help="the localnet home")
    parser.add_argument("--index", type=int, required=True, help="validator index")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between updates")
    parser.add_argument("--source", default=None, help="price source as module:factory")
    args = parser.parse_args(argv)
    layout = json.loads((args.home / "net" / "testnet.json").read_text())
    node = layout["nodes"][args.index]
    genesis = json.loads((args.home / "net" / "genesis.json").read_text())
    key_path = Path(node["home"]) / "config" / "node_key.json"
    max_ticks = {m["symbol"]: int(m["max_price_ticks"]) for m in genesis["markets"]}
    with NodeClient(node["api"], timeout_s=10.0) as client:
        markets = client.markets()["markets"]
        source = load_source(args.source, genesis, markets)
        print(f"oracle feeder {args.index} -> {node['api']}", flush=True)
        last_shift = None
        while True:
            shift = read_shift_ppm(args.home)
            try:
                sent = feed_once(
                    client, key_path, genesis["chain_id"], source, markets, max_ticks, shift
                )
                if shift != last_shift:
                    print(f"shift {shift} ppm; prices {sent}", flush=True)
                    last_shift = shift
            except (ApiError, CliError) as exc:
                print(f"oracle update refused or node unreachable: {exc}", flush=True)
            time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
