"""Result codes, statuses, reasons and event fields of the order tools (stable, machine
readable; docs/API.md lists them)."""

from __future__ import annotations

INVALID_GOOD_TIL = "invalid_good_til"
TPSL_WRONG_SIDE = "tpsl_wrong_side"
NO_POSITION = "no_position"
UNKNOWN_TPSL = "unknown_tpsl"
INVALID_TWAP = "invalid_twap"
UNKNOWN_TWAP = "unknown_twap"
TOO_MANY_TWAPS = "too_many_twaps"

# Statuses in action results.
ST_RUNNING = "running"  # a TWAP was accepted
ST_ARMED = "armed"  # a TP/SL pair waits on the position

# Reasons: an order or trigger cancelled at its good-til time; why a group or TWAP ended.
R_GOOD_TIL = "good_til"
R_OCO = "oco"  # the other member fired or was cancelled
R_POSITION_CLOSED = "position_closed"
R_PARENT_CANCELLED = "parent_cancelled"
R_REPLACED = "replaced"
R_COMPLETED = "completed"
R_USER = "user"

ALGO_EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "twap_accepted": (
        "market_id",
        "twap_id",
        "account",
        "is_buy",
        "size_lots",
        "duration_ms",
        "slices",
        "randomize",
        "reduce_only",
        "max_slippage_ppm",
    ),
    # One slice placed: its size, the placement's code and order id, lots filled by the slice
    # and by the whole TWAP so far.
    "twap_slice": (
        "market_id",
        "twap_id",
        "account",
        "slice",
        "size_lots",
        "code",
        "order_id",
        "filled_lots",
        "twap_filled_lots",
    ),
    "twap_finished": ("market_id", "twap_id", "account", "filled_lots", "reason"),
    "tpsl_accepted": (
        "market_id",
        "group_id",
        "account",
        "parent_order_id",
        "tp_trigger_ticks",
        "sl_trigger_ticks",
    ),
    "tpsl_armed": ("market_id", "group_id", "account", "tp_order_id", "sl_order_id", "size_lots"),
    "tpsl_resized": ("market_id", "group_id", "account", "size_lots"),
    "tpsl_cancelled": ("market_id", "group_id", "account", "reason"),
}
