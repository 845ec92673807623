"""Governance reads: proposals, their votes and live tallies, and a market's state.

Routes (docs/API.md, "Governance"): ``GET /v1/gov/proposals`` (newest first, optional
``status``), ``GET /v1/gov/proposals/{id}`` (with its votes), ``GET /v1/gov/proposals/{id}/tally``
(the votes weighed with the voting power now: what the tally would say if voting ended with
the last committed block). A market's state is part of every market answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from node.api.params import INT_MAX, InputError, parse_uint
from node.api.units import MarketUnits
from state_machine.codec import DecodeError, ListOf, Struct, Wire
from state_machine.genesis import MARKET_KIND_NAMES, Market
from state_machine.governance.actions import VOTE_OPTIONS
from state_machine.governance.content import (
    ACTIVE,
    BREAKERS_OFF,
    CONTENT_KINDS,
    STATE_NAMES,
    decode_content,
)
from state_machine.governance.engine import tally, tally_outcome
from state_machine.governance.records import STATUSES, Proposal
from state_machine.state import ExchangeCore

if TYPE_CHECKING:
    from node.api.queries import Queries

PROPOSALS_LIMIT_MAX = 200


def wire_json(obj: Wire) -> dict[str, Any]:
    """A wire value as JSON: fields by name, nested values as objects, bytes as hex."""
    out: dict[str, Any] = {}
    for name, spec in obj.WIRE:
        value = getattr(obj, name)
        if isinstance(spec, Struct):
            out[name] = wire_json(value)
        elif isinstance(spec, ListOf) and isinstance(spec.item, Struct):
            out[name] = [wire_json(v) for v in value]
        elif isinstance(value, bytes):
            out[name] = value.hex()
        elif isinstance(obj, Market) and name == "kind":
            out[name] = MARKET_KIND_NAMES[value]
        else:
            out[name] = value
    return out


def market_state_json(st: ExchangeCore, market_id: int, units: MarketUnits) -> dict[str, Any]:
    """A market's trading state, its open-interest cap and its breakers."""
    controls = st.gov.controls.get(market_id)
    if controls is None:
        return {
            "state": STATE_NAMES[ACTIVE],
            "state_cause": None,
            "state_reason": None,
            "state_since_ms": None,
            "open_interest_cap": None,
            "breakers": None,
        }
    return {
        "state": STATE_NAMES[controls.state],
        "state_cause": controls.cause or None,
        "state_reason": controls.reason or None,
        "state_since_ms": controls.since_ms or None,
        "open_interest_cap": (
            units.lots_to_size(controls.oi_cap_lots) if controls.oi_cap_lots else None
        ),
        "breakers": None if controls.breakers == BREAKERS_OFF else wire_json(controls.breakers),
    }


def proposal_json(st: ExchangeCore, p: Proposal, with_votes: bool) -> dict[str, Any]:
    try:
        content = decode_content(p.content)
        kind: str | None = CONTENT_KINDS[type(content)]
        body: Any = wire_json(content)
    except DecodeError:  # stored only after decoding; kept total for safety of the reader
        kind, body = None, None
    out: dict[str, Any] = {
        "proposal_id": p.proposal_id,
        "title": p.title,
        "proposer": p.proposer.hex(),
        "content_kind": kind,
        "content": body,
        "status": p.status,
        "submit_height": p.submit_height,
        "voting_end_height": p.voting_end_height,
        "execute_height": p.execute_height or None,
        "yes_power": p.yes_power,
        "no_power": p.no_power,
        "abstain_power": p.abstain_power,
        "total_power": p.total_power,
        "message": p.message or None,
    }
    if with_votes:
        votes = sorted(
            (v for (pid, _), v in st.gov.votes.items() if pid == p.proposal_id),
            key=lambda v: (v.height, v.voter),
        )
        out["votes"] = [
            {"voter": v.voter.hex(), "option": VOTE_OPTIONS[v.option], "height": v.height}
            for v in votes
        ]
    return out


class GovQueries:
    """The governance routes' answers, over the API's :class:`Queries` (its state)."""

    def __init__(self, queries: Queries) -> None:
        self.queries = queries

    def proposal_of(self, st: ExchangeCore, text: str) -> Proposal:
        pid = parse_uint(text, "proposal_id", 0, INT_MAX, "bad_proposal_id")
        proposal = st.gov.proposals.get(pid)
        if proposal is None:
            raise InputError(404, "unknown_proposal", f"no proposal {pid}")
        return proposal

    def proposals(self, status: str | None, limit_text: str | None) -> dict[str, Any]:
        st = self.queries.state
        if status is not None and status not in STATUSES:
            raise InputError(400, "bad_status", f"status must be one of {', '.join(STATUSES)}")
        limit = 50
        if limit_text is not None:
            limit = parse_uint(limit_text, "limit", 1, PROPOSALS_LIMIT_MAX, "bad_limit")
        chosen = [
            p
            for pid, p in sorted(st.gov.proposals.items(), reverse=True)
            if status is None or p.status == status
        ][:limit]
        return {"height": st.height, "proposals": [proposal_json(st, p, False) for p in chosen]}

    def proposal(self, text: str) -> dict[str, Any]:
        st = self.queries.state
        return {"height": st.height, **proposal_json(st, self.proposal_of(st, text), True)}

    def tally(self, text: str) -> dict[str, Any]:
        st = self.queries.state
        p = self.proposal_of(st, text)
        yes, no, abstain, total = tally(st, p)
        params = st.genesis.governance_params
        return {
            "height": st.height,
            "proposal_id": p.proposal_id,
            "status": p.status,
            "yes_power": yes,
            "no_power": no,
            "abstain_power": abstain,
            "total_power": total,
            "quorum_ppm": params.quorum_ppm,
            "threshold_ppm": params.threshold_ppm,
            "outcome_if_ended_now": tally_outcome(st, yes, no, abstain, total),
        }


def gov_routes(
    queries: Queries, wrap: Callable[[str, Callable[[Request], Any]], Any]
) -> list[Route]:
    """The governance routes, each wrapped like the others (counted, rate-limited)."""
    gov = GovQueries(queries)

    async def proposals(request: Request) -> Response:
        params = request.query_params
        return JSONResponse(gov.proposals(params.get("status"), params.get("limit")))

    async def proposal(request: Request) -> Response:
        return JSONResponse(gov.proposal(request.path_params["proposal_id"]))

    async def proposal_tally(request: Request) -> Response:
        return JSONResponse(gov.tally(request.path_params["proposal_id"]))

    return [
        Route("/v1/gov/proposals", wrap("gov_proposals", proposals)),
        Route("/v1/gov/proposals/{proposal_id}", wrap("gov_proposal", proposal)),
        Route("/v1/gov/proposals/{proposal_id}/tally", wrap("gov_tally", proposal_tally)),
    ]
