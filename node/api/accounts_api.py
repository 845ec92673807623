"""Read side of sub-accounts, agent keys and fee tiers (routes in node/api/app.py).

``GET /v1/accounts/{address}/subaccounts``: the address's sub-accounts (or, for a sub-account,
its master); ``.../agents``: the agent keys it approved (and whose agent the address itself is);
``.../fees``: its 14-day volume, tier and rates; ``GET /v1/fees``: the fee schedule. Reads of the
in-memory state between blocks, like every other account read (node/api/queries.py).
"""

from __future__ import annotations

from typing import Any

from node.api.queries import Queries
from state_machine.accounts.authority import subaccount_address
from state_machine.accounts.fees import tier_index
from state_machine.accounts.registry import DAY_MS, AccountsRegistry


def _registry(q: Queries) -> tuple[Any, AccountsRegistry]:
    st = q.state
    reg: AccountsRegistry = st.accts
    return st, reg


def subaccounts_json(q: Queries, text: str) -> dict[str, Any]:
    who = q.lookup_address(text)
    st, reg = _registry(q)
    rec = reg.masters.get(who)
    subs = []
    for index in range(rec.count if rec is not None else 0):
        sub = reg.subs[subaccount_address(who, index)]
        subs.append({"index": index, "address": sub.address.hex(), "name": sub.name})
    me = reg.subs.get(who)
    return {
        "address": who.hex(),
        "height": st.height,
        "master": me.master.hex() if me is not None else None,
        "index": me.index if me is not None else None,
        "subaccounts": subs,
        "max_subaccounts": reg.policy.max_subaccounts,
    }


def agents_json(q: Queries, text: str) -> dict[str, Any]:
    who = q.lookup_address(text)
    st, reg = _registry(q)
    mine = reg.agents_of.get(who, {})
    agents = [
        {
            "agent": key.hex(),
            "name": mine[key].name,
            "expires_at_ms": mine[key].expires_at_ms or None,
            "expired": mine[key].expired(st.timestamp_ms),
        }
        for key in sorted(mine)
    ]
    own = reg.agents.get(who)
    return {
        "address": who.hex(),
        "height": st.height,
        "agents": agents,
        "agent_of": own.account.hex() if own is not None else None,
        "max_agents": reg.policy.max_agents,
    }


def _tiers_json(q: Queries, reg: AccountsRegistry) -> list[dict[str, Any]]:
    return [
        {
            "tier": i,
            "min_volume": q.amount(0, t.min_volume_atoms),
            "taker_fee_ppm": t.taker_fee_ppm,
            "maker_fee_ppm": t.maker_fee_ppm,
        }
        for i, t in enumerate(reg.fees.tiers)
    ]


def fee_schedule_json(q: Queries) -> dict[str, Any]:
    st, reg = _registry(q)
    return {"height": st.height, "tiers": _tiers_json(q, reg), "window_days": 14}


def account_fees_json(q: Queries, text: str) -> dict[str, Any]:
    """The account's rolling volume, its tier (null: the markets' own rates) and its rates."""
    who = q.lookup_address(text)
    st, reg = _registry(q)
    rec = reg.volumes.get(who)
    volume = rec.total_atoms(st.timestamp_ms // DAY_MS) if rec is not None else 0
    tiers = reg.fees.tiers
    i = tier_index(tiers, volume) if tiers else -1
    rates = None
    if i >= 0:
        rates = {"taker_fee_ppm": tiers[i].taker_fee_ppm, "maker_fee_ppm": tiers[i].maker_fee_ppm}
    return {
        "address": who.hex(),
        "height": st.height,
        "volume_14d": q.amount(0, volume),
        "tier": i if i >= 0 else None,
        "rates": rates,
        "tiers": _tiers_json(q, reg),
    }
