"""Read-side of the API: turns the node's state, storage and history into JSON-ready dicts.

Prices and sizes leave the node as decimal strings, converted exactly with the market's tick
and lot (``node.api.units``); amounts as decimal strings of the asset; ids and keys as hex.
Reads of the in-memory exchange state happen on the event loop between blocks, so they always
see one whole block. Proofs read LMDB in one read transaction (``Store.prove``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from consensus.types import Block, BlockHeader, QuorumCert
from node.api.algojson import algo_listing, good_til_ms
from node.api.gov import market_state_json, wire_json
from node.api.history import (
    BACKFILL_HEIGHTS,
    HistoryIndex,
    HistoryItem,
    event_body,
    page,
    parse_cursor,
)
from node.api.params import INT_MAX, InputError, parse_uint, plain_uint
from node.api.txevents import tx_event_indexes
from node.api.txjson import snake
from node.api.units import AssetTable, MarketUnits, atoms_to_decimal, format_fraction
from node.block_limits import block_limits_json
from node.keys import parse_address
from node.storage import ProofAt, ProofHeightError
from node.version import version
from state_machine.accounts.records import VAULT
from state_machine.clob.codes import ST_RESTING, ST_WAITING
from state_machine.codec import DecodeError, decode_raw
from state_machine.genesis import MARKET_KIND_NAMES, Asset, Market
from state_machine.perpetuals.funding import funding_rate_8h_ppb
from state_machine.proofkeys import (
    Listings,
    account_keys,
    asset_listing_key,
    first_listed_ids,
    listing_walk,
    market_listing_key,
)
from state_machine.queries import account_summary, vault_summary
from state_machine.results import EVENT_FIELDS
from state_machine.triggers.records import Trigger, account_triggers
from state_machine.tx import Transaction, WithdrawRequest
from state_machine.txroot import inclusion_proof, tx_root

if TYPE_CHECKING:
    from node.chain import Executed
    from node.node import Node

READY_BLOCK_AGE_S = 10.0
LISTING_BATCH = 8  # listing records read per step of an account proof (listings_at)
TX_RESULT_FIELDS = ("code", "message", "order_id", "filled_lots", "status", "count")


class QueryError(InputError):
    """A read the node cannot answer as asked (the status says whose side it is on)."""


def _cursor(text: str | None) -> tuple[int, int] | None:
    try:
        return parse_cursor(text)
    except ValueError as exc:
        raise QueryError(400, "bad_cursor", str(exc)) from None


def _hex(value: Any) -> Any:
    return value.hex() if isinstance(value, bytes) else value


class Queries:
    def __init__(self, node: Node) -> None:
        self.node = node
        genesis = node.genesis
        self._tables_key: tuple[int, ...] = ()
        self._set_tables(list(genesis.assets), list(genesis.markets))
        self.index = HistoryIndex()
        self.indexed_height = 0
        self._backfilled = False
        self.backfill()

    # ---- market and asset tables (governance lists and changes them) ------------------------

    def _set_tables(self, assets: list[Asset], markets: list[Market]) -> None:
        table = AssetTable(assets)
        self._units = {m.market_id: MarketUnits(table, m) for m in markets}
        self._by_symbol = {m.symbol.upper(): m for m in markets}
        self._decimals = {a.asset_id: a.decimals for a in assets}
        self._symbols = {a.asset_id: a.symbol for a in assets}
        self._markets = markets
        self._assets = assets

    def _sync_tables(self) -> None:
        """Follow the state's markets and assets: rebuilt only when governance listed or
        changed one (the key is the identity of every governed record)."""
        chain = self.node.chain
        if chain is None:
            return
        st = chain.state
        gov = st.gov
        key = (
            len(st.markets),
            *(id(r.market) for r in gov.markets.values()),
            *(id(r.asset) for r in gov.assets.values()),
        )
        if key != self._tables_key:
            assets = [*st.genesis.assets, *(r.asset for r in gov.assets.values())]
            self._set_tables(assets, list(st.markets.values()))
            self._tables_key = key

    @property
    def units(self) -> dict[int, MarketUnits]:
        self._sync_tables()
        return self._units

    @property
    def by_symbol(self) -> dict[str, Market]:
        self._sync_tables()
        return self._by_symbol

    @property
    def decimals(self) -> dict[int, int]:
        self._sync_tables()
        return self._decimals

    @property
    def symbols(self) -> dict[int, str]:
        self._sync_tables()
        return self._symbols

    def all_markets(self) -> list[Market]:
        self._sync_tables()
        return self._markets

    def all_assets(self) -> list[Asset]:
        self._sync_tables()
        return self._assets

    # ---- lookups ---------------------------------------------------------------------------

    def market_units_by_id(self, market_id: int) -> MarketUnits | None:
        return self.units.get(market_id)

    def lookup_market(self, text: str) -> Market:
        market = self.by_symbol.get(text.upper())
        market_id = plain_uint(text, digits_max=9) if market is None else None
        if market_id is not None:
            market = next((m for m in self.all_markets() if m.market_id == market_id), None)
        if market is None:
            raise QueryError(404, "unknown_market", f"no market {text[:40]!r}")
        return market

    def lookup_address(self, text: str) -> bytes:
        try:
            return parse_address(text)
        except ValueError as exc:
            raise QueryError(400, "bad_address", str(exc)) from None

    @property
    def state(self) -> Any:
        chain = self.node.chain
        if chain is None:
            raise QueryError(503, "starting", "the node is still starting")
        return chain.state

    def amount(self, asset_id: int, atoms: int) -> str:
        return atoms_to_decimal(atoms, self.decimals.get(asset_id, 0))

    # ---- status ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        node = self.node
        chain = node.chain
        if chain is None:
            raise QueryError(503, "starting", "the node is still opening its store")
        replica = node.replica
        peers = node.peers.connected_peers() if node.peers is not None else []
        connected_power = node.validators.power_of_set(
            [*peers, node.key.public_key] if node.is_validator else peers
        )
        height = chain.height
        block_age_s = (
            time.time() - node.last_block_time_ms / 1000 if node.last_block_time_ms else None
        )
        syncing = block_age_s is None or block_age_s > READY_BLOCK_AGE_S
        reason = ""
        if node.is_validator and not node.validators.is_quorum(connected_power):
            reason = "not connected to a quorum of validators"
        elif not node.is_validator and not peers:
            reason = "no peers"  # a full node follows any one honest peer
        elif syncing:
            reason = "no recent committed block"
        reason = node.disk.not_ready_reason() or reason  # the operator's to fix, so first
        view = replica.view if replica is not None else 0
        return {
            "chain_id": node.chain_id,
            "node_id": node.key.public_key.hex(),
            "moniker": node.config.node.moniker,
            "validator": node.is_validator,
            "height": height,
            "view": view,
            "leader": node.validators.leader(view).hex() if view else None,
            "state_root": chain.state_root.hex(),
            "last_block_time_ms": node.last_block_time_ms,
            # The current epoch's set (the genesis set while staking is off).
            "epoch": node.current_epoch(),
            "validators": [
                {
                    "pubkey": key.hex(),
                    "power": power,
                    "connected": key in peers or key == node.key.public_key,
                }
                for key, power in node.validators.members()
            ],
            "peers": [p.hex() for p in peers],
            "mempool": {"txs": len(node.mempool), "bytes": node.mempool.size_bytes},
            "block_limits": block_limits_json(chain.state, node.configured_block_limits()),
            "syncing": syncing,
            "ready": reason == "",
            "not_ready_reason": reason,
            "version": version(),
        }

    # ---- markets ---------------------------------------------------------------------------

    def market_json(self, market: Market) -> dict[str, Any]:
        units = self.units[market.market_id]
        st = self.state
        ms = st.mstates[market.market_id]
        quote = market.quote_asset_id
        out: dict[str, Any] = {
            "market_id": market.market_id,
            "symbol": market.symbol,
            "kind": MARKET_KIND_NAMES[market.kind],
            "base_asset": self.symbols[market.base_asset_id],
            "quote_asset": self.symbols[quote],
            "tick_size": units.tick_text(),
            "lot_size": units.lot_text(),
            "min_notional": self.amount(quote, market.min_notional_atoms),
            "max_leverage": market.max_leverage,
            "margin_tiers": [
                {
                    "notional_floor": self.amount(quote, t.notional_floor_atoms),
                    "maintenance_rate_ppm": t.mmr_ppm,
                }
                for t in market.margin_tiers
            ],
            "maker_fee_ppm": market.maker_fee_ppm,
            "taker_fee_ppm": market.taker_fee_ppm,
            "price_band_ppm": market.price_band_ppm,
            "oracle_price": units.ticks_to_price(ms.oracle_price_ticks),
            "oracle_time_ms": ms.oracle_time_ms,
            "mark_price": units.ticks_to_price(ms.mark_price_ticks),
            "last_trade_price": (
                units.ticks_to_price(ms.last_trade_price_ticks)
                if ms.last_trade_price_ticks
                else None
            ),
            "open_interest": units.lots_to_size(ms.open_interest_lots),
            "volume": units.lots_to_size(ms.volume_lots),
        }
        book = st.books[market.market_id]
        best_bid, best_ask = book.bids.best_price(), book.asks.best_price()
        out["best_bid"] = units.ticks_to_price(best_bid) if best_bid else None
        out["best_ask"] = units.ticks_to_price(best_ask) if best_ask else None
        out.update(self.funding_json(market, ms))
        out.update(market_state_json(st, market.market_id, units))
        out["params"] = wire_json(market)  # the governed record, integers (proposals use it)
        return out

    def funding_json(self, market: Market, ms: Any) -> dict[str, Any]:
        """Funding of a perp: the predicted 8-hour rate of the running interval (from the
        premium samples so far, by the engine's own formula) and the last interval's rate."""
        names = (
            "funding_rate_8h_ppb",
            "funding_rate_8h_ppm",
            "premium_ppb",
            "last_funding_rate_ppb",
            "funding_interval_ms",
            "next_funding_ms",
        )
        if not market.is_perp:
            return dict.fromkeys(names)
        params = self.state.parameters
        premium = ms.premium_sum_ppb // ms.premium_samples if ms.premium_samples else 0
        rate_8h = funding_rate_8h_ppb(
            premium, params.funding_interest_ppm_8h * 1000, params.funding_clamp_ppm * 1000
        )
        return {
            "funding_rate_8h_ppb": rate_8h,
            "funding_rate_8h_ppm": format_fraction(Fraction(rate_8h, 1000)),
            "premium_ppb": premium,
            "last_funding_rate_ppb": ms.funding_rate_ppb,
            "funding_interval_ms": params.funding_interval_ms,
            "next_funding_ms": ms.next_funding_ms or None,
        }

    def markets(self) -> dict[str, Any]:
        return {
            "height": self.state.height,
            "markets": [self.market_json(m) for m in self.all_markets()],
            # The exchange-wide parameters in force (governance may have changed them).
            "parameters": wire_json(self.state.parameters),
            # Clients need each asset's decimals to turn amounts into atoms exactly.
            "assets": [
                {"asset_id": a.asset_id, "symbol": a.symbol, "decimals": a.decimals}
                for a in self.all_assets()
            ],
        }

    def market(self, text: str) -> dict[str, Any]:
        return self.market_json(self.lookup_market(text))

    def book(self, text: str, depth: int) -> dict[str, Any]:
        market = self.lookup_market(text)
        units = self.units[market.market_id]
        book = self.state.books[market.market_id]

        def levels(side: Any) -> list[list[Any]]:
            return [
                [units.ticks_to_price(p), units.lots_to_size(s), n] for p, s, n in side.depth(depth)
            ]

        return {
            "market": market.symbol,
            "height": self.state.height,
            "bids": levels(book.side(True)),
            "asks": levels(book.side(False)),
        }

    def trade_json(self, item: HistoryItem) -> dict[str, Any]:
        body = item.body
        units = self.units[body["market_id"]]
        return {
            "market": units.market.symbol,
            "height": item.height,
            "timestamp_ms": item.timestamp_ms,
            "price": units.ticks_to_price(body["price_ticks"]),
            "size": units.lots_to_size(body["size_lots"]),
            "taker_side": "buy" if body["taker_is_buy"] else "sell",
            "cursor": item.cursor(),
        }

    def trades(self, text: str, limit: int) -> dict[str, Any]:
        market = self.lookup_market(text)
        self.backfill()
        ring, complete_from = self.index.market_items(self.index.trades, market.market_id)
        items = list(ring)[-limit:]
        return {
            "market": market.symbol,
            "trades": [self.trade_json(i) for i in reversed(items)],
            "complete_from_height": complete_from,
        }

    def funding(
        self, text: str, from_ms: int, to_ms: int, cursor_text: str | None, limit: int
    ) -> dict[str, Any]:
        market = self.lookup_market(text)
        cursor = _cursor(cursor_text)
        self.backfill()
        ring, complete_from = self.index.market_items(self.index.market_funding, market.market_id)
        items, next_cursor = page(ring, from_ms, to_ms, cursor, limit)
        return {
            "market": market.symbol,
            "funding": [self.event_json(i) for i in items],
            "next_cursor": next_cursor,
            "complete_from_height": complete_from,
        }

    # ---- accounts --------------------------------------------------------------------------

    def position_json(self, pos: dict[str, Any]) -> dict[str, Any]:
        """A position of ``state_machine.queries.account_summary`` in the API's units."""
        units = self.units[pos["market_id"]]
        size = pos["size_lots"]
        liquidation = pos["liquidation_price_ticks"]
        return {
            "market": units.market.symbol,
            "side": "long" if size > 0 else "short" if size < 0 else "flat",
            "size": units.lots_to_size(abs(size)),
            "entry_price": units.ticks_to_price(pos["entry_price_ticks"]) if size else None,
            "mark_price": units.ticks_to_price(pos["mark_price_ticks"]),
            "unrealized_pnl": self.signed_usdc(pos["unrealized_pnl_atoms"]),
            "realized_pnl": self.signed_usdc(pos["realized_pnl_atoms"]),
            "notional": self.amount(0, pos["notional_atoms"]),
            "maintenance_margin": self.amount(0, pos["maintenance_margin_atoms"]),
            "leverage": pos["leverage"],
            "margin_mode": "isolated" if pos["isolated"] else "cross",
            "isolated_margin": self.amount(0, pos["isolated_margin_atoms"]),
            "pending_funding": self.signed_usdc(pos["pending_funding_atoms"]),
            # The mark price at which the position's margin unit reaches maintenance (others
            # fixed), as the risk engine computes it; None when no price would liquidate it.
            "liquidation_price": units.ticks_to_price(liquidation) if liquidation else None,
        }

    def signed_usdc(self, atoms: int) -> str:
        text = self.amount(0, abs(atoms))
        return f"-{text}" if atoms < 0 else text

    def account(self, text: str) -> dict[str, Any]:
        who = self.lookup_address(text)
        st = self.state
        s = account_summary(st, who)
        balances = [
            {
                "asset": self.symbols[b["asset_id"]],
                "available": self.amount(b["asset_id"], b["available_atoms"]),
                "held": self.amount(b["asset_id"], b["held_atoms"]),
            }
            for b in s["balances"]
        ]
        margin: dict[str, Any] = {}
        if s["exists"]:
            margin = {
                "account_value": self.signed_usdc(s["account_value_atoms"]),
                "maintenance_margin": self.amount(0, s["maintenance_margin_atoms"]),
                "free_collateral": self.signed_usdc(s["free_collateral_atoms"]),
                "liquidatable": s["liquidatable"],
            }
        return {
            "address": who.hex(),
            "height": st.height,
            "balances": balances,
            "positions": [self.position_json(p) for p in s["positions"]],
            "margin": margin,
            # Waiting triggers are open orders too (the open-order limit and cancel-all count
            # them); ``waiting_triggers`` says how many of them are.
            "open_orders": s["open_orders"],
            "waiting_triggers": s["waiting_triggers"],
        }

    def open_orders(self, text: str) -> dict[str, Any]:
        who = self.lookup_address(text)
        st = self.state
        acct = st.accounts.get(who)
        orders = []
        for order in acct.orders.values() if acct is not None else ():
            units = self.units[order.market_id]
            orders.append(
                {
                    "order_id": order.order_id,
                    "client_id": order.client_id,
                    "market": units.market.symbol,
                    "side": "buy" if order.is_buy else "sell",
                    "price": units.ticks_to_price(order.price_ticks),
                    "size": units.lots_to_size(order.size_lots),
                    "filled": units.lots_to_size(order.filled_lots),
                    "original_size": units.lots_to_size(order.orig_lots),
                    "tif": order.tif,
                    "kind": order.kind,
                    "reduce_only": order.reduce_only,
                    "timestamp_ms": order.timestamp_ms,
                    "status": ST_RESTING,
                    "trigger_kind": None,
                    "trigger_price": None,
                    "trigger_condition": None,
                }
            )
        if acct is not None:
            orders.extend(self.trigger_json(t) for t in account_triggers(acct))
        for o in orders:
            o["good_til_ms"] = good_til_ms(st, o["order_id"])
        twaps, groups = algo_listing(st, who, self.units)
        return {
            "address": who.hex(),
            "height": st.height,
            "orders": orders,
            "twaps": twaps,
            "tpsl_groups": groups,
        }

    def trigger_json(self, t: Trigger) -> dict[str, Any]:
        """A waiting stop / take-profit in the open-order form: ``price`` is the limit price
        (null for the market kinds), ``tif`` the one it is placed with when it fires."""
        units = self.units[t.market_id]
        size = units.lots_to_size(t.size_lots)
        return {
            "order_id": t.order_id,
            "client_id": t.client_id,
            "market": units.market.symbol,
            "side": "buy" if t.is_buy else "sell",
            "price": units.ticks_to_price(t.price_ticks) if t.is_limit else None,
            "size": size,
            "filled": "0",
            "original_size": size,
            "tif": t.placed_tif,
            "kind": t.kind,
            "reduce_only": t.reduce_only,
            "timestamp_ms": t.timestamp_ms,
            "status": ST_WAITING,
            "trigger_kind": "stop" if t.is_stop else "take_profit",
            "trigger_price": units.ticks_to_price(t.trigger_price_ticks),
            "trigger_condition": "mark_at_or_above" if t.fires_up else "mark_at_or_below",
        }

    def vault(self) -> dict[str, Any]:
        """The liquidation vault and its risk policy's view of it (``GET /v1/vault``)."""
        st = self.state
        v = vault_summary(st)
        markets = []
        for m in v["markets"]:
            units = self.units[m["market_id"]]
            size = m["size_lots"]
            markets.append(
                {
                    "market": units.market.symbol,
                    "side": "long" if size > 0 else "short",
                    "size": units.lots_to_size(abs(size)),
                    "entry_price": units.ticks_to_price(abs(m["entry_value"]) // abs(size)),
                    "mark_price": units.ticks_to_price(m["mark_price_ticks"]),
                    "notional": self.amount(0, m["notional_atoms"]),
                    "unrealized_pnl": self.signed_usdc(m["unrealized_pnl_atoms"]),
                    "exposure_cap": self.amount(0, m["cap_atoms"]),
                }
            )
        return {
            "address": VAULT.hex(),
            "height": v["height"],
            "insurance_fund": self.signed_usdc(v["usdc_atoms"]),
            "equity": self.signed_usdc(v["equity_atoms"]),
            "maintenance_margin": self.amount(0, v["maintenance_atoms"]),
            "under_water": v["under_water"],
            "high_water": self.amount(0, v["high_water_atoms"]),
            "loss_limit_ppm": v["loss_limit_ppm"],
            "loss_limit_equity": self.amount(0, v["loss_limit_equity_atoms"]),
            "over_loss_limit": v["equity_atoms"] < v["loss_limit_equity_atoms"],
            "exposure_cap_per_market": self.amount(
                0, st.parameters.vault_market_notional_max_atoms
            ),
            "positions": markets,
        }

    def history(
        self,
        text: str,
        kind: str,
        from_ms: int,
        to_ms: int,
        cursor_text: str | None,
        limit: int,
    ) -> dict[str, Any]:
        who = self.lookup_address(text)
        cursor = _cursor(cursor_text)
        self.backfill()
        ring, complete_from = self.index.account_items(who, kind)
        items, next_cursor = page(ring, from_ms, to_ms, cursor, limit)
        return {
            "address": who.hex(),
            kind: [self.event_json(i) for i in items],
            "next_cursor": next_cursor,
            "complete_from_height": complete_from,
        }

    def event_json(self, item: HistoryItem) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": item.kind, "height": item.height}
        body["timestamp_ms"] = item.timestamp_ms
        body["cursor"] = item.cursor()
        units = self.units.get(item.body.get("market_id", -1))
        for name, value in item.body.items():
            if units is not None and name.endswith("_ticks") and isinstance(value, int):
                body[name[: -len("_ticks")]] = units.ticks_to_price(value)
            elif units is not None and name.endswith("_lots") and isinstance(value, int):
                body[name[: -len("_lots")]] = units.lots_to_size(value)
            elif name.endswith("_atoms") and isinstance(value, int):
                asset = item.body.get("asset_id", 0)
                body[name[: -len("_atoms")]] = (
                    self.signed_usdc(value) if asset == 0 else self.amount(asset, value)
                )
            else:
                body[name] = _hex(value)
        if "market_id" in item.body and units is not None:
            body["market"] = units.market.symbol
            if item.kind == "fill":
                self.fill_fees_json(body, item.body, units.market)
        return body

    def fill_fees_json(self, body: dict[str, Any], fill: dict[str, Any], market: Market) -> None:
        """A fill's fees in the asset each side paid them in (perps: USDC; spot: what the side
        received, so the buyer's fee is in the base asset); a negative maker fee is a rebate."""
        taker_asset = market.quote_asset_id
        maker_asset = market.quote_asset_id
        if not market.is_perp:
            buyer, seller = market.base_asset_id, market.quote_asset_id
            taker_asset, maker_asset = (buyer, seller) if fill["taker_is_buy"] else (seller, buyer)
        for side, asset in (("taker", taker_asset), ("maker", maker_asset)):
            atoms = fill[f"{side}_fee_atoms"]
            text = self.amount(asset, abs(atoms))
            body[f"{side}_fee"] = f"-{text}" if atoms < 0 else text
            body[f"{side}_fee_asset"] = self.symbols[asset]

    # ---- history feed ------------------------------------------------------------------------

    def on_executed(self, executed: Executed) -> None:
        """``Node.subscribe`` callback: the recent history follows committed blocks."""
        self.on_block(executed.height, executed.timestamp_ms, executed.result.events)

    def on_block(self, height: int, timestamp_ms: int, events: list[Any]) -> None:
        self.backfill()
        if height > self.indexed_height:
            self.index.add_block(height, timestamp_ms, events)
            self.indexed_height = height

    def backfill(self) -> None:
        """Index the events of the last heights from storage once (after a restart)."""
        if self._backfilled or self.node.chain is None:
            return
        self._backfilled = True
        store = self.node.chain.store
        top = store.height
        # The newest heights whose events are all stored, oldest first: the index is complete
        # from the first of them (a pruned or unreadable height ends the range).
        found: list[tuple[int, int, list[Any]]] = []
        for height in range(top, max(1, top - BACKFILL_HEIGHTS + 1) - 1, -1):
            raw_events = store.get_events(height)
            raw_block = store.get_block(height)
            if raw_events is None or raw_block is None:
                break
            try:
                events = decode_raw(raw_events)
                timestamp_ms = Block.from_wire(raw_block).header.timestamp_ms
            except DecodeError:
                break
            found.append((height, timestamp_ms, events))
        self.index.start_height = found[-1][0] if found else top + 1
        for height, timestamp_ms, events in reversed(found):
            self.index.add_block(height, timestamp_ms, events)
        self.indexed_height = max(self.indexed_height, top)

    # ---- blocks and transactions -------------------------------------------------------------

    def _parse_height(self, text: str) -> int:
        chain = self.node.chain
        if chain is None:
            raise QueryError(503, "starting", "the node is still starting")
        if text == "latest":
            return chain.height
        return parse_uint(text, "height", 0, INT_MAX, code="bad_height")

    def block(self, text: str) -> dict[str, Any]:
        height = self._parse_height(text)
        chain = self.node.chain
        assert chain is not None
        if height == 0:
            raise QueryError(404, "no_block", "height 0 is the genesis state, not a block")
        raw_block = chain.store.get_block(height)
        raw_qc = chain.store.get_qc(height)
        if raw_block is None or raw_qc is None:
            raise QueryError(404, "no_block", f"no stored block at height {height}")
        block = Block.from_wire(raw_block)
        qc = QuorumCert.from_wire(raw_qc)
        return {
            "height": height,
            "block_hash": block.block_hash().hex(),
            "header": header_json(block),
            "tx_ids": [self.tx_id_of(raw).hex() for raw in block.payload],
            "commit_qc": qc_json(qc),
        }

    def tx_id_of(self, raw: bytes) -> bytes:
        """A payload transaction's id: from the node's decode cache when it is there (recent
        blocks), else by decoding; decoding thousands per block on the event loop is costly."""
        chain = self.node.chain
        hit = chain.decoded.get(raw) if chain is not None else None
        return hit[1] if hit is not None else Transaction.from_wire(raw).tx_id()

    def tx(self, text: str) -> dict[str, Any]:
        try:
            tx_id = bytes.fromhex(text)
        except ValueError:
            raise QueryError(400, "bad_tx_id", "tx id must be 64 hex characters") from None
        if len(tx_id) != 32:
            raise QueryError(400, "bad_tx_id", "tx id must be 64 hex characters")
        chain = self.node.chain
        if chain is None:
            raise QueryError(503, "starting", "the node is still starting")
        record = chain.store.get_tx_result(tx_id)
        if record is None:
            if tx_id in self.node.mempool:
                return {"tx_id": text.lower(), "status": "pending"}
            raise QueryError(404, "unknown_tx", "no committed or pending transaction with this id")
        return self.committed_tx_json(tx_id, record.height, record.index, record.result)

    def committed_tx_json(
        self, tx_id: bytes, height: int, index: int, result: Any
    ) -> dict[str, Any]:
        """A committed transaction: results per action, its events, its inclusion proof."""
        result_obj = result.to_obj() if hasattr(result, "to_obj") else result
        if isinstance(result_obj, bytes):
            result_obj = decode_raw(result_obj)
        _, code, message, actions = result_obj
        out: dict[str, Any] = {
            "tx_id": tx_id.hex(),
            "status": "committed",
            "height": height,
            "index": index,
            "code": code,
            "message": message,
        }
        chain = self.node.chain
        assert chain is not None
        raw_block = chain.store.get_block(height)
        if raw_block is None:
            # Pruned: the result is kept with the block, so this is a race with pruning.
            raise QueryError(404, "unknown_tx", f"block {height} of this transaction is pruned")
        block = Block.from_wire(raw_block)
        leaves = list(block.payload)
        tx = Transaction.from_wire(leaves[index])
        out["results"] = [
            self.action_result_json(a, r) for a, r in zip(tx.actions, actions, strict=True)
        ]
        out["signer"] = tx.signer.hex()
        out["nonce"] = tx.nonce
        out["block_hash"] = block.block_hash().hex()
        out["timestamp_ms"] = block.header.timestamp_ms
        out["events"] = self.tx_events_json(tx, actions, height, block.header.timestamp_ms)
        proof = inclusion_proof(leaves, index)
        out["inclusion_proof"] = {
            "leaf_index": index,
            "tree_size": len(leaves),
            "tx": leaves[index].hex(),
            "path": [h.hex() for h in proof.path],
            "root": tx_root(leaves).hex(),
            "header_payload_root": block.header.payload_root.hex(),
            # The header the path leads into; its commit QC is at GET /v1/blocks/{height}.
            "header": header_json(block),
        }
        return out

    def action_result_json(self, action: Any, result: Sequence[Any]) -> dict[str, Any]:
        """One action's result; ``filled`` is ``filled_lots`` in the market's size units."""
        out: dict[str, Any] = {"action": snake(type(action).__name__)}
        out.update(zip(TX_RESULT_FIELDS, result, strict=True))
        units = self.units.get(getattr(action, "market_id", -1))
        if units is not None and not isinstance(action, WithdrawRequest):
            out["filled"] = units.lots_to_size(out["filled_lots"])
        return out

    def tx_events_json(
        self, tx: Transaction, results: Sequence[Sequence[Any]], height: int, timestamp_ms: int
    ) -> list[dict[str, Any]]:
        chain = self.node.chain
        assert chain is not None
        raw_events = chain.store.get_events(height)
        if raw_events is None:
            return []
        events = decode_raw(raw_events)
        out = []
        for i in tx_event_indexes(tx, results, events):
            body = event_body(events[i])
            assert body is not None
            out.append(self.event_json(HistoryItem(height, i, timestamp_ms, events[i][0], body)))
        return out

    # ---- proofs ----------------------------------------------------------------------------

    def prove_account(self, who: bytes, height: int | None = None) -> list[ProofAt]:
        """Proofs of the account's balance and position entries at ``height`` (None: the
        latest), the listed markets' and assets' included, with the listing records that say
        which they are (worker thread). The listings are read first, at the height the first
        read resolved, so every read is of that one height."""
        chain = self.node.chain
        if chain is None:
            raise QueryError(503, "starting", "the node is still starting")
        try:
            at, listings = self.listings_at(height)
            return chain.store.prove_many(account_state_keys(chain.genesis, who, listings), at)
        except ProofHeightError as exc:
            raise QueryError(404, "height_not_provable", str(exc)) from None

    def listings_at(self, height: int | None) -> tuple[int, Listings]:
        """The proved height (``height``, or the latest now) and the markets and assets
        governance had listed by then, read from the listing records at that height
        (state_machine/proofkeys.py), in batches of ``LISTING_BATCH`` ids (worker thread)."""
        chain = self.node.chain
        assert chain is not None
        proven: dict[bytes, bytes | None] = {}
        at = height
        first_m, first_a = first_listed_ids(chain.genesis)
        while True:
            walk = listing_walk(chain.genesis, lambda k: (k in proven, proven.get(k)))
            if walk.error is not None:
                raise QueryError(500, "internal_error", walk.error)
            if walk.need is None and at is not None:
                return at, walk.listings
            start_m = first_m + len(walk.listings.markets)
            start_a = first_a + walk.listings.assets
            keys = [market_listing_key(start_m + i) for i in range(LISTING_BATCH)]
            keys += [asset_listing_key(start_a + i) for i in range(LISTING_BATCH)]
            proofs = chain.store.prove_many(keys, at)
            at = proofs[0].height
            proven.update((p.key, p.value) for p in proofs)

    def prove_record(self, key: bytes, height: int | None = None) -> ProofAt:
        """The proof of one state key at ``height`` (None: the latest; worker thread)."""
        chain = self.node.chain
        if chain is None:
            raise QueryError(503, "starting", "the node is still starting")
        try:
            return chain.store.prove_many([key], height)[0]
        except ProofHeightError as exc:
            raise QueryError(404, "height_not_provable", str(exc)) from None

    def record_proof_json(
        self,
        kind: str,
        ids: dict[str, str],
        proof: ProofAt,
        block: Block | BlockHeader,
        qc: QuorumCert,
    ) -> dict[str, Any]:
        """One record's proof in the same shape as an account's (``entries`` of one), with
        the kind and ids it answers, the certifying header and its commit QC."""
        return {"kind": kind, "ids": ids, **proofs_json([proof], block, qc)}

    def committed_height(self) -> int:
        """The store's latest committed height."""
        chain = self.node.chain
        assert chain is not None
        return chain.store.height

    def certificate(self, height: int) -> tuple[Block, QuorumCert] | None:
        """Block ``height`` and its commit QC if stored (worker thread)."""
        chain = self.node.chain
        assert chain is not None
        raw_block = chain.store.get_block(height)
        raw_qc = chain.store.get_qc(height)
        if raw_block is None or raw_qc is None:
            return None
        return Block.from_wire(raw_block), QuorumCert.from_wire(raw_qc)

    def account_proof_json(
        self, who: bytes, proofs: list[ProofAt], block: Block, qc: QuorumCert
    ) -> dict[str, Any]:
        """The proofs with the header of the next block (which carries their root) and the
        commit QC that signs that header."""
        return {"address": who.hex(), **proofs_json(proofs, block, qc)}


def proofs_json(
    proofs: list[ProofAt], block: Block | BlockHeader, qc: QuorumCert
) -> dict[str, Any]:
    """Proofs of keys at one height with block ``height + 1``'s header (which carries their
    root) and the commit QC that signs it (the block, or only its header: a stored hand-over
    certificate keeps the header)."""
    height = proofs[0].height
    root = proofs[0].state_root
    header = block if isinstance(block, BlockHeader) else block.header
    if header.state_root != root or header.height != height + 1:
        raise QueryError(500, "internal_error", "stored header disagrees with the state root")
    return {
        "height": height,
        "state_root": root.hex(),
        "entries": [
            {
                "key": p.key.hex(),
                "value": p.value.hex() if p.value is not None else None,
                "proof": p.proof.to_wire().hex(),
            }
            for p in proofs
        ],
        "certified_by": {
            "header": header_json(header),
            "block_hash": header.block_hash().hex(),
            "commit_qc": qc_json(qc),
        },
    }


def account_state_keys(genesis: Any, who: bytes, listings: Listings | None = None) -> list[bytes]:
    """The account's balance (per asset) and position (per perp) keys, genesis and listed,
    with the listing records that show which markets and assets exist: what holds its funds
    (state_machine/proofkeys.py).

    A light client derives the same list itself (cli/lightclient.py) and checks that the
    answer has exactly these keys, so none can be left out. Open orders (0x03) and triggers
    (0x0b) are keyed by market and order id, which a client cannot derive from the address, so
    they are not proven here. The sub-account record (0x42) proves whether the address is a
    sub-account and whose; the account's order-tools record (0x4b: the ids of its TWAPs, TP/SL
    groups and good-til records) is keyed by the address, so it is proven too."""
    return account_keys(genesis, who, listings)


def header_json(block: Block | BlockHeader) -> dict[str, Any]:
    h = block if isinstance(block, BlockHeader) else block.header
    return {
        "height": h.height,
        "view": h.view,
        "parent_hash": h.parent_hash.hex(),
        "timestamp_ms": h.timestamp_ms,
        "proposer": h.proposer.hex(),
        "payload_root": h.payload_root.hex(),
        "state_root": h.state_root.hex(),
        "wire": h.to_wire().hex(),
    }


def qc_json(qc: QuorumCert) -> dict[str, Any]:
    return {
        "phase": qc.phase,
        "view": qc.view,
        "height": qc.height,
        "block_hash": qc.block_hash.hex(),
        "signatures": [
            {"signer": s.signer.hex(), "signature": s.signature.hex()} for s in qc.signatures
        ],
        "wire": qc.to_wire().hex(),
    }


def event_names() -> dict[str, tuple[str, ...]]:
    return EVENT_FIELDS
