"""Demo traffic of a localnet, so its books are alive: a market maker and a taker.

Both are ordinary API clients with funded keys (``HOME/keys/maker.json`` and ``taker.json``):

* the maker, every ``interval`` seconds, sends one transaction per round that cancels its
  orders in every market and posts ``LEVELS`` post-only bids and asks around the oracle price
  (cancels execute before post-only orders inside a block, so the new quotes never meet the
  old ones);
* the taker sends small IOC market orders on a random market and side, leaning against its
  own net position so both bots' inventories stay bounded however long the localnet runs.

Randomness is seeded (``--seed``) so a run is reproducible up to network timing.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from client.errors import CliError
from client.http import ApiError, NodeClient
from client.markets import MarketInfo
from client.signing import sign_actions
from node.keys import read_key_file
from state_machine.tx import (
    KIND_LIMIT,
    KIND_MARKET,
    TIF_ALO,
    TIF_IOC,
    Action,
    CancelAll,
    PlaceOrder,
)

LEVELS = 5
LEVEL_STEP_PPM = 500  # 0.05 % between quote levels
PPM = 1_000_000
# Order sizes in base units, per base asset: the maker's unit and the taker's unit.
MAKER_SIZE = {"BTC": "0.01", "ETH": "0.1"}
TAKER_SIZE = {"BTC": "0.001", "ETH": "0.01"}
TAKER_NET_UNITS_MAX = 20  # the taker leans back once it holds this many of its units


def quote_actions(markets: list[MarketInfo], rng: random.Random) -> list[Action]:
    actions: list[Action] = [CancelAll(m.market_id) for m in markets]
    for m in markets:
        mid = m.price_to_ticks(m.body["oracle_price"], "oracle price")
        unit = m.size_to_lots(MAKER_SIZE.get(m.body["base_asset"], "1"))
        for level in range(1, LEVELS + 1):
            offset = mid * LEVEL_STEP_PPM * level // PPM + 1
            for is_buy, price in ((True, mid - offset), (False, mid + offset)):
                size = unit * rng.randint(1, 5)
                actions.append(PlaceOrder(m.market_id, is_buy, KIND_LIMIT, TIF_ALO, price, size))
    return actions


class Bot:
    def __init__(self, api: str, key_path: Path, chain_id: str, seed: int) -> None:
        self.client = NodeClient(api, timeout_s=15.0)
        self.key_path = key_path
        self.key = read_key_file(key_path)
        self.chain_id = chain_id
        self.rng = random.Random(seed)
        self.net_units: dict[int, int] = {}

    def markets(self) -> list[MarketInfo]:
        return [MarketInfo(m) for m in self.client.markets()["markets"]]

    def send(self, actions: list[Action]) -> dict[str, Any]:
        tx = sign_actions(self.key_path, self.chain_id, actions, self.key)
        answer: dict[str, Any] = self.client.submit(tx, wait_commit=True)
        return answer

    def make_round(self) -> str:
        answer = self.send(quote_actions(self.markets(), self.rng))
        refused = [r for r in answer.get("results", []) if r.get("code") != "ok"]
        return f"height {answer.get('height')}: quotes posted, {len(refused)} refused"

    def take_round(self) -> str:
        market = self.rng.choice(self.markets())
        unit = market.size_to_lots(TAKER_SIZE.get(market.body["base_asset"], "1"))
        net = self.net_units.get(market.market_id, 0)
        if abs(net) >= TAKER_NET_UNITS_MAX:
            is_buy = net < 0
        else:
            is_buy = self.rng.random() < 0.5
        units = self.rng.randint(1, 3)
        order = PlaceOrder(market.market_id, is_buy, KIND_MARKET, TIF_IOC, 0, unit * units)
        result = self.send([order]).get("results", [{}])[0]
        filled_units = int(result.get("filled_lots") or 0) // unit
        self.net_units[market.market_id] = net + (filled_units if is_buy else -filled_units)
        side = "buy" if is_buy else "sell"
        return f"{side} {market.symbol}: {result.get('code')} filled {result.get('filled_lots')}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localnet.traffic")
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--role", choices=("maker", "taker"), required=True)
    parser.add_argument("--node", type=int, default=0, help="validator index to talk to")
    parser.add_argument("--interval", type=float, default=None)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    layout = json.loads((args.home / "net" / "testnet.json").read_text())
    api = layout["nodes"][args.node % len(layout["nodes"])]["api"]
    bot = Bot(api, args.home / "keys" / f"{args.role}.json", layout["chain_id"], args.seed)
    interval = args.interval or (1.5 if args.role == "maker" else 0.7)
    step = bot.make_round if args.role == "maker" else bot.take_round
    print(f"{args.role} -> {api}", flush=True)
    while True:
        try:
            print(step(), flush=True)
        except ApiError as exc:
            print(f"refused: {exc.code}: {exc.message}", flush=True)
        except (CliError, KeyError, ValueError) as exc:
            print(f"round failed: {exc}", flush=True)
        time.sleep(interval)


if __name__ == "__main__":
    sys.exit(main())
