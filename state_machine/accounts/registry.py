"""The records of sub-accounts, agent keys, fee tiers and trading volume (keys 0x40..0x44).

=====  ==================================  ============================================
prefix key                                  value (msgpack array)
=====  ==================================  ============================================
0x40   account(32)                          14-day volume: [[day, volume_atoms], ...] (days
                                            since the epoch of block time, ascending, at most
                                            14; written only while fee tiers exist)
0x41   master(32)                           sub-accounts created: [count]
0x42   subaccount(32)                       sub-account: [master, index, name]
0x43   agent(32)                            agent key: [account, name, expires_at_ms]
0x44   (the prefix alone)                   fee tiers: [[min_volume_atoms, taker_fee_ppm,
                                            maker_fee_ppm], ...] (absent: market fees)
=====  ==================================  ============================================

Everything else here is derived and rebuilt on load: an account's agents (``agents_of``) and the
volume totals cached per day. No record is ever iterated in hash order: listings sort.
"""

from __future__ import annotations

from typing import Any

from state_machine.accounts.policy import DEFAULT_POLICY, AccountsPolicy, FeeTier
from state_machine.genesis import Genesis
from state_machine.invariants import check

P_VOLUME = 0x40
P_MASTER = 0x41
P_SUBACCOUNT = 0x42
P_AGENT = 0x43
P_FEE_TIERS = 0x44
ACCOUNTS_PREFIXES = frozenset({P_VOLUME, P_MASTER, P_SUBACCOUNT, P_AGENT, P_FEE_TIERS})

DAY_MS = 86_400_000
VOLUME_WINDOW_DAYS = 14


class VolumeRecord:
    """An account's traded notional (USDC atoms) per day of block time, the last 14 days."""

    __slots__ = ("account", "buckets", "cache_day", "cache_total", "dirty")

    def __init__(self, account: bytes) -> None:
        self.account = account
        self.buckets: list[list[int]] = []  # [day, volume_atoms], ascending days
        self.dirty = False
        self.cache_day = -1  # derived: the 14-day total as of cache_day
        self.cache_total = 0

    def total_atoms(self, day: int) -> int:
        """The volume of the 14 days ending with ``day`` (``day`` included)."""
        if day != self.cache_day:
            first = day - VOLUME_WINDOW_DAYS + 1
            self.cache_total = sum(v for d, v in self.buckets if first <= d <= day)
            self.cache_day = day
        return self.cache_total

    def add(self, day: int, atoms: int) -> None:
        """Count ``atoms`` on ``day``; days that left the window are dropped (bounded record)."""
        self.total_atoms(day)
        b = self.buckets
        if b and b[-1][0] == day:
            b[-1][1] += atoms
        else:
            check(not b or b[-1][0] < day, "volume day went backwards")
            b.append([day, atoms])
            first = day - VOLUME_WINDOW_DAYS + 1
            while b[0][0] < first:
                del b[0]
        self.cache_total += atoms

    def state_key(self) -> bytes:
        return bytes((P_VOLUME,)) + self.account

    def state_obj(self) -> list[Any] | None:
        return [list(x) for x in self.buckets] if self.buckets else None


class MasterRecord:
    """How many sub-accounts a master has created (their indexes are 0..count-1)."""

    __slots__ = ("count", "dirty", "master")

    def __init__(self, master: bytes, count: int = 0) -> None:
        self.master = master
        self.count = count
        self.dirty = False

    def state_key(self) -> bytes:
        return bytes((P_MASTER,)) + self.master

    def state_obj(self) -> list[Any] | None:
        return [self.count] if self.count else None


class SubAccount:
    __slots__ = ("address", "dirty", "index", "master", "name")

    def __init__(self, address: bytes, master: bytes, index: int, name: str) -> None:
        self.address = address
        self.master = master
        self.index = index
        self.name = name
        self.dirty = False

    def state_key(self) -> bytes:
        return bytes((P_SUBACCOUNT,)) + self.address

    def state_obj(self) -> list[Any] | None:
        return [self.master, self.index, self.name]


class Agent:
    """An approved agent key. ``live`` False once revoked (the record is then deleted)."""

    __slots__ = ("account", "agent", "dirty", "expires_at_ms", "live", "name")

    def __init__(self, agent: bytes, account: bytes, name: str, expires_at_ms: int) -> None:
        self.agent = agent
        self.account = account
        self.name = name
        self.expires_at_ms = expires_at_ms
        self.live = True
        self.dirty = False

    def expired(self, now_ms: int) -> bool:
        return self.expires_at_ms != 0 and self.expires_at_ms <= now_ms

    def state_key(self) -> bytes:
        return bytes((P_AGENT,)) + self.agent

    def state_obj(self) -> list[Any] | None:
        return [self.account, self.name, self.expires_at_ms] if self.live else None


class FeeSchedule:
    """The fee tiers in force (empty: every market's own fees, and no volume is recorded)."""

    __slots__ = ("dirty", "tiers")

    def __init__(self) -> None:
        self.tiers: tuple[FeeTier, ...] = ()
        self.dirty = False

    def state_key(self) -> bytes:
        return bytes((P_FEE_TIERS,))

    def state_obj(self) -> list[Any] | None:
        return [t.to_obj() for t in self.tiers] if self.tiers else None


class AccountsRegistry:
    """Sub-accounts, agents, fee tiers and volumes of one exchange state."""

    __slots__ = ("agents", "agents_of", "fees", "masters", "policy", "subs", "volumes")

    def __init__(self, genesis: Genesis) -> None:
        policy = genesis.accounts_policy
        self.policy: AccountsPolicy = policy if policy is not None else DEFAULT_POLICY
        self.fees = FeeSchedule()  # from_genesis sets the genesis tiers; entries restore them
        self.volumes: dict[bytes, VolumeRecord] = {}
        self.masters: dict[bytes, MasterRecord] = {}
        self.subs: dict[bytes, SubAccount] = {}
        self.agents: dict[bytes, Agent] = {}
        self.agents_of: dict[bytes, dict[bytes, Agent]] = {}  # derived: account -> its agents

    def objects(self) -> list[Any]:
        objs: list[Any] = [self.fees]
        objs.extend(self.volumes.values())
        objs.extend(self.masters.values())
        objs.extend(self.subs.values())
        objs.extend(self.agents.values())
        return objs

    def add_agent(self, a: Agent) -> None:
        self.agents[a.agent] = a
        self.agents_of.setdefault(a.account, {})[a.agent] = a

    def drop_agent(self, a: Agent) -> None:
        a.live = False
        del self.agents[a.agent]
        mine = self.agents_of[a.account]
        del mine[a.agent]
        if not mine:
            del self.agents_of[a.account]

    def volume(self, account: bytes) -> VolumeRecord:
        rec = self.volumes.get(account)
        if rec is None:
            rec = VolumeRecord(account)
            self.volumes[account] = rec
        return rec

    def load(self, key: bytes, v: list[Any]) -> None:
        """Restore one record from its entry (the inverse of its state_key and state_obj)."""
        p = key[0]
        if p == P_VOLUME:
            self.volume(key[1:33]).buckets = [[d, x] for d, x in v]
        elif p == P_MASTER:
            self.masters[key[1:33]] = MasterRecord(key[1:33], v[0])
        elif p == P_SUBACCOUNT:
            self.subs[key[1:33]] = SubAccount(key[1:33], v[0], v[1], v[2])
        elif p == P_AGENT:
            self.add_agent(Agent(key[1:33], v[0], v[1], v[2]))
        else:
            check(p == P_FEE_TIERS and len(key) == 1, f"unknown accounts key {key.hex()}")
            self.fees.tiers = tuple(FeeTier.from_obj(t) for t in v)
