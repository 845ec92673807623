"""Read routes of staking: validators, delegations, unbondings, epoch sets, parameters, and
the proof of an epoch's set at its hand-over height (what the light client follows).

Staking off (no ``staking`` genesis section): the list routes answer ``enabled: false`` with
empty lists, so a client can tell "no staking here" from "nobody staked"; the routes about
one validator or one epoch answer 404 ``staking_disabled``. Amounts are decimal USDC strings
(the stake asset, 6 decimals), keys hex. Reads run on the event loop between blocks, so each
answer is one block's state; every list is bounded (validators by ``max_validators``, the
others by ``limit``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from consensus.types import Block, BlockHeader, QuorumCert
from node.api.params import INT_MAX, InputError, parse_uint
from node.api.queries import proofs_json
from node.api.recordkeys import EPOCH_SET_KIND, epoch_set_key
from node.api.units import atoms_to_decimal
from node.storage import ProofAt, StoreError
from state_machine.staking.engine import StakingState
from state_machine.staking.params import GOVERNED_FIELDS, STAKE_ASSET_ID
from state_machine.staking.records import SCHEDULE_KEY, ValidatorRecord

if TYPE_CHECKING:
    from node.api.app import Api, Handler
    from node.api.queries import Queries

STAKE_DECIMALS = 6  # USDC: the stake asset (state_machine/staking/params.py)


class StakingError(InputError):
    """A staking read the node cannot answer as asked."""


def usdc(atoms: int) -> str:
    return atoms_to_decimal(atoms, STAKE_DECIMALS)


class StakingQueries:
    """JSON answers of the staking routes over the node's state (via :class:`Queries`)."""

    def __init__(self, queries: Queries) -> None:
        self.queries = queries

    def staking(self) -> StakingState | None:
        st: StakingState | None = self.queries.state.staking
        return st

    def required(self) -> StakingState:
        st = self.staking()
        if st is None:
            raise StakingError(404, "staking_disabled", "staking is not enabled on this chain")
        return st

    def current_epoch(self, st: StakingState) -> int:
        """The epoch of the next block (the set that votes now)."""
        return st.schedule.epoch_of(st.height + 1)

    # ---- answers ---------------------------------------------------------------------------

    def params(self) -> dict[str, Any]:
        st = self.staking()
        height = self.queries.state.height
        if st is None:
            return {"enabled": False, "height": height}
        p = st.params
        bonded = sum(r.tokens_atoms for r in st.validators.values())
        return {
            "enabled": True,
            "height": height,
            "current_epoch": self.current_epoch(st),
            "epoch_length_blocks": p.epoch_length_blocks,
            "current_epoch_length_blocks": st.schedule.length_of(self.current_epoch(st)),
            "epoch_schedule": schedule_json(st),
            "active_set_size": p.active_set_size,
            "min_self_stake": usdc(p.min_self_stake_atoms),
            "min_delegation": usdc(p.min_delegation_atoms),
            "unbonding_blocks": p.unbonding_blocks,
            "jail_blocks": p.jail_blocks,
            "slash_bps": p.slash_bps,
            "max_commission_bps": p.max_commission_bps,
            "max_unbondings_per_pair": p.max_unbondings_per_pair,
            "max_validators": p.max_validators,
            "evidence_max_age_epochs": st.evidence_max_age_epochs,
            # Set by a staking_params proposal (else the genesis values).
            "params_governed": st.governed is not None,
            # The governed fields' raw values (what a staking_params proposal replaces).
            "params": {name: getattr(p, name) for name in GOVERNED_FIELDS},
            "stake_asset": self.queries.symbols.get(STAKE_ASSET_ID, "USDC"),
            "validators": len(st.validators),
            "bonded": usdc(bonded),
            "burnt": usdc(st.burnt_atoms),
        }

    def validator_json(self, st: StakingState, r: ValidatorRecord) -> dict[str, Any]:
        epoch = self.current_epoch(st)
        power = st.power_of(r.consensus_key, epoch)
        return {
            "operator": r.operator.hex(),
            "consensus_key": r.consensus_key.hex(),
            "p2p_address": r.p2p_address,
            "commission_bps": r.commission_bps,
            "stake": usdc(r.tokens_atoms),
            "self_stake": usdc(st.self_stake_atoms(r)),
            "power": power,
            "next_power": st.power_of(r.consensus_key, epoch + 1),
            "active": power > 0,
            "jailed": r.jailed,
            "jailed_until_height": r.jailed_until_height,
            "created_height": r.created_height,
        }

    def validators(self) -> dict[str, Any]:
        st = self.staking()
        height = self.queries.state.height
        if st is None:
            return {"enabled": False, "height": height, "epoch": 0, "validators": []}
        ordered = sorted(st.validators.values(), key=lambda r: (-r.tokens_atoms, r.consensus_key))
        return {
            "enabled": True,
            "height": height,
            "epoch": self.current_epoch(st),
            "validators": [self.validator_json(st, r) for r in ordered],
        }

    def lookup_validator(self, st: StakingState, text: str) -> ValidatorRecord:
        """By operator address, or by consensus key (what ``perpbft status`` shows)."""
        key = self.queries.lookup_address(text)
        record = st.validators.get(key)
        if record is None and key in st.by_consensus_key:
            record = st.validators.get(st.by_consensus_key[key])
        if record is None:
            raise StakingError(404, "unknown_validator", f"no validator {key.hex()}")
        return record

    def validator(self, text: str, limit: int) -> dict[str, Any]:
        st = self.required()
        r = self.lookup_validator(st, text)
        mine = [d for (op, _), d in st.delegations.items() if op == r.operator]
        mine.sort(key=lambda d: (-d.shares, d.delegator))
        return {
            "height": self.queries.state.height,
            **self.validator_json(st, r),
            "delegations_total": len(mine),
            "delegations": [
                {"delegator": d.delegator.hex(), "amount": usdc(r.value_of_shares(d.shares))}
                for d in mine[:limit]
            ],
        }

    def account_delegations(self, text: str) -> dict[str, Any]:
        who = self.queries.lookup_address(text)
        st = self.staking()
        height = self.queries.state.height
        out: dict[str, Any] = {"address": who.hex(), "height": height, "enabled": st is not None}
        if st is None:
            return {**out, "delegations": [], "unbondings": []}
        delegations = [
            {"operator": op.hex(), "amount": usdc(st.delegation_atoms(op, who))}
            for (op, delegator) in st.delegations
            if delegator == who
        ]
        unbondings = [
            {
                "id": u.unbonding_id,
                "operator": u.operator.hex(),
                "amount": usdc(u.amount_atoms),
                "start_height": u.start_height,
                "complete_height": u.complete_height,
            }
            for u in st.unbondings.values()
            if u.delegator == who
        ]
        return {**out, "delegations": delegations, "unbondings": unbondings}

    def parse_epoch(self, st: StakingState, text: str) -> int:
        if text == "current":
            return self.current_epoch(st)
        return parse_uint(text, "epoch", 0, INT_MAX)

    def epoch_set(self, text: str) -> dict[str, Any]:
        st = self.required()
        epoch = self.parse_epoch(st, text)
        record = st.epoch_sets.get(epoch)
        if record is None:
            raise StakingError(
                404,
                "unknown_epoch",
                f"no set of epoch {epoch} in the state (sets are kept from "
                f"{min(st.epoch_sets)} to {max(st.epoch_sets)})",
            )
        return {
            "epoch": epoch,
            "first_height": st.schedule.first_height(epoch),
            "last_height": st.schedule.last_height(epoch),
            "total_power": sum(p for _, p in record.members),
            "members": [
                {
                    "consensus_key": k.hex(),
                    "operator": st.by_consensus_key.get(k, k).hex(),
                    "power": p,
                }
                for k, p in record.members
            ],
        }

    def epoch_set_proof_target(self, text: str) -> tuple[int, int]:
        """(epoch, height) of the hand-over proof of ``epoch``: the state right after the
        last block of ``epoch - 2``, which the set of ``epoch - 1`` certifies."""
        st = self.required()
        epoch = self.parse_epoch(st, text)
        if epoch < 2:
            raise StakingError(
                400, "genesis_epoch", "epochs 0 and 1 are the genesis set: nothing to prove"
            )
        height = st.schedule.first_height(epoch - 1) - 1  # the last block of epoch - 2
        if height > st.height:
            raise StakingError(
                404,
                "unknown_epoch",
                f"the set of epoch {epoch} is fixed at height {height}; the chain is at "
                f"{st.height}",
            )
        return epoch, height


def schedule_json(st: StakingState) -> list[dict[str, int]]:
    """The epoch schedule: segments of epochs of one length, the genesis one first."""
    return [
        {"first_epoch": seg.first_epoch, "first_height": seg.first_height,
         "length_blocks": seg.length_blocks}
        for seg in st.schedule.segments
    ]  # fmt: skip


# ---- routes ---------------------------------------------------------------------------------


def epoch_set_json(
    api: Api,
    ids: dict[str, str],
    proof: ProofAt,
    schedule: ProofAt,
    header: Block | BlockHeader,
    qc: QuorumCert,
) -> dict[str, Any]:
    """The answer: the set's entry, then the schedule's (its value or its absence)."""
    body = api.queries.record_proof_json(EPOCH_SET_KIND, ids, proof, header, qc)
    body["entries"] += proofs_json([schedule], header, qc)["entries"]
    return body


def stored_handover(
    api: Api, epoch: int
) -> tuple[ProofAt, ProofAt, BlockHeader, QuorumCert] | None:
    """The node's stored hand-over certificate of ``epoch`` (``node/handover_store.py``) as a
    record proof's parts, None if it has none (worker thread)."""
    store = api.node.handovers.store
    try:
        cert = None if store is None else store.get(epoch)
    except StoreError:  # damaged: answered from the state if it is still there
        return None
    if cert is None:
        return None
    root = cert.header.state_root
    proof = ProofAt(cert.height, root, epoch_set_key(epoch), cert.value, cert.proof)
    schedule = ProofAt(cert.height, root, SCHEDULE_KEY, cert.schedule_value, cert.schedule_proof)
    return proof, schedule, cert.header, cert.commit_qc


def _limit(request: Request, default: int = 100) -> int:
    text = request.query_params.get("limit")
    return default if text is None else parse_uint(text, "limit", 1, 1000)


def staking_routes(api: Api, wrap: Any) -> list[Route]:
    """The staking read routes, wrapped like every other route (rate limit, JSON errors)."""
    sq = StakingQueries(api.queries)

    async def params(request: Request) -> Response:
        return JSONResponse(sq.params())

    async def validators(request: Request) -> Response:
        return JSONResponse(sq.validators())

    async def validator(request: Request) -> Response:
        return JSONResponse(sq.validator(request.path_params["operator"], _limit(request)))

    async def delegations(request: Request) -> Response:
        return JSONResponse(sq.account_delegations(request.path_params["address"]))

    async def epoch_set(request: Request) -> Response:
        return JSONResponse(sq.epoch_set(request.path_params["epoch"]))

    async def epoch_set_proof(request: Request) -> Response:
        """The set of epoch e in the state after the last block of e - 2, proven, with the
        block (of epoch e - 1) and commit QC that certify that state; and the epoch schedule
        in that state (record 0x2f, or its absence: the genesis length), which says how long
        epoch e and the ones after it are."""
        epoch, height = sq.epoch_set_proof_target(request.path_params["epoch"])
        ids = {"epoch": str(epoch)}
        stored = await trio.to_thread.run_sync(stored_handover, api, epoch)
        if stored is not None:  # kept after the state at ``height`` was pruned
            return JSONResponse(epoch_set_json(api, ids, *stored))
        key = epoch_set_key(epoch)
        proof = await trio.to_thread.run_sync(api.queries.prove_record, key, height)
        schedule = await trio.to_thread.run_sync(api.queries.prove_record, SCHEDULE_KEY, height)
        certificate = await api.certificate_of(proof.height)
        return JSONResponse(epoch_set_json(api, ids, proof, schedule, *certificate))

    handlers: list[tuple[str, str, Handler]] = [
        ("/v1/staking", "staking", params),
        ("/v1/validators", "validators", validators),
        ("/v1/validators/{operator}", "validator", validator),
        ("/v1/accounts/{address}/delegations", "delegations", delegations),
        ("/v1/epochs/{epoch}", "epoch_set", epoch_set),
        ("/v1/proofs/epoch_sets/{epoch}", "epoch_set_proof", epoch_set_proof),
    ]
    return [Route(path, wrap(name, handler)) for path, name, handler in handlers]
