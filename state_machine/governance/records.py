"""Governance records and their state keys (prefixes 0x30..0x37).

=====  ==========================  ==================================================
prefix key                         value (msgpack array)
=====  ==========================  ==================================================
0x30   market_id(4)                a market's governed parameters (``Market`` fields),
                                   present once a proposal listed or changed it
0x31   market_id(4)                market controls: [state, cause, reason, since_ms,
                                   oi_cap_lots, breakers(6), ref_mark, ref_time_ms,
                                   cross_since_ms] (absent at the defaults: active,
                                   no cap, breakers off)
0x32   asset_id(4)                 a listed asset: ``Asset`` fields
0x33   proposal_id(8)              proposal (``Proposal.state_obj``)
0x34   proposal_id(8) voter(32)    vote: [option, height]
0x35   ``35 00``                   governance meta: [next_proposal_id]
0x36   ``36 00``                   governed exchange parameters (``Parameters`` fields)
0x37   ``37 00``                   block limits: [[from_height, max_block_txs,
                                   max_block_bytes, max_block_actions], ...] by height
                                   (chainparams.py)
=====  ==========================  ==================================================

Every record is absent on a chain that never had a proposal, so such a chain's entries and
state root are those it had before governance existed.
"""

from __future__ import annotations

from typing import Any

from state_machine.genesis import Asset, Market, Parameters
from state_machine.governance.content import ACTIVE, BREAKERS_OFF, BreakerConfig

P_GOV_MARKET = 0x30
P_GOV_CONTROLS = 0x31
P_GOV_ASSET = 0x32
P_GOV_PROPOSAL = 0x33
P_GOV_VOTE = 0x34
P_GOV_META = 0x35
P_GOV_PARAMS = 0x36
P_GOV_BLOCK_LIMITS = 0x37
GOV_PREFIXES = range(0x30, 0x38)

# Proposal statuses.
VOTING = "voting"
PASSED = "passed"  # waiting for its execution height
REJECTED = "rejected"  # quorum reached, threshold not
NO_QUORUM = "no_quorum"
EXECUTED = "executed"
FAILED = "failed"  # passed, but the change was no longer valid at its execution height
STATUSES = (VOTING, PASSED, REJECTED, NO_QUORUM, EXECUTED, FAILED)

# What set a market's state.
CAUSE_NONE = ""
CAUSE_GOVERNANCE = "governance"
CAUSE_ORACLE_STALE = "oracle_stale"
CAUSE_MARK_MOVE = "mark_move"
CAUSE_BAND_CROSS = "band_cross"


def _u32(x: int) -> bytes:
    return x.to_bytes(4, "big")


def _u64(x: int) -> bytes:
    return x.to_bytes(8, "big")


class Record:
    """Base of the governance records: dirty flag for the exchange's write set."""

    __slots__ = ("dirty",)

    def __init__(self) -> None:
        self.dirty = False


class GovernedMarket(Record):
    __slots__ = ("market",)

    def __init__(self, market: Market) -> None:
        super().__init__()
        self.market = market

    def state_key(self) -> bytes:
        return bytes((P_GOV_MARKET,)) + _u32(self.market.market_id)

    def state_obj(self) -> list[Any]:
        obj: list[Any] = self.market.to_obj()
        return obj


class ListedAsset(Record):
    __slots__ = ("asset",)

    def __init__(self, asset: Asset) -> None:
        super().__init__()
        self.asset = asset

    def state_key(self) -> bytes:
        return bytes((P_GOV_ASSET,)) + _u32(self.asset.asset_id)

    def state_obj(self) -> list[Any]:
        obj: list[Any] = self.asset.to_obj()
        return obj


class GovernedParameters(Record):
    __slots__ = ("parameters",)

    def __init__(self, parameters: Parameters) -> None:
        super().__init__()
        self.parameters = parameters

    def state_key(self) -> bytes:
        return bytes((P_GOV_PARAMS, 0))

    def state_obj(self) -> list[Any]:
        obj: list[Any] = self.parameters.to_obj()
        return obj


class BlockLimitsRecord(Record):
    """The governed block limits by height: ``entries`` are (from_height, max_block_txs,
    max_block_bytes, max_block_actions), ascending; before the first, each node's own
    configuration rules (as before governance could set them)."""

    __slots__ = ("entries",)

    def __init__(self, entries: tuple[tuple[int, int, int, int], ...] = ()) -> None:
        super().__init__()
        self.entries = entries

    def state_key(self) -> bytes:
        return bytes((P_GOV_BLOCK_LIMITS, 0))

    def state_obj(self) -> list[Any]:
        return [list(e) for e in self.entries]


class MarketControls(Record):
    """A market's trading state, open-interest cap and breakers, with the breakers' memory
    (the mark at the start of the move window, since when the book crosses the band)."""

    __slots__ = (
        "breakers",
        "cause",
        "cross_since_ms",
        "market_id",
        "oi_cap_lots",
        "reason",
        "ref_mark",
        "ref_time_ms",
        "since_ms",
        "state",
    )

    def __init__(self, market_id: int) -> None:
        super().__init__()
        self.market_id = market_id
        self.state = ACTIVE
        self.cause = CAUSE_NONE
        self.reason = ""
        self.since_ms = 0
        self.oi_cap_lots = 0
        self.breakers: BreakerConfig = BREAKERS_OFF
        self.ref_mark = 0
        self.ref_time_ms = 0
        self.cross_since_ms = 0

    def state_key(self) -> bytes:
        return bytes((P_GOV_CONTROLS,)) + _u32(self.market_id)

    def is_default(self) -> bool:
        return (
            self.state == ACTIVE
            and self.since_ms == 0
            and self.oi_cap_lots == 0
            and self.breakers == BREAKERS_OFF
            and self.ref_mark == 0
            and self.cross_since_ms == 0
        )

    def state_obj(self) -> list[Any] | None:
        if self.is_default():
            return None
        return [
            self.state,
            self.cause,
            self.reason,
            self.since_ms,
            self.oi_cap_lots,
            self.breakers.to_obj(),
            self.ref_mark,
            self.ref_time_ms,
            self.cross_since_ms,
        ]

    def restore(self, v: list[Any]) -> None:
        """The inverse of :meth:`state_obj`."""
        self.state, self.cause, self.reason, self.since_ms, self.oi_cap_lots = v[:5]
        self.breakers = BreakerConfig.from_obj(v[5])
        self.ref_mark, self.ref_time_ms, self.cross_since_ms = v[6:9]


class Proposal(Record):
    __slots__ = (
        "abstain_power",
        "content",
        "execute_height",
        "message",
        "no_power",
        "proposal_id",
        "proposer",
        "status",
        "submit_height",
        "title",
        "total_power",
        "voting_end_height",
        "yes_power",
    )

    def __init__(
        self,
        proposal_id: int,
        proposer: bytes,
        title: str,
        content: bytes,
        submit_height: int,
        voting_end_height: int,
    ) -> None:
        super().__init__()
        self.proposal_id = proposal_id
        self.proposer = proposer
        self.title = title
        self.content = content  # canonical bytes of a content.CONTENT member
        self.submit_height = submit_height
        self.voting_end_height = voting_end_height
        self.status = VOTING
        self.execute_height = 0
        self.yes_power = 0
        self.no_power = 0
        self.abstain_power = 0
        self.total_power = 0
        self.message = ""  # why it failed at execution

    def state_key(self) -> bytes:
        return bytes((P_GOV_PROPOSAL,)) + _u64(self.proposal_id)

    def state_obj(self) -> list[Any]:
        return [
            self.proposer,
            self.title,
            self.content,
            self.submit_height,
            self.voting_end_height,
            self.status,
            self.execute_height,
            self.yes_power,
            self.no_power,
            self.abstain_power,
            self.total_power,
            self.message,
        ]

    @classmethod
    def from_state(cls, key: bytes, v: list[Any]) -> Proposal:
        """The inverse of :meth:`state_key` / :meth:`state_obj`."""
        p = cls(int.from_bytes(key[1:9], "big"), v[0], v[1], v[2], v[3], v[4])
        p.status, p.execute_height = v[5], v[6]
        p.yes_power, p.no_power, p.abstain_power, p.total_power, p.message = v[7:12]
        return p


class VoteRecord(Record):
    __slots__ = ("height", "option", "proposal_id", "voter")

    def __init__(self, proposal_id: int, voter: bytes, option: int, height: int) -> None:
        super().__init__()
        self.proposal_id = proposal_id
        self.voter = voter
        self.option = option
        self.height = height

    def state_key(self) -> bytes:
        return bytes((P_GOV_VOTE,)) + _u64(self.proposal_id) + self.voter

    def state_obj(self) -> list[Any]:
        return [self.option, self.height]


class GovMeta(Record):
    __slots__ = ("next_proposal_id",)

    def __init__(self) -> None:
        super().__init__()
        self.next_proposal_id = 1

    def state_key(self) -> bytes:
        return bytes((P_GOV_META, 0))

    def state_obj(self) -> list[Any] | None:
        return None if self.next_proposal_id == 1 else [self.next_proposal_id]


class GovernanceState:
    """Every governance record, in insertion order (entries() sorts)."""

    __slots__ = (
        "active",
        "assets",
        "block_limits",
        "controls",
        "markets",
        "meta",
        "parameters",
        "proposals",
        "votes",
    )

    def __init__(self) -> None:
        self.meta = GovMeta()
        self.proposals: dict[int, Proposal] = {}
        self.votes: dict[tuple[int, bytes], VoteRecord] = {}
        self.controls: dict[int, MarketControls] = {}  # only markets that ever had one
        self.markets: dict[int, GovernedMarket] = {}
        self.assets: dict[int, ListedAsset] = {}
        self.parameters: GovernedParameters | None = None
        self.block_limits: BlockLimitsRecord | None = None
        # Derived: ids of the proposals voting or waiting for execution (not stored).
        self.active: dict[int, None] = {}

    def objects(self) -> list[Any]:
        objs: list[Any] = [self.meta, *self.proposals.values(), *self.votes.values()]
        objs += [*self.controls.values(), *self.markets.values(), *self.assets.values()]
        if self.parameters is not None:
            objs.append(self.parameters)
        if self.block_limits is not None:
            objs.append(self.block_limits)
        return objs
