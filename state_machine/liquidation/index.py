"""The risk index: price bands of healthy margin units (derived data, never stored), so that
a block evaluates only the units a mark move may have hurt. See liquidation/risk.py.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from typing import TYPE_CHECKING, Any

from state_machine.invariants import InvariantError

if TYPE_CHECKING:  # typing only: adl.py imports the state, which imports this index
    from state_machine.liquidation.adl import AdlRankings

Band = tuple[int, int, int, int, int]  # (market, mark lo, mark hi, funded lo, funded hi)


class RiskIndex:
    """Price bands of healthy units (derived, not stored); see the module docstring."""

    __slots__ = ("adl", "adl_checks", "bands", "check_adl", "edges", "pending", "ready", "watch")

    def __init__(self) -> None:
        # (market, edge kind) -> sorted (edge, unit); kinds: 0 mark lo, 1 mark hi,
        # 2 funded lo, 3 funded hi
        self.edges: dict[tuple[int, int], list[tuple[int, bytes]]] = {}
        self.bands: dict[bytes, list[Band]] = {}
        self.watch: dict[bytes, None] = {}  # units looked at every block
        self.pending: dict[bytes, None] = {}  # units changed by liquidations, for next block
        self.ready = False
        # The block's ADL rankings, during its liquidation phase only (liquidation/adl.py).
        self.adl: AdlRankings | None = None
        # Self-check of the kept ADL rankings (liquidation/adl.py): off, as on a node; tests
        # switch it on and read how many comparisons ran.
        self.check_adl = False
        self.adl_checks = 0

    def drop(self, key: bytes) -> None:
        for band in self.bands.pop(key, ()):
            mid = band[0]
            for kind in range(4):
                lst = self.edges[(mid, kind)]
                item = (band[kind + 1], key)
                i = bisect_left(lst, item)
                if i == len(lst) or lst[i] != item:  # check(), without a call per band edge
                    raise InvariantError("risk band missing")
                del lst[i]

    def drop_many(self, keys: list[bytes]) -> None:
        """``drop`` for many units at once: one filtering pass over each edge list they are in
        instead of a search and a list deletion (a memmove of the list's tail) per band edge,
        which makes dropping thousands of units (a crash cascade) quadratic."""
        gone: set[bytes] = set()
        # A band has one entry in each of its market's four edge lists: count bands per market
        # (not per list: no tuple built and hashed per band edge).
        per_market: dict[int, int] = {}
        for key in keys:
            bands = self.bands.pop(key, None)
            if bands is None:
                continue  # not banded (or listed twice)
            gone.add(key)
            for band in bands:
                mid = band[0]
                per_market[mid] = per_market.get(mid, 0) + 1
        for mid, count in sorted(per_market.items()):
            for kind in range(4):
                name = (mid, kind)
                # Any: items typed as tuples would be unpacked and rebuilt by compiled code.
                lst: list[Any] = self.edges[name]
                kept = [item for item in lst if item[1] not in gone]
                if len(lst) - len(kept) != count:
                    raise InvariantError("risk band missing")
                self.edges[name] = kept

    def add(self, key: bytes, bands: list[Band]) -> None:
        self.bands[key] = bands
        edges = self.edges
        for band in bands:
            mid = band[0]
            for kind in range(4):
                insort(edges.setdefault((mid, kind), []), (band[kind + 1], key))

    def place(self, key: bytes, bands: list[Band] | None) -> None:
        """Band a healthy unit, or watch it every block if it has no sound band."""
        if bands is None:
            self.watch[key] = None
        else:
            self.add(key, bands)

    def crossed(self, mid: int, mark: int, funded: int) -> list[bytes]:
        """Units whose band in ``mid`` no longer contains the mark or the funded price."""
        out: list[bytes] = []
        for kind, price in ((0, mark), (2, funded)):
            lo = self.edges.get((mid, kind))
            if lo:
                i = len(lo)
                while i > 0 and lo[i - 1][0] > price:
                    i -= 1
                out.extend(k for _, k in lo[i:])
            hi = self.edges.get((mid, kind + 1))
            if hi:
                j = 0
                while j < len(hi) and hi[j][0] < price:
                    j += 1
                out.extend(k for _, k in hi[:j])
        return out
