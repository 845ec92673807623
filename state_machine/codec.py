"""Canonical encoding shared by every package.

Theory of operation
-------------------
Every wire type is a frozen, slotted dataclass that encodes to a msgpack *array* in a fixed
field order (never a map, whose key order would be free). One value has exactly one encoding:

* ``encode`` packs with ``use_bin_type=True`` (bytes are ``bin``, text is ``str``);
* ``decode`` unpacks with ``raw=False, strict_map_key=True`` and hard limits on buffer, string,
  binary and array sizes, then checks every field's type, integer range, byte length and list
  length against the type's schema, and finally re-encodes the result and requires the bytes to
  be identical.  The last step rejects every non-minimal msgpack form (an int in a wider format
  than needed, a str8 where fixstr fits, ...), so ``encode(decode(b)) == b`` holds for every
  ``b`` that decodes at all.  Without it two nodes could hash two different byte strings for one
  logical message.

Anything wrong raises exactly one exception type, :class:`DecodeError`, whose message names the
field path (``PlaceOrder.price_ticks: expected u64, got -1``).  Hostile bytes must never escape
as IndexError/TypeError/KeyError, because the node treats a DecodeError as "drop and count
against the peer" and anything else as a bug.

Schemas are declared with small field specs (:class:`U64`, :class:`Bytes`, :class:`ListOf`,
:class:`Union`, ...) in a ``WIRE`` class variable; :class:`Wire` derives ``to_obj``/``from_obj``
(the nested Python form) and ``to_wire``/``from_wire`` (bytes) from it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar, Self, TypeVar, dataclass_transform

import msgpack

MAX_U8 = 2**8 - 1
MAX_U16 = 2**16 - 1
MAX_U32 = 2**32 - 1
MAX_U64 = 2**64 - 1
MIN_I64 = -(2**63)
MAX_I64 = 2**63 - 1

# Hard ceiling on any single message this codec will look at. Types pass smaller limits.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class DecodeError(ValueError):
    """Bytes or an object that are not a valid encoding of the expected type.

    ``reason`` names the offending field path so a peer's bad message can be logged usefully.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def encode(obj: Any) -> bytes:
    """Canonical msgpack bytes of a plain object (lists, ints, bytes, str, bool, None)."""
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def decode_raw(data: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> Any:
    """Unpack untrusted bytes into plain objects with explicit size limits.

    Maps are rejected (no wire type uses them), as are ext types, floats are left for the
    schema check to reject.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise DecodeError(f"message of {len(data)} bytes exceeds limit of {max_bytes}")
    if len(data) == 0:
        raise DecodeError("empty message")
    limit = min(len(data), max_bytes)
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_str_len=limit,
            max_bin_len=limit,
            max_array_len=limit,
            max_map_len=0,
            max_ext_len=0,
        )
    except (ValueError, msgpack.UnpackException) as exc:  # ExtraData, StackError, OutOfData...
        raise DecodeError(f"malformed msgpack: {type(exc).__name__}: {exc}") from None


# --------------------------------------------------------------------------------------------
# Field specs. Each spec checks one plain value on decode and turns a Python value back into
# a plain value on encode.
# --------------------------------------------------------------------------------------------


class Spec:
    """A field's schema: ``check`` validates a decoded plain value, ``dump`` produces one."""

    def check(self, value: Any, path: str) -> Any:
        raise NotImplementedError

    def dump(self, value: Any) -> Any:
        return value


@dataclasses.dataclass(frozen=True, slots=True)
class Int(Spec):
    lo: int
    hi: int
    name: str

    def check(self, value: Any, path: str) -> int:
        if type(value) is not int:
            raise DecodeError(f"{path}: expected {self.name}, got {type(value).__name__}")
        if not self.lo <= value <= self.hi:
            raise DecodeError(f"{path}: {value} out of range for {self.name}")
        return value


U8 = Int(0, MAX_U8, "u8")
U16 = Int(0, MAX_U16, "u16")
U32 = Int(0, MAX_U32, "u32")
U64 = Int(0, MAX_U64, "u64")
I64 = Int(MIN_I64, MAX_I64, "i64")


@dataclasses.dataclass(frozen=True, slots=True)
class Enum(Spec):
    """An unsigned small integer restricted to an explicit set of values."""

    allowed: frozenset[int]
    name: str

    def check(self, value: Any, path: str) -> int:
        if type(value) is not int:
            raise DecodeError(f"{path}: expected {self.name}, got {type(value).__name__}")
        if value not in self.allowed:
            raise DecodeError(f"{path}: {value} is not a valid {self.name}")
        return value


@dataclasses.dataclass(frozen=True, slots=True)
class BoolSpec(Spec):
    def check(self, value: Any, path: str) -> bool:
        if type(value) is not bool:
            raise DecodeError(f"{path}: expected bool, got {type(value).__name__}")
        return value


Bool = BoolSpec()


@dataclasses.dataclass(frozen=True, slots=True)
class Bytes(Spec):
    """Binary of an exact length (``exact``) or at most ``max_len`` bytes."""

    exact: int | None = None
    max_len: int = 0

    def check(self, value: Any, path: str) -> bytes:
        if type(value) is not bytes:
            raise DecodeError(f"{path}: expected bytes, got {type(value).__name__}")
        if self.exact is not None:
            if len(value) != self.exact:
                raise DecodeError(f"{path}: expected {self.exact} bytes, got {len(value)}")
        elif len(value) > self.max_len:
            raise DecodeError(f"{path}: {len(value)} bytes exceeds limit of {self.max_len}")
        return value


@dataclasses.dataclass(frozen=True, slots=True)
class Text(Spec):
    max_len: int
    allowed_chars: str | None = None

    def check(self, value: Any, path: str) -> str:
        if type(value) is not str:
            raise DecodeError(f"{path}: expected str, got {type(value).__name__}")
        if len(value) > self.max_len:
            raise DecodeError(f"{path}: {len(value)} chars exceeds limit of {self.max_len}")
        if self.allowed_chars is not None and any(c not in self.allowed_chars for c in value):
            raise DecodeError(f"{path}: contains characters outside [{self.allowed_chars}]")
        return value


@dataclasses.dataclass(frozen=True, slots=True)
class Optional(Spec):
    """``nil`` or a value of ``inner``."""

    inner: Spec

    def check(self, value: Any, path: str) -> Any:
        if value is None:
            return None
        return self.inner.check(value, path)

    def dump(self, value: Any) -> Any:
        return None if value is None else self.inner.dump(value)


@dataclasses.dataclass(frozen=True, slots=True)
class ListOf(Spec):
    """An array of at most ``max_len`` items of ``item``; decodes to a tuple."""

    item: Spec
    max_len: int
    min_len: int = 0

    def check(self, value: Any, path: str) -> tuple[Any, ...]:
        if type(value) is not list:
            raise DecodeError(f"{path}: expected list, got {type(value).__name__}")
        if len(value) > self.max_len:
            raise DecodeError(f"{path}: {len(value)} items exceeds limit of {self.max_len}")
        if len(value) < self.min_len:
            raise DecodeError(f"{path}: {len(value)} items, need at least {self.min_len}")
        check = self.item.check
        return tuple(check(v, f"{path}[{i}]") for i, v in enumerate(value))

    def dump(self, value: Any) -> Any:
        dump = self.item.dump
        return [dump(v) for v in value]


@dataclasses.dataclass(frozen=True, slots=True)
class Struct(Spec):
    """A nested wire type encoded inline as its array."""

    cls: type[Wire]

    def check(self, value: Any, path: str) -> Wire:
        return self.cls.from_obj(value, path)

    def dump(self, value: Any) -> Any:
        return value.to_obj()


@dataclasses.dataclass(frozen=True, slots=True)
class Union(Spec):
    """A tagged union: ``[tag, field0, field1, ...]`` where ``tag`` selects the type.

    Each member class declares a unique ``TAG`` class variable.
    """

    members: tuple[type[Wire], ...]
    name: str

    def __post_init__(self) -> None:
        tags = [m.TAG for m in self.members]
        assert len(set(tags)) == len(tags), f"duplicate tags in union {self.name}"
        assert all(t >= 0 for t in tags), f"untagged member in union {self.name}"

    def by_tag(self) -> dict[int, type[Wire]]:
        return {m.TAG: m for m in self.members}

    def check(self, value: Any, path: str) -> Wire:
        if type(value) is not list or not value:
            raise DecodeError(f"{path}: expected tagged {self.name} array")
        tag = value[0]
        if type(tag) is not int:
            raise DecodeError(f"{path}: {self.name} tag must be an int")
        for member in self.members:
            if tag == member.TAG:
                return member.from_fields(value[1:], path)
        raise DecodeError(f"{path}: unknown {self.name} tag {tag}")

    def dump(self, value: Any) -> Any:
        assert isinstance(value, self.members), f"{type(value).__name__} not in {self.name}"
        return [value.TAG, *value.fields_obj()]


# --------------------------------------------------------------------------------------------
# The base class of all wire types.
# --------------------------------------------------------------------------------------------


class Wire:
    """Mixin for frozen slotted dataclasses with a ``WIRE`` schema.

    ``WIRE`` lists ``(field_name, spec)`` in encoding order and must match the dataclass fields.
    A union member also sets ``TAG``; it then encodes as ``[TAG, *fields]`` on its own too.
    ``MAX_BYTES`` bounds ``from_wire`` input for this type.

    ``OPTIONAL_TAIL`` (k) makes the last k fields optional sections added after the type was
    first used on the wire: a trailing run of None among them is left out of the encoding, so a
    value without them encodes (and hashes) exactly as before they existed, and the decoder
    takes them as None when absent. An explicit trailing nil is refused (not canonical).
    """

    __slots__ = ()
    WIRE: ClassVar[tuple[tuple[str, Spec], ...]] = ()
    TAG: ClassVar[int] = -1
    MAX_BYTES: ClassVar[int] = MAX_MESSAGE_BYTES
    OPTIONAL_TAIL: ClassVar[int] = 0

    @classmethod
    def _check_schema(cls) -> None:
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        wire_names = [n for n, _ in cls.WIRE]
        assert names == wire_names, f"{cls.__name__}: WIRE {wire_names} != fields {names}"

    def fields_obj(self) -> list[Any]:
        out = [spec.dump(getattr(self, name)) for name, spec in self.WIRE]
        if self.OPTIONAL_TAIL:
            required = len(self.WIRE) - self.OPTIONAL_TAIL
            while len(out) > required and out[-1] is None:
                out.pop()
        return out

    def to_obj(self) -> Any:
        if self.TAG >= 0:
            return [self.TAG, *self.fields_obj()]
        return self.fields_obj()

    def to_wire(self) -> bytes:
        return encode(self.to_obj())

    @classmethod
    def from_fields(cls, values: Sequence[Any], path: str) -> Self:
        path = f"{path}.{cls.__name__}" if path else cls.__name__
        if cls.OPTIONAL_TAIL or len(values) != len(cls.WIRE):
            values = _fill_optional_tail(cls, values, path)
        pairs = zip(cls.WIRE, values, strict=True)
        args = [spec.check(v, f"{path}.{name}") for (name, spec), v in pairs]
        obj = cls(*args)
        obj.validate(path)
        return obj

    @classmethod
    def from_obj(cls, obj: Any, path: str = "") -> Self:
        if type(obj) is not list:
            raise DecodeError(f"{path or cls.__name__}: expected array, got {type(obj).__name__}")
        if cls.TAG >= 0:
            if not obj or obj[0] != cls.TAG or type(obj[0]) is not int:
                raise DecodeError(f"{path or cls.__name__}: expected tag {cls.TAG}")
            return cls.from_fields(obj[1:], path)
        return cls.from_fields(obj, path)

    @classmethod
    def from_wire(cls, data: bytes) -> Self:
        obj = decode_raw(data, cls.MAX_BYTES)
        result = cls.from_obj(obj)
        # Canonical means the input is exactly msgpack's minimal packing of what it decoded
        # to. Every spec's ``check`` returns its value unchanged and ``dump`` gives it back,
        # so re-packing the decoded plain values equals ``result.to_wire()`` (property-tested)
        # at a fraction of the cost of rebuilding them from the object.
        if encode(obj) != bytes(data):
            raise DecodeError(f"{cls.__name__}: non-canonical encoding")
        return result

    def validate(self, path: str) -> None:
        """Cross-field checks beyond the per-field specs; raise DecodeError naming ``path``."""


def _fill_optional_tail(cls: type[Wire], values: Sequence[Any], path: str) -> list[Any]:
    """Values of a type with optional trailing sections, the absent ones as None."""
    n = len(cls.WIRE)
    required = n - cls.OPTIONAL_TAIL
    if not required <= len(values) <= n:
        raise DecodeError(f"{path}: expected {n} fields, got {len(values)}")
    if len(values) > required and values[-1] is None:
        raise DecodeError(
            f"{path}: an absent optional section is left out, not nil (not canonical)"
        )
    return [*values, *([None] * (n - len(values)))]


_W = TypeVar("_W", bound=Wire)


@dataclass_transform(frozen_default=True)
def wire(cls: type[_W]) -> type[_W]:
    """Class decorator: make ``cls`` a frozen slotted dataclass and check its WIRE schema."""
    out: type[_W] = dataclasses.dataclass(frozen=True, slots=True)(cls)
    out._check_schema()
    return out


def decode_union(union: Union, data: bytes, max_bytes: int) -> Wire:
    """Decode bytes holding one member of ``union`` canonically."""
    obj = decode_raw(data, max_bytes)
    result = union.check(obj, "")
    if encode(union.dump(result)) != bytes(data):
        raise DecodeError(f"{union.name}: non-canonical encoding")
    return result
