"""Hypothesis strategies derived from the codec schemas, so every wire type is covered.

`strategy_for(cls)` builds random valid instances of any `@wire` class from its WIRE specs.
Fields whose valid values are narrower than their spec (checked in `validate()`) get an
override in OVERRIDES, keyed by (class name, field name).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from hypothesis import strategies as st

import state_machine.codec as codec
from state_machine.tx import CHAIN_ID_CHARS

OVERRIDES: dict[tuple[str, str], st.SearchStrategy[Any]] = {
    ("Transaction", "version"): st.just(1),
    ("Transaction", "chain_id"): st.text(alphabet=CHAIN_ID_CHARS, min_size=1, max_size=32),
}


def int_strategy(spec: codec.Int) -> st.SearchStrategy[int]:
    edges = st.sampled_from(
        sorted(
            {
                spec.lo,
                spec.hi,
                max(spec.lo, 0),
                min(spec.hi, 127),
                min(spec.hi, 128),
                min(spec.hi, 2**32),
            }
        )
    )
    return st.one_of(edges, st.integers(spec.lo, spec.hi))


def spec_strategy(spec: codec.Spec, owner: str, field: str) -> st.SearchStrategy[Any]:
    override = OVERRIDES.get((owner, field))
    if override is not None:
        return override
    if isinstance(spec, codec.Int):
        return int_strategy(spec)
    if isinstance(spec, codec.Enum):
        return st.sampled_from(sorted(spec.allowed))
    if isinstance(spec, codec.BoolSpec):
        return st.booleans()
    if isinstance(spec, codec.Bytes):
        if spec.exact is not None:
            return st.binary(min_size=spec.exact, max_size=spec.exact)
        return st.binary(max_size=min(spec.max_len, 96))
    if isinstance(spec, codec.Text):
        if spec.allowed_chars is not None:
            return st.text(alphabet=spec.allowed_chars, max_size=min(spec.max_len, 40))
        return st.text(max_size=min(spec.max_len, 40))
    if isinstance(spec, codec.Optional):
        return st.one_of(st.none(), spec_strategy(spec.inner, owner, field))
    if isinstance(spec, codec.ListOf):
        return st.lists(
            spec_strategy(spec.item, owner, field),
            min_size=spec.min_len,
            max_size=max(spec.min_len, min(spec.max_len, 4)),
        ).map(tuple)
    if isinstance(spec, codec.Struct):
        return strategy_for(spec.cls)
    if isinstance(spec, codec.Union):
        return st.one_of([strategy_for(m) for m in spec.members])
    raise TypeError(f"no strategy for spec {spec!r} ({owner}.{field})")


def strategy_for(cls: type[codec.Wire]) -> st.SearchStrategy[Any]:
    fields = {name: spec_strategy(spec, cls.__name__, name) for name, spec in cls.WIRE}
    return st.deferred(lambda: st.builds(cls, **fields))


def import_all_packages() -> None:
    for pkg_name in ("state_machine", "consensus", "p2p", "node"):
        pkg = importlib.import_module(pkg_name)
        for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{pkg_name}."):
            importlib.import_module(info.name)


def all_wire_types() -> list[type[codec.Wire]]:
    """Every concrete @wire class in the project's packages."""
    import_all_packages()
    out: list[type[codec.Wire]] = []
    stack = list(codec.Wire.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.WIRE and cls.__module__.split(".")[0] != "tests":
            out.append(cls)
    return sorted(set(out), key=lambda c: (c.__module__, c.__qualname__))
