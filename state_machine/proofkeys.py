"""The state keys of an account proof, as a node and a light client both derive them.

An account's funds are its balances (``01 account asset``) and perp records
(``02 account market``), one per asset and perp *in state at the proved height*: the genesis
ones and those governance listed since. A light client trusts nothing the node says about
which markets exist, so the answer proves the listings too: listed market and asset ids are
consecutive (a listing must take the next id, ``governance/markets.py``), so the records
``30 market`` (a listed market's parameters) for ids ``g+1, g+2, ...`` above the highest
genesis market are present up to the last listed one, and the proof of the first absent one
shows there is no other; likewise ``32 asset`` above the highest genesis asset. A delisted
market keeps its records, so its perp record is still proven (it holds the realised PnL of
the closed position, or proves that nothing is left). Besides: the sub-account record (0x42)
and the order-tools record (0x4b), which the address names.

``listing_walk`` reads the listings out of proven values; ``account_keys`` gives the exact
key list a proof must cover, listing keys included (cli/lightclient.py, node/api/queries.py;
the web page's codec.js mirrors it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from state_machine.algo.records import P_ACCOUNT_TOOLS
from state_machine.codec import DecodeError, decode_raw
from state_machine.genesis import MARKET_PERP, Genesis
from state_machine.governance.records import P_GOV_ASSET, P_GOV_MARKET

P_BALANCE = 0x01
P_POSITION = 0x02
P_SUBACCOUNT = 0x42
MARKET_KIND_FIELD = 2  # index of ``kind`` in a market record (``Market.WIRE``)
LISTINGS_MAX = 4_096  # a walk stops here (ids are u32; governance lists a few at a time)


def _u32(x: int) -> bytes:
    return x.to_bytes(4, "big")


def market_listing_key(market_id: int) -> bytes:
    return bytes((P_GOV_MARKET,)) + _u32(market_id)


def asset_listing_key(asset_id: int) -> bytes:
    return bytes((P_GOV_ASSET,)) + _u32(asset_id)


def first_listed_ids(genesis: Genesis) -> tuple[int, int]:
    """(first market id, first asset id) a listing can take: one above the genesis ones."""
    m = max((mk.market_id for mk in genesis.markets), default=-1) + 1
    a = max((ak.asset_id for ak in genesis.assets), default=-1) + 1
    return m, a


def record_is_perp(value: bytes) -> bool | None:
    """Whether a market record (``30`` value) is a perp; None if it does not decode."""
    try:
        obj = decode_raw(value)
    except DecodeError:
        return None
    if not isinstance(obj, list) or len(obj) <= MARKET_KIND_FIELD:
        return None
    kind = obj[MARKET_KIND_FIELD]
    return kind == MARKET_PERP if isinstance(kind, int) else None


class Listings:
    """The listed markets (id, is perp) and the number of listed assets at one height."""

    __slots__ = ("assets", "markets")

    def __init__(self, markets: Sequence[tuple[int, bool]] = (), assets: int = 0) -> None:
        self.markets = list(markets)
        self.assets = assets


class WalkResult:
    """What a listing walk found: the listings, and why it stopped short if it did (``need``:
    a key without a proven value at hand; ``error``: a record that does not decode)."""

    __slots__ = ("error", "listings", "need")

    def __init__(self, listings: Listings, need: bytes | None, error: str | None) -> None:
        self.listings = listings
        self.need = need
        self.error = error


def listing_walk(
    genesis: Genesis, lookup: Callable[[bytes], tuple[bool, bytes | None]]
) -> WalkResult:
    """Walk the listing records up from the first listed ids. ``lookup(key)`` answers
    (known, value): known False when no proven value for ``key`` is at hand."""
    first_m, first_a = first_listed_ids(genesis)
    out = Listings()
    for i in range(LISTINGS_MAX):
        key = market_listing_key(first_m + i)
        known, value = lookup(key)
        if not known:
            return WalkResult(out, key, None)
        if value is None:
            break
        perp = record_is_perp(value)
        if perp is None:
            return WalkResult(out, None, f"market listing record {key.hex()} does not decode")
        out.markets.append((first_m + i, perp))
    for i in range(LISTINGS_MAX):
        key = asset_listing_key(first_a + i)
        known, value = lookup(key)
        if not known:
            return WalkResult(out, key, None)
        if value is None:
            break
        out.assets += 1
    return WalkResult(out, None, None)


def listing_keys(genesis: Genesis, listings: Listings) -> list[bytes]:
    """The listed markets' and assets' record keys and the first free id of each."""
    first_m, first_a = first_listed_ids(genesis)
    keys = [market_listing_key(first_m + i) for i in range(len(listings.markets) + 1)]
    keys += [asset_listing_key(first_a + i) for i in range(listings.assets + 1)]
    return keys


def account_keys(genesis: Genesis, who: bytes, listings: Listings | None = None) -> list[bytes]:
    """Every key an account proof covers, sorted: balances per asset and perp records per
    perp (genesis and listed), the listing records that say which are listed, the
    sub-account and order-tools records."""
    listings = listings if listings is not None else Listings()
    _, first_a = first_listed_ids(genesis)
    asset_ids = [a.asset_id for a in genesis.assets]
    asset_ids += [first_a + i for i in range(listings.assets)]
    perp_ids = [m.market_id for m in genesis.markets if m.is_perp]
    perp_ids += [mid for mid, perp in listings.markets if perp]
    keys = [bytes((P_BALANCE,)) + who + _u32(a) for a in asset_ids]
    keys += [bytes((P_POSITION,)) + who + _u32(m) for m in perp_ids]
    keys += listing_keys(genesis, listings)
    keys.append(bytes((P_SUBACCOUNT,)) + who)
    keys.append(bytes((P_ACCOUNT_TOOLS,)) + who)
    return sorted(keys)
