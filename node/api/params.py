"""Client input the API parses itself: integers in paths and queries, and JSON documents.

Every route and the WebSocket go through these two parsers, so one rule holds everywhere:
input a client controls is checked against a range or a size before Python turns it into an
object, and a failure is an :class:`InputError` (a 4xx with a code), never an exception from
deep inside (``OverflowError`` packing a huge height, ``RecursionError`` from ``json.loads``
on deep nesting, ``ValueError`` from ``int("²")``, which ``str.isdigit`` accepts).

JSON depth is checked before ``json.loads`` runs, because the standard decoder recurses once
per nesting level: a body of 60,000 ``[`` exhausts the interpreter's stack. The check counts
brackets outside strings in one linear pass, and only for documents that hold more brackets
than the depth limit (the common small document skips it).
"""

from __future__ import annotations

import json
import re
from typing import Any

# Heights, times and nonces are unsigned 64-bit on the wire but stored and compared as
# signed 64-bit keys; nothing legitimate reaches 2**63.
INT_MAX = 2**63 - 1
INT_DIGITS_MAX = 19
JSON_DEPTH_MAX = 32

# Escapes are matched as one token so an escaped quote never toggles the in-string state.
_JSON_TOKEN = re.compile(r'\\.|["\[\]{}]', re.DOTALL)


class InputError(Exception):
    """A client's mistake: HTTP status, machine-readable code, one-line message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def plain_uint(text: str, digits_max: int = INT_DIGITS_MAX) -> int | None:
    """The value of ``text`` if it is 1..``digits_max`` ASCII digits, else None."""
    if not text or len(text) > digits_max or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def parse_uint(text: str, name: str, lo: int, hi: int, code: str = "bad_parameter") -> int:
    """A non-negative decimal integer in ``lo..hi`` (``hi`` at most :data:`INT_MAX`)."""
    if hi > INT_MAX or lo < 0:
        raise ValueError(f"range {lo}..{hi} of {name} is outside 0..2**63-1")
    value = plain_uint(text)
    if value is None:
        raise InputError(400, code, f"{name} must be a non-negative integer")
    if not lo <= value <= hi:
        raise InputError(400, code, f"{name} must be between {lo} and {hi}")
    return value


def json_too_deep(text: str, depth_max: int) -> bool:
    """Whether ``text`` nests brackets (outside strings) more than ``depth_max`` deep.

    Exact for every prefix that is valid JSON, which is all ``json.loads`` reads before it
    stops at the first error."""
    if text.count("[") + text.count("{") <= depth_max:
        return False
    depth = 0
    in_string = False
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        if token == '"':
            in_string = not in_string
        elif in_string or len(token) == 2:
            continue
        elif token in "[{":
            depth += 1
            if depth > depth_max:
                return True
        else:
            depth -= 1
    return False


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(
    data: bytes | str,
    depth_max: int = JSON_DEPTH_MAX,
    *,
    depth_code: str = "malformed",
) -> Any:
    """``data`` (UTF-8 if bytes) as a JSON value, nested at most ``depth_max`` deep.

    Not JSON (bad UTF-8, syntax, ``NaN``, an integer over Python's digit limit):
    ``400 malformed_json``. Nested deeper: ``400 <depth_code>``."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(400, "malformed_json", "body is not valid UTF-8") from None
    else:
        text = data
    if json_too_deep(text, depth_max):
        raise InputError(400, depth_code, f"JSON nested deeper than {depth_max} levels")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except ValueError:
        raise InputError(400, "malformed_json", "not valid JSON") from None
