"""Result codes, statuses and cancel reasons of the order actions (stable, machine readable;
docs/API.md lists them). The codes shared by every domain live in state_machine.results."""

from __future__ import annotations

UNKNOWN_ORDER = "unknown_order"
INVALID_ORDER = "invalid_order"
LOT_SIZE = "lot_size"
TICK_SIZE = "tick_size"
PRICE_BAND = "price_band"
NO_REFERENCE_PRICE = "no_reference_price"
MIN_NOTIONAL = "min_notional"
DUPLICATE_CLIENT_ID = "duplicate_client_id"
TOO_MANY_ORDERS = "too_many_orders"
REDUCE_ONLY_WOULD_INCREASE = "reduce_only_would_increase"
POST_ONLY_WOULD_CROSS = "post_only_would_cross"
FOK_NOT_FILLED = "fok_not_filled"
NO_LIQUIDITY = "no_liquidity"
SELF_TRADE = "self_trade"
# Market states and open-interest caps (state_machine/governance).
MARKET_HALTED = "market_halted"
MARKET_CLOSE_ONLY = "market_close_only"
MARKET_DELISTED = "market_delisted"
OPEN_INTEREST_CAP = "open_interest_cap"

# Order statuses reported in results and events.
ST_RESTING = "resting"
ST_PARTIAL = "partially_filled"
ST_FILLED = "filled"
ST_CANCELLED = "cancelled"
ST_WAITING = "waiting"  # a trigger order waiting for its trigger price

# Cancel reasons.
R_USER = "user"
R_IOC = "ioc"
R_SELF_TRADE = "self_trade"
R_REDUCE_ONLY = "reduce_only"
R_AMEND = "amend"
