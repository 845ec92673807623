"""Leveraged demo accounts of a localnet, so that a price crash liquidates someone.

The maker and taker bots hold 1,000,000 USDC each and small positions: no move of the price
liquidates them. This bot holds ``LEVERAGED`` accounts funded with ``LEVERAGED_USDC`` each
(``HOME/keys/lev0.json``...) and a rich counterparty (``HOME/keys/counterparty.json``). Each
round it looks at one account: a flat account is given its position again (the counterparty
rests a limit order at the oracle price, the account takes it with an IOC order at that price,
the counterparty cancels what is left), topped up by a transfer from the counterparty when a
liquidation has left it little collateral. Longs and shorts alternate, at leverages from 5x
to 50x, so a 30 % crash liquidates the longs above about 3x and a pump back the shorts.

Every round it also reads each account's ledger and prints the liquidation events it has not
printed yet (``perpbft localnet logs leverage``), with the account's address.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client.errors import CliError
from client.http import ApiError, NodeClient
from client.markets import MarketInfo
from client.signing import sign_actions
from node.keys import read_key_file
from state_machine.tx import (
    KIND_LIMIT,
    TIF_GTC,
    TIF_IOC,
    Action,
    CancelAll,
    PlaceOrder,
    SetLeverage,
    Transfer,
)

USDC = 10**6
LEVERAGED_USDC = 2_000
TOP_UP_BELOW_USDC = 1_000  # a flat account with less collateral gets LEVERAGED_USDC more
USE_PPM = 800_000  # open 80 % of the notional its collateral allows
PPM = 1_000_000
COUNTERPARTY = "counterparty"
# (market, long?, leverage) per account: longs and shorts, 5x to 50x.
BOOK = (
    ("BTC-PERP", True, 20),
    ("BTC-PERP", False, 20),
    ("ETH-PERP", True, 10),
    ("ETH-PERP", False, 25),
    ("BTC-PERP", True, 50),
    ("ETH-PERP", False, 5),
)
LEVERAGED = len(BOOK)
LIQUIDATION_KINDS = (
    "liquidation",
    "backstop",
    "vault_refused",
    "adl",
    "socialised_loss",
    "insurance_payout",
)


def key_names() -> list[str]:
    return [f"lev{i}" for i in range(LEVERAGED)]


@dataclass
class Trader:
    name: str
    key_path: Path
    market: str
    is_long: bool
    leverage: int

    @property
    def address(self) -> str:
        return read_key_file(self.key_path).public_key.hex()


class LeverageBot:
    def __init__(self, api: str, home: Path, chain_id: str) -> None:
        self.client = NodeClient(api, timeout_s=15.0)
        self.chain_id = chain_id
        keys = home / "keys"
        self.counterparty = keys / f"{COUNTERPARTY}.json"
        self.traders = [
            Trader(name, keys / f"{name}.json", *BOOK[i]) for i, name in enumerate(key_names())
        ]
        self.seen: dict[str, str] = {}  # address -> the newest ledger cursor printed
        self.round = 0

    def send(self, key_path: Path, actions: list[Action]) -> dict[str, Any]:
        tx = sign_actions(key_path, self.chain_id, actions)
        answer: dict[str, Any] = self.client.submit(tx, wait_commit=True)
        return answer

    def step(self) -> list[str]:
        trader = self.traders[self.round % LEVERAGED]
        self.round += 1
        lines = self.report_liquidations()
        account = self.client.account(trader.address)
        positions = [p for p in account["positions"] if p["side"] != "flat"]
        if not positions:
            lines.append(self.open_position(trader, account))
        return lines

    def open_position(self, t: Trader, account: dict[str, Any]) -> str:
        markets = {m["symbol"]: m for m in self.client.markets()["markets"]}
        market = MarketInfo(markets[t.market])
        usdc = next((b for b in account["balances"] if b["asset"] == "USDC"), None)
        collateral = int(market_amount(usdc["available"]) if usdc else 0)
        if collateral < TOP_UP_BELOW_USDC * USDC:
            to = bytes.fromhex(t.address)
            self.send(self.counterparty, [Transfer(to, 0, LEVERAGED_USDC * USDC)])
            collateral += LEVERAGED_USDC * USDC
        self.send(t.key_path, [SetLeverage(market.market_id, t.leverage, False)])
        price = market.price_to_ticks(market.body["oracle_price"], "oracle price")
        tick_lot = lot_value_atoms(market)
        lots = collateral * t.leverage * USE_PPM // PPM // (price * tick_lot)
        if lots == 0:
            return f"{t.name}: too little collateral to open"
        rest = PlaceOrder(market.market_id, not t.is_long, KIND_LIMIT, TIF_GTC, price, lots)
        self.send(self.counterparty, [rest])
        take = PlaceOrder(market.market_id, t.is_long, KIND_LIMIT, TIF_IOC, price, lots)
        result = self.send(t.key_path, [take]).get("results", [{}])[0]
        self.send(self.counterparty, [CancelAll(market.market_id)])
        side = "long" if t.is_long else "short"
        return (
            f"{t.name} {t.address[:12]}: {side} {t.market} {t.leverage}x at "
            f"{market.ticks_to_price(price)}: {result.get('code')}, "
            f"filled {market.lots_to_size(int(result.get('filled_lots') or 0))}"
        )

    def report_liquidations(self) -> list[str]:
        """The liquidation events of the accounts' ledgers not printed yet, oldest first."""
        lines = []
        for t in self.traders:
            ledger = self.client.ledger(t.address, limit=50)["ledger"]
            last = self.seen.get(t.address)
            fresh = []
            for item in ledger:
                if item["cursor"] == last:
                    break
                fresh.append(item)
            if ledger:
                self.seen[t.address] = ledger[0]["cursor"]
            if last is None:
                continue  # the first look only learns where the ledger is
            for item in reversed(fresh):
                if item["kind"] in LIQUIDATION_KINDS and _mentions(item, t.address):
                    lines.append(f"{t.name} {t.address[:12]}: {describe(item)}")
        return lines


def _mentions(item: dict[str, Any], address: str) -> bool:
    return address in (item.get("account"), item.get("bankrupt"))


def describe(item: dict[str, Any]) -> str:
    fields = {
        k: v
        for k, v in item.items()
        if k not in ("kind", "height", "timestamp_ms", "cursor", "account", "bankrupt")
        and v is not None
    }
    text = " ".join(f"{k}={v[:12] if k == 'counterparty' else v}" for k, v in fields.items())
    return f"height {item['height']}: {item['kind']} {text}"


def market_amount(text: str) -> int:
    """A USDC decimal string as atoms (floor)."""
    whole, _, frac = text.lstrip("-").partition(".")
    atoms = int(whole) * USDC + int((frac + "000000")[:6])
    return -atoms if text.startswith("-") else atoms


def lot_value_atoms(market: MarketInfo) -> int:
    """USDC atoms one tick on one lot is worth: tick size x lot size x 10**6."""
    value = market.tick * market.lot * USDC
    if value.denominator != 1:
        raise ValueError(f"{market.symbol}: a tick on a lot is not a whole number of atoms")
    return int(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localnet.leverage")
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--node", type=int, default=0, help="validator index to talk to")
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args(argv)
    layout = json.loads((args.home / "net" / "testnet.json").read_text())
    api = layout["nodes"][args.node % len(layout["nodes"])]["api"]
    bot = LeverageBot(api, args.home, layout["chain_id"])
    print(f"leverage -> {api}: {LEVERAGED} accounts", flush=True)
    for t in bot.traders:
        side = "long" if t.is_long else "short"
        print(f"{t.name} {t.address}: {side} {t.market} {t.leverage}x", flush=True)
    while True:
        try:
            for line in bot.step():
                print(line, flush=True)
        except ApiError as exc:
            print(f"refused: {exc.code}: {exc.message}", flush=True)
        except (CliError, KeyError, ValueError) as exc:
            print(f"round failed: {exc}", flush=True)
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
