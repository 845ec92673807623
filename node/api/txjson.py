"""The JSON form of a signed transaction, for programs that cannot send msgpack.

The JSON mirrors the wire schema (``state_machine/tx.py``) field by field, so a client can
build exactly the bytes it signs:

```json
{"version": 1, "chain_id": "perpbft-local", "signer": "<64 hex>", "nonce": 1700000000000,
 "expires_at_ms": 0, "signature": "<128 hex>",
 "actions": [{"type": "place_order", "market_id": 2, "is_buy": true, "kind": 0, "tif": 0,
              "price": "60000.5", "size": "0.01", "trigger_price_ticks": 0,
              "reduce_only": false, "client_id": 0, "stp": 0}]}
```

* integers are JSON numbers or decimal strings (u64 values beyond 2**53 need strings);
* bytes are lowercase hex; booleans are JSON booleans;
* an action's ``type`` is the snake_case name of its wire type (``place_order``,
  ``cancel_order``, ``cancel_by_client_id``, ``cancel_all``, ``amend_order``, ``transfer``,
  ``withdraw_request``, ``set_leverage``, ``adjust_isolated_margin``, ``oracle_update``,
  ``place_order_extended`` (its ``order`` a ``place_order`` object in ticks and lots),
  ``place_twap``, ``cancel_twap``, ``set_position_tpsl``, ``cancel_tpsl``);
* for order actions, ``price``/``size``/``trigger_price`` decimal strings may replace
  ``price_ticks``/``size_lots``/``trigger_price_ticks``; they are converted exactly with the
  market's tick and lot or rejected (``tick_size``, ``lot_size``, ``bad_decimal``);
* for ``transfer`` and ``withdraw_request``, an ``amount`` decimal string may replace
  ``amount_atoms``; it is converted with the asset's decimals or rejected
  (``too_many_decimals``, ``bad_decimal``, ``unknown_asset``).

The signature covers the canonical signing bytes of the resulting wire transaction
(``Transaction.signing_bytes``), never the JSON text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from node.api.params import plain_uint
from node.api.units import MarketUnits, UnitError, decimal_to_atoms
from state_machine import codec
from state_machine.codec import DecodeError
from state_machine.tx import ACTION, Action, Transaction

MarketLookup = Callable[[int], MarketUnits | None]
AssetDecimals = Callable[[int], int | None]

DECIMAL_ALIASES = {
    "price": "price_ticks",
    "size": "size_lots",
    "trigger_price": "trigger_price_ticks",
}
# Amounts of an asset (transfer, withdraw_request), converted with the asset's decimals.
AMOUNT_ALIASES = {"amount": "amount_atoms"}


class TxJsonError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


ACTION_TYPES: dict[str, type[codec.Wire]] = {snake(c.__name__): c for c in ACTION.members}


def _int_value(value: Any, where: str) -> Any:
    """A decimal string of at most 20 ASCII digits (a u64 or i64) as its integer; anything
    else is left for the codec to reject with a precise reason."""
    if not isinstance(value, str):
        return value
    magnitude = plain_uint(value.removeprefix("-"), digits_max=20)
    if magnitude is None:
        return value
    return -magnitude if value.startswith("-") else magnitude


def _value_from_json(value: Any, spec: codec.Spec, where: str) -> Any:
    if isinstance(spec, codec.Bytes):
        if not isinstance(value, str):
            raise TxJsonError("malformed", f"{where}: expected a hex string")
        try:
            return bytes.fromhex(value[2:] if value.startswith("0x") else value)
        except ValueError:
            raise TxJsonError("malformed", f"{where}: not valid hex") from None
    if isinstance(spec, codec.Int | codec.Enum):
        return _int_value(value, where)
    if isinstance(spec, codec.Optional):
        return None if value is None else _value_from_json(value, spec.inner, where)
    if isinstance(spec, codec.ListOf):
        if not isinstance(value, list) or len(value) > spec.max_len:
            raise TxJsonError("malformed", f"{where}: expected a list of at most {spec.max_len}")
        return [_value_from_json(v, spec.item, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(spec, codec.Struct):
        return _struct_from_json(value, spec.cls, where, None)
    return value


def _struct_from_json(
    data: Any,
    cls: type[codec.Wire],
    where: str,
    markets: MarketLookup | None,
    assets: AssetDecimals | None = None,
) -> list[Any]:
    if not isinstance(data, dict):
        raise TxJsonError("malformed", f"{where}: expected an object")
    names = {n for n, _ in cls.WIRE}
    data = dict(data)
    data.pop("type", None)
    _apply_decimal_aliases(data, names, where, markets)
    _apply_amount_aliases(data, names, where, assets)
    for key in data:
        if key not in names:
            raise TxJsonError("malformed", f"{where}.{key}: unknown field")
    out: list[Any] = []
    for name, spec in cls.WIRE:
        if name not in data:
            raise TxJsonError("malformed", f"{where}.{name}: missing field")
        out.append(_value_from_json(data[name], spec, f"{where}.{name}"))
    return out


def _apply_decimal_aliases(
    data: dict[str, Any], names: set[str], where: str, markets: MarketLookup | None
) -> None:
    aliases = [a for a in DECIMAL_ALIASES if a in data and DECIMAL_ALIASES[a] in names]
    if not aliases:
        return
    if markets is None:
        raise TxJsonError("malformed", f"{where}: decimal fields need a market")
    market_id = _int_value(data.get("market_id"), f"{where}.market_id")
    units = markets(market_id) if isinstance(market_id, int) else None
    if units is None:
        raise TxJsonError("unknown_market", f"{where}.market_id: unknown market {market_id!r}")
    for alias in aliases:
        target = DECIMAL_ALIASES[alias]
        if target in data:
            raise TxJsonError("malformed", f"{where}: give {alias} or {target}, not both")
        text = data.pop(alias)
        try:
            if alias == "size":
                data[target] = units.size_to_lots(text, f"{where}.{alias}")
            else:
                data[target] = units.price_to_ticks(text, f"{where}.{alias}")
        except UnitError as exc:
            raise TxJsonError(exc.code, exc.message) from None


def _apply_amount_aliases(
    data: dict[str, Any], names: set[str], where: str, assets: AssetDecimals | None
) -> None:
    aliases = [a for a in AMOUNT_ALIASES if a in data and AMOUNT_ALIASES[a] in names]
    if not aliases:
        return
    asset_id = _int_value(data.get("asset_id"), f"{where}.asset_id")
    decimals = assets(asset_id) if assets is not None and isinstance(asset_id, int) else None
    if decimals is None:
        raise TxJsonError("unknown_asset", f"{where}.asset_id: unknown asset {asset_id!r}")
    for alias in aliases:
        target = AMOUNT_ALIASES[alias]
        if target in data:
            raise TxJsonError("malformed", f"{where}: give {alias} or {target}, not both")
        try:
            data[target] = decimal_to_atoms(data.pop(alias), decimals, f"{where}.{alias}")
        except UnitError as exc:
            raise TxJsonError(exc.code, exc.message) from None


def transaction_from_json(
    data: Any, markets: MarketLookup, assets: AssetDecimals | None = None
) -> Transaction:
    """Build the wire transaction a JSON body describes; TxJsonError says what is wrong."""
    if not isinstance(data, dict):
        raise TxJsonError("malformed", "transaction: expected a JSON object")
    body = dict(data)
    actions = body.pop("actions", None)
    if not isinstance(actions, list):
        raise TxJsonError("malformed", "transaction.actions: expected a list")
    action_objs: list[Any] = []
    for i, action in enumerate(actions[:64]):
        where = f"actions[{i}]"
        if not isinstance(action, dict) or action.get("type") not in ACTION_TYPES:
            raise TxJsonError(
                "malformed", f"{where}.type: expected one of {', '.join(ACTION_TYPES)}"
            )
        cls = ACTION_TYPES[action["type"]]
        action_objs.append([cls.TAG, *_struct_from_json(action, cls, where, markets, assets)])
    if len(actions) > 64:
        action_objs.append(None)  # let the codec reject the over-long list by its rule
    body["actions"] = []
    fields = _struct_from_json(body, Transaction, "transaction", None)
    names = [n for n, _ in Transaction.WIRE]
    fields[names.index("actions")] = action_objs
    try:
        return Transaction.from_obj(fields)
    except DecodeError as exc:
        raise TxJsonError("malformed", exc.reason) from None


def _value_to_json(value: Any, spec: codec.Spec) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(spec, codec.ListOf):
        return [_value_to_json(v, spec.item) for v in value]
    if isinstance(spec, codec.Union):
        return action_to_json(value)
    if isinstance(spec, codec.Struct):
        return {n: _value_to_json(getattr(value, n), s) for n, s in spec.cls.WIRE}
    if isinstance(spec, codec.Optional):
        return None if value is None else _value_to_json(value, spec.inner)
    return value


def action_to_json(action: Action | codec.Wire) -> dict[str, Any]:
    out: dict[str, Any] = {"type": snake(type(action).__name__)}
    for name, spec in action.WIRE:
        out[name] = _value_to_json(getattr(action, name), spec)
    return out


def transaction_to_json(tx: Transaction) -> dict[str, Any]:
    """The JSON form (ticks and lots, no decimal aliases) of a wire transaction."""
    out: dict[str, Any] = {}
    for name, spec in Transaction.WIRE:
        out[name] = _value_to_json(getattr(tx, name), spec)
    return out
