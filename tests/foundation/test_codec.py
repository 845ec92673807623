"""Canonical encoding: round trips for every wire type, strictness, and hostile bytes."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from state_machine import codec
from state_machine.codec import DecodeError
from state_machine.tx import (
    ACTION,
    KIND_LIMIT,
    TIF_GTC,
    CancelAll,
    OraclePrice,
    OracleUpdate,
    PlaceOrder,
    Transaction,
    Transfer,
)
from tests.conftest import examples
from tests.wire_strategies import all_wire_types, strategy_for

WIRE_TYPES = all_wire_types()
IDS = [f"{c.__module__}.{c.__qualname__}" for c in WIRE_TYPES]


def test_every_transaction_type_is_discovered() -> None:
    names = {c.__name__ for c in WIRE_TYPES}
    assert {"Transaction", "PlaceOrder", "OracleUpdate", "OraclePrice"} <= names


@pytest.mark.parametrize("cls", WIRE_TYPES, ids=IDS)
@settings(max_examples=examples(30))
@given(data=st.data())
def test_roundtrip_object(cls: type[codec.Wire], data: st.DataObject) -> None:
    value = data.draw(strategy_for(cls))
    encoded = value.to_wire()
    assert cls.from_wire(encoded) == value


@pytest.mark.parametrize("cls", WIRE_TYPES, ids=IDS)
@settings(max_examples=examples(30))
@given(data=st.data())
def test_roundtrip_bytes(cls: type[codec.Wire], data: st.DataObject) -> None:
    encoded = data.draw(strategy_for(cls)).to_wire()
    assert cls.from_wire(encoded).to_wire() == encoded


def mutations() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.tuples(st.just("truncate"), st.integers(0, 10_000)),
        st.tuples(st.just("extend"), st.binary(min_size=1, max_size=16)),
        st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(1, 255)),
        st.tuples(st.just("swap_field"), st.integers(0, 100), st.sampled_from(SWAPS)),
    )


SWAPS: list[Any] = [
    None,
    True,
    False,
    -1,
    -(2**63),
    2**64 - 1,
    1.5,
    "x",
    b"",
    b"\x00" * 33,
    [],
    [1],
    {"a": 1},
]


def mutate(encoded: bytes, mutation: tuple[Any, ...]) -> bytes:
    kind = mutation[0]
    if kind == "truncate":
        return encoded[: mutation[1] % max(len(encoded), 1)]
    if kind == "extend":
        return encoded + bytes(mutation[1])
    if kind == "flip":
        i = mutation[1] % len(encoded)
        return encoded[:i] + bytes([encoded[i] ^ mutation[2]]) + encoded[i + 1 :]
    obj = msgpack.unpackb(encoded, raw=False)
    # Swap one top-level (or, for a union member, post-tag) field for a value of another type.
    i = mutation[1] % len(obj)
    obj[i] = mutation[2]
    out: bytes = msgpack.packb(obj, use_bin_type=True)
    return out


def decode_or_decode_error(cls: type[codec.Wire], data: bytes) -> codec.Wire | None:
    try:
        value = cls.from_wire(data)
    except DecodeError:
        return None
    # Anything that decodes is canonical: it re-encodes to exactly the input.
    assert value.to_wire() == data
    return value


@pytest.mark.parametrize("cls", WIRE_TYPES, ids=IDS)
@settings(max_examples=examples(50))
@given(data=st.data())
def test_mutated_bytes_only_raise_decode_error(cls: type[codec.Wire], data: st.DataObject) -> None:
    encoded = data.draw(strategy_for(cls)).to_wire()
    decode_or_decode_error(cls, mutate(encoded, data.draw(mutations())))


@pytest.mark.parametrize("cls", WIRE_TYPES, ids=IDS)
@settings(max_examples=examples(50))
@given(blob=st.binary(max_size=300))
def test_random_bytes_only_raise_decode_error(cls: type[codec.Wire], blob: bytes) -> None:
    decode_or_decode_error(cls, blob)


@settings(max_examples=examples(200))
@given(
    obj=st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**64 - 1)
        | st.binary(max_size=40)
        | st.text(max_size=10)
        | st.floats(allow_nan=False),
        lambda children: st.lists(children, max_size=11),
        max_leaves=40,
    )
)
def test_random_msgpack_structures_only_raise_decode_error(obj: Any) -> None:
    data = msgpack.packb(obj, use_bin_type=True)
    decode_or_decode_error(Transaction, data)
    decode_or_decode_error(PlaceOrder, data)


# ---- explicit strictness cases, one per rule ----------------------------------------------


def order(**kw: Any) -> PlaceOrder:
    base: dict[str, Any] = dict(
        market_id=1, is_buy=True, kind=KIND_LIMIT, tif=TIF_GTC, price_ticks=100, size_lots=2
    )
    base.update(kw)
    return PlaceOrder(**base)


def place_obj(**kw: Any) -> list[Any]:
    obj: list[Any] = order(**kw).to_obj()
    return obj


def reason_of(cls: type[codec.Wire], obj: Any) -> str:
    with pytest.raises(DecodeError) as info:
        cls.from_wire(msgpack.packb(obj, use_bin_type=True))
    return info.value.reason


def test_negative_u64_names_field() -> None:
    obj = place_obj()
    obj[5] = -1
    assert "PlaceOrder.price_ticks" in reason_of(PlaceOrder, obj)


def test_u32_overflow_rejected() -> None:
    obj = place_obj()
    obj[1] = 2**32
    assert "market_id: 4294967296 out of range for u32" in reason_of(PlaceOrder, obj)


def test_bool_is_not_an_int() -> None:
    obj = place_obj()
    obj[1] = True  # market_id
    assert "market_id" in reason_of(PlaceOrder, obj)


def test_int_is_not_a_bool() -> None:
    obj = place_obj()
    obj[2] = 1  # is_buy
    assert "is_buy" in reason_of(PlaceOrder, obj)


def test_float_rejected() -> None:
    obj = place_obj()
    obj[5] = 100.0
    assert "price_ticks" in reason_of(PlaceOrder, obj)


def test_unknown_enum_value_rejected() -> None:
    obj = place_obj()
    obj[4] = 9  # tif
    assert "time in force" in reason_of(PlaceOrder, obj)


def test_wrong_key_length_rejected() -> None:
    obj = Transfer(b"\x01" * 32, 0, 5).to_obj()
    obj[1] = b"\x01" * 31
    assert "Transfer.to: expected 32 bytes" in reason_of(Transfer, obj)


def test_wrong_field_count_rejected() -> None:
    obj = place_obj()
    assert "expected 10 fields" in reason_of(PlaceOrder, [*obj, 0])


def test_unknown_union_tag_rejected() -> None:
    with pytest.raises(DecodeError, match="unknown action tag 99"):
        codec.decode_union(ACTION, msgpack.packb([99, 1]), 100)


def test_maps_rejected() -> None:
    assert "malformed msgpack" in reason_of(CancelAll, {"market_id": 1})


def test_list_length_limit() -> None:
    prices = [[i, 1] for i in range(65)]
    assert "exceeds limit of 64" in reason_of(OracleUpdate, [10, prices])


def test_empty_list_below_minimum() -> None:
    assert "need at least 1" in reason_of(OracleUpdate, [10, []])


def test_total_size_limit() -> None:
    big = b"\x00" * (Transaction.MAX_BYTES + 1)
    with pytest.raises(DecodeError, match="exceeds limit"):
        Transaction.from_wire(big)


def test_trailing_bytes_rejected() -> None:
    data = order().to_wire() + b"\x00"
    with pytest.raises(DecodeError, match="malformed msgpack"):
        PlaceOrder.from_wire(data)


def test_non_minimal_int_encoding_rejected() -> None:
    canonical = CancelAll(5).to_wire()
    # Same value, but the 5 written as a uint64 (0xcf) instead of a positive fixint.
    wide = bytes([0x92, 0x04, 0xCF]) + (5).to_bytes(8, "big")
    assert msgpack.unpackb(wide) == msgpack.unpackb(canonical)
    with pytest.raises(DecodeError, match="non-canonical"):
        CancelAll.from_wire(wide)


def test_nested_struct_errors_name_the_path() -> None:
    obj = OracleUpdate((OraclePrice(1, 5),)).to_obj()
    obj[1][0][1] = "five"
    assert "OracleUpdate.prices[0].OraclePrice.price_ticks" in reason_of(OracleUpdate, obj)


def test_deeply_nested_garbage_is_a_decode_error() -> None:
    data = b"\x91" * 100_000 + b"\x00"
    with pytest.raises(DecodeError):
        Transaction.from_wire(data[: Transaction.MAX_BYTES])
