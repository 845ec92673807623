"""Trading with one key through one node, in the user's units: prices and sizes are decimal
strings, converted exactly with the market's tick and lot (``client.markets``); a value that is
not a whole number of ticks or lots raises :class:`client.errors.OffGridError` before anything
is signed. Each transaction gets the key file's next nonce (``client.nonces``), so several
programs may trade with the same key at once.

    with Trader("http://127.0.0.1:26657", Path("alice.key")) as t:
        answer = t.place_limit("BTC-PERP", "buy", price="64000.5", size="0.01")

``act_as`` (an address) makes every transaction act for that account (a sub-account of the key's
account, or the account that approved the key as agent, or its sub-account): each one starts
with ``ActAs``, so the answer's ``results[0]`` is that action's and the rest follow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from client.errors import CliError
from client.http import DEFAULT_NODE_URL, NodeClient
from client.markets import MarketInfo
from client.signing import load_key_file, sign_actions
from node.keys import address_of, parse_address
from state_machine.accounts.actions import (
    ActAs,
    ApproveAgent,
    CreateSubAccount,
    RevokeAgent,
    SubAccountTransfer,
)
from state_machine.tx import (
    KIND_LIMIT,
    KIND_MARKET,
    STP_CANCEL_RESTING,
    TIF_ALO,
    TIF_FOK,
    TIF_GTC,
    TIF_IOC,
    Action,
    CancelAll,
    CancelByClientId,
    CancelOrder,
    CancelTpsl,
    CancelTwap,
    PlaceOrder,
    PlaceOrderExtended,
    PlaceTwap,
    SetPositionTpsl,
)

TIF_BY_NAME = {"gtc": TIF_GTC, "ioc": TIF_IOC, "fok": TIF_FOK, "alo": TIF_ALO}
SIDES = {"buy": True, "sell": False}
U64_MAX = 2**64 - 1


def side_is_buy(side: str) -> bool:
    found = SIDES.get(side.lower())
    if found is None:
        raise CliError(f"side must be 'buy' or 'sell', got {side!r}")
    return found


def tif_code(tif: str) -> int:
    found = TIF_BY_NAME.get(tif.lower())
    if found is None:
        raise CliError(f"time in force must be one of {', '.join(TIF_BY_NAME)}, got {tif!r}")
    return found


def checked_client_id(client_id: int) -> int:
    if not 0 <= client_id <= U64_MAX:
        raise CliError("client_id must be between 0 and 2**64-1")
    return client_id


def limit_order(
    market: MarketInfo, side: str, price: str, size: str, tif: str = "gtc",
    reduce_only: bool = False, client_id: int = 0,
) -> PlaceOrder:  # fmt: skip
    """A limit order from decimal strings, exactly in the market's ticks and lots."""
    return PlaceOrder(
        market_id=market.market_id,
        is_buy=side_is_buy(side),
        kind=KIND_LIMIT,
        tif=tif_code(tif),
        price_ticks=market.price_to_ticks(price),
        size_lots=market.size_to_lots(size),
        reduce_only=reduce_only,
        client_id=checked_client_id(client_id),
        stp=STP_CANCEL_RESTING,
    )


def market_order(
    market: MarketInfo, side: str, size: str, tif: str = "ioc", reduce_only: bool = False,
    client_id: int = 0,
) -> PlaceOrder:  # fmt: skip
    """A market order (taker only: ``ioc`` or ``fok``) of ``size`` in the market's lots."""
    if tif.lower() not in ("ioc", "fok"):
        raise CliError(f"a market order must be ioc or fok, not {tif!r}")
    return PlaceOrder(
        market_id=market.market_id,
        is_buy=side_is_buy(side),
        kind=KIND_MARKET,
        tif=tif_code(tif),
        price_ticks=0,
        size_lots=market.size_to_lots(size),
        reduce_only=reduce_only,
        client_id=checked_client_id(client_id),
    )


def with_extensions(
    market: MarketInfo, order: PlaceOrder, good_til_ms: int = 0,
    take_profit: str | None = None, stop_loss: str | None = None,
) -> PlaceOrderExtended:  # fmt: skip
    """``order`` with a good-til time (epoch ms, 0: none) and an attached take-profit and/or
    stop-loss (decimal prices) that arm when it fills."""
    return PlaceOrderExtended(
        order,
        good_til_ms,
        market.price_to_ticks(take_profit, "take-profit price") if take_profit else 0,
        market.price_to_ticks(stop_loss, "stop-loss price") if stop_loss else 0,
    )


def twap_order(
    market: MarketInfo, side: str, size: str, duration_ms: int, randomize: bool = False,
    reduce_only: bool = False, max_slippage_ppm: int = 30_000,
) -> PlaceTwap:  # fmt: skip
    """A TWAP of ``size`` over ``duration_ms`` (one slice every 30 s of block time)."""
    return PlaceTwap(
        market.market_id, side_is_buy(side), market.size_to_lots(size), duration_ms, randomize,
        reduce_only, max_slippage_ppm,
    )  # fmt: skip


class Trader:
    """One key trading through one node; markets are read once from ``GET /v1/markets``."""

    def __init__(
        self, node_url: str = DEFAULT_NODE_URL, key_path: Path | None = None,
        client: NodeClient | None = None, act_as: str | None = None,
    ) -> None:  # fmt: skip
        if key_path is None:
            raise CliError("a Trader needs a key file")
        self.client = client if client is not None else NodeClient(node_url)
        self.key_path = key_path
        self.key = load_key_file(key_path)
        self.signer_address = address_of(self.key.public_key)
        self.act_as = parse_address(act_as) if act_as else None
        # The account the orders and queries are for.
        self.address = self.act_as.hex() if self.act_as else self.signer_address
        self._chain_id: str | None = None
        self._markets: dict[str, MarketInfo] | None = None

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Trader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def chain_id(self) -> str:
        if self._chain_id is None:
            self._chain_id = str(self.client.status()["chain_id"])
        return self._chain_id

    def market(self, symbol: str) -> MarketInfo:
        if self._markets is None:
            body = self.client.markets()
            self._markets = {str(m["symbol"]).upper(): MarketInfo(m) for m in body["markets"]}
        found = self._markets.get(symbol.upper())
        if found is None:
            raise CliError(f"no market {symbol!r} (markets: {', '.join(self._markets)})")
        return found

    def send(self, actions: list[Action], wait_commit: bool = True) -> Any:
        """Sign ``actions`` with the key file's next nonce and submit them in one transaction
        (after ``ActAs`` when the trader acts for another account)."""
        if self.act_as is not None:
            actions = [ActAs(self.act_as), *actions]
        tx = sign_actions(self.key_path, self.chain_id(), actions, key=self.key)
        return self.client.submit(tx, wait_commit=wait_commit)

    def place_limit(
        self, symbol: str, side: str, price: str, size: str, tif: str = "gtc",
        reduce_only: bool = False, client_id: int = 0,
    ) -> Any:  # fmt: skip
        order = limit_order(self.market(symbol), side, price, size, tif, reduce_only, client_id)
        return self.send([order])

    def place_market(self, symbol: str, side: str, size: str, reduce_only: bool = False) -> Any:
        return self.send([market_order(self.market(symbol), side, size, "ioc", reduce_only)])

    def cancel(self, symbol: str, order_id: int) -> Any:
        return self.send([CancelOrder(self.market(symbol).market_id, order_id)])

    def cancel_by_client_id(self, symbol: str, client_id: int) -> Any:
        market_id = self.market(symbol).market_id
        return self.send([CancelByClientId(market_id, checked_client_id(client_id))])

    def cancel_all(self, symbol: str | None = None) -> Any:
        market_id = None if symbol is None else self.market(symbol).market_id
        return self.send([CancelAll(market_id)])

    def place_limit_with(
        self, symbol: str, side: str, price: str, size: str, good_til_ms: int = 0,
        take_profit: str | None = None, stop_loss: str | None = None, tif: str = "gtc",
    ) -> Any:  # fmt: skip
        """A limit order with a good-til time and/or an attached TP/SL (``with_extensions``)."""
        market = self.market(symbol)
        order = limit_order(market, side, price, size, tif)
        return self.send([with_extensions(market, order, good_til_ms, take_profit, stop_loss)])

    def place_twap(
        self, symbol: str, side: str, size: str, duration_ms: int, randomize: bool = False,
        reduce_only: bool = False, max_slippage_ppm: int = 30_000,
    ) -> Any:  # fmt: skip
        market = self.market(symbol)
        return self.send([twap_order(market, side, size, duration_ms, randomize, reduce_only,
                                     max_slippage_ppm)])  # fmt: skip

    def cancel_twap(self, symbol: str, twap_id: int) -> Any:
        return self.send([CancelTwap(self.market(symbol).market_id, twap_id)])

    def set_tpsl(
        self, symbol: str, take_profit: str | None = None, stop_loss: str | None = None
    ) -> Any:
        """A take-profit and/or stop-loss on the whole position (replaces the previous pair)."""
        market = self.market(symbol)
        tp = market.price_to_ticks(take_profit, "take-profit price") if take_profit else 0
        sl = market.price_to_ticks(stop_loss, "stop-loss price") if stop_loss else 0
        return self.send([SetPositionTpsl(market.market_id, tp, sl)])

    def cancel_tpsl(self, symbol: str, group_id: int) -> Any:
        return self.send([CancelTpsl(self.market(symbol).market_id, group_id)])

    def open_orders(self) -> dict[str, Any]:
        return self.client.orders(self.address)

    def account(self) -> dict[str, Any]:
        return self.client.account(self.address)

    # ---- sub-accounts and agents (docs/SDK.md) ----------------------------------------------

    def create_subaccount(self, name: str) -> Any:
        """The answer's last result carries the sub-account's index (``order_id``) and address
        (``message``)."""
        return self.send([CreateSubAccount(name)])

    def subaccount_transfer(self, sub: str, deposit: bool, asset_id: int, amount_atoms: int) -> Any:
        return self.send([SubAccountTransfer(parse_address(sub), deposit, asset_id, amount_atoms)])

    def approve_agent(self, agent: str, name: str, expires_at_ms: int = 0) -> Any:
        return self.send([ApproveAgent(parse_address(agent), name, expires_at_ms)])

    def revoke_agent(self, agent: str) -> Any:
        return self.send([RevokeAgent(parse_address(agent))])
