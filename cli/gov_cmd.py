"""``perpbft gov propose|vote|list|show``: governance proposals from the command line.

A proposal is described by a JSON file (docs/OPERATIONS.md, "Listing a market"), one of:

* ``{"kind": "change_market", "market": "BTC-PERP", "set": {"taker_fee_ppm": 500}}``: the
  market's governed parameters (``params`` in ``GET /v1/markets/{market}``) with these
  fields replaced;
* ``{"kind": "market_controls", "market": "BTC-PERP", "oi_cap_lots": 100000,
  "breakers": {"oracle_stale_ms": 30000, ...}}`` (omitted breaker fields: off);
* ``{"kind": "market_state", "market": "BTC-PERP", "state": "halted", "reason": "..."}``;
* ``{"kind": "list_asset", "asset": {"asset_id": 3, "symbol": "SOL", "decimals": 9}}``;
* ``{"kind": "list_market", "market": {...}}``: every field of a genesis market;
* ``{"kind": "delist_perp", "market": "ETH-PERP", "final_price_ticks": 0}`` (0: the mark);
* ``{"kind": "fee_tiers", "tiers": [{"min_volume_atoms": 0, "taker_fee_ppm": 500,
  "maker_fee_ppm": 200}, ...]}``: the fee tiers by 14-day volume (an empty list: market fees);
* ``{"kind": "change_parameters", "set": {"vault_loss_limit_ppm": 150000}}``: the
  exchange-wide parameters in force (``parameters`` in ``GET /v1/markets``) with these
  fields replaced;
* ``{"kind": "staking_params", "set": {"jail_blocks": 2400}}``: the staking parameters in
  force (``params`` in ``GET /v1/staking``; all but the epoch length) with these replaced;
* ``{"kind": "block_limits", "max_block_txs": 2000}``: block limits from a few blocks after
  execution; omitted fields keep the chain's limits in force (``block_limits`` in
  ``GET /v1/status``; before any governed one, the answering node's configured ones).
* ``{"kind": "epoch_length", "length_blocks": 1200}``: blocks per epoch from the first epoch
  whose validator set is not fixed yet when it runs (``epoch_schedule`` in ``GET /v1/staking``).

The command signs with ``--key`` (a validator operator's key: only voters may propose and
vote), waits for the commit and prints the result; ``--json`` prints one JSON object. Exit
codes as for the trader's commands: 0 accepted, 1 refused, 2 usage or connection error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from cli.errors import EXIT_OK, CliError
from cli.trade_common import (
    add_common_arguments,
    api_get,
    open_client,
    print_committed,
    print_json,
    print_tables,
    sign_and_submit,
    table,
)
from client.http import NodeClient
from state_machine.accounts.policy import FeeTier
from state_machine.genesis import Asset, GenesisError, Market, Parameters, wire_from_json
from state_machine.governance.actions import VOTE_CODES, CastVote, SubmitProposal
from state_machine.governance.content import (
    STATE_CODES,
    BreakerConfig,
    ChangeMarket,
    ChangeParameters,
    Content,
    DelistPerp,
    ListAsset,
    ListMarket,
    SetBlockLimits,
    SetEpochLength,
    SetFeeTiers,
    SetMarketControls,
    SetMarketState,
    SetStakingParams,
    encode_content,
)
from state_machine.governance.records import STATUSES

PROPOSAL_FILE_BYTES_MAX = 64 * 1024


def register(sub: Any) -> None:
    gov = sub.add_parser("gov", help="governance: propose, vote, list and show proposals")
    gsub = gov.add_subparsers(dest="gov_command", metavar="SUBCOMMAND")
    gsub.required = True

    propose = gsub.add_parser("propose", help="submit a proposal described by a JSON file")
    propose.add_argument("file", help="the proposal (JSON; see docs/OPERATIONS.md)")
    propose.add_argument("--title", required=True, help="a short title (up to 120 characters)")
    add_common_arguments(propose, key=True)
    propose.set_defaults(func=cmd_propose)

    vote = gsub.add_parser("vote", help="vote on a proposal in its voting period")
    vote.add_argument("proposal_id", type=int)
    vote.add_argument("option", choices=sorted(VOTE_CODES))
    add_common_arguments(vote, key=True)
    vote.set_defaults(func=cmd_vote)

    listing = gsub.add_parser("list", help="proposals, newest first")
    listing.add_argument("--status", choices=STATUSES, default=None)
    listing.add_argument("--limit", type=int, default=50, help="1..200")
    add_common_arguments(listing)
    listing.set_defaults(func=cmd_list)

    show = gsub.add_parser("show", help="one proposal: content, votes and the live tally")
    show.add_argument("proposal_id", type=int)
    add_common_arguments(show)
    show.set_defaults(func=cmd_show)


# ---- proposals from JSON ------------------------------------------------------------------------


def read_proposal_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_bytes()[: PROPOSAL_FILE_BYTES_MAX + 1]
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    if len(text) > PROPOSAL_FILE_BYTES_MAX:
        raise CliError(f"{path}: larger than {PROPOSAL_FILE_BYTES_MAX} bytes")
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CliError(f"{path}: not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
        raise CliError(f'{path}: expected an object with a "kind"')
    return data


def _market(markets: dict[str, Any], name: Any) -> dict[str, Any]:
    found: dict[str, Any] | None = markets.get(str(name).upper())
    if found is None:
        raise CliError(f"no market {name!r} (markets: {', '.join(markets)})")
    return found


def _with_changes(current: dict[str, Any], changes: Any, what: str) -> dict[str, Any]:
    if not isinstance(changes, dict):
        raise CliError(f'"set" must be an object of {what} fields')
    unknown = sorted(set(changes) - set(current))
    if unknown:
        raise CliError(f"unknown {what} fields: {', '.join(unknown)}")
    return {**current, **changes}


def content_from_json(
    data: dict[str, Any], catalogue: dict[str, Any], chain: dict[str, Any] | None = None
) -> Content:
    """The proposal's content; ``catalogue`` is ``GET /v1/markets`` (current parameters),
    ``chain`` the answers the chain-parameter kinds start from: ``{"staking": GET
    /v1/staking, "status": GET /v1/status}``."""
    markets = {str(m["symbol"]).upper(): m for m in catalogue["markets"]}
    kind = data["kind"]
    try:
        if kind == "change_market":
            params = _market(markets, data.get("market"))["params"]
            merged = _with_changes(params, data.get("set"), "market")
            return ChangeMarket(wire_from_json(merged, Market, "market"))
        if kind == "market_controls":
            mid = _market(markets, data.get("market"))["market_id"]
            given = data.get("breakers", {})
            if not isinstance(given, dict):
                raise CliError('"breakers" must be an object')
            fields = {**dataclasses.asdict(BreakerConfig()), **given}
            breakers = wire_from_json(fields, BreakerConfig, "breakers")
            return SetMarketControls(mid, int(data.get("oi_cap_lots", 0)), breakers)
        if kind == "market_state":
            mid = _market(markets, data.get("market"))["market_id"]
            state = STATE_CODES.get(str(data.get("state")))
            if state is None:
                raise CliError("state must be active, close_only or halted")
            return SetMarketState(mid, state, str(data.get("reason", "")))
        if kind == "list_asset":
            return ListAsset(wire_from_json(data.get("asset"), Asset, "asset"))
        if kind == "list_market":
            return ListMarket(wire_from_json(data.get("market"), Market, "market"))
        if kind == "delist_perp":
            mid = _market(markets, data.get("market"))["market_id"]
            return DelistPerp(mid, int(data.get("final_price_ticks", 0)))
        if kind == "change_parameters":
            merged = _with_changes(catalogue["parameters"], data.get("set"), "parameters")
            return ChangeParameters(wire_from_json(merged, Parameters, "parameters"))
        if kind == "fee_tiers":
            return SetFeeTiers(fee_tiers_from_json(data.get("tiers")))
        if kind == "staking_params":
            return staking_params_from_json(data, (chain or {}).get("staking", {}))
        if kind == "block_limits":
            return block_limits_from_json(data, (chain or {}).get("status", {}))
        if kind == "epoch_length":
            return SetEpochLength(epoch_length_from_json(data.get("length_blocks")))
    except GenesisError as exc:
        raise CliError(f"invalid proposal: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise CliError(f"invalid proposal: {exc}") from None
    raise CliError(
        f"unknown kind {kind!r}: change_market, market_controls, market_state, list_asset, "
        "list_market, delist_perp, change_parameters, fee_tiers, staking_params, "
        "block_limits or epoch_length"
    )


CHAIN_KINDS = ("staking_params", "block_limits")


def staking_params_from_json(data: dict[str, Any], staking: dict[str, Any]) -> SetStakingParams:
    """The staking parameters in force with ``set`` replaced (the epoch length has its own
    kind, so it is not among them)."""
    current = staking.get("params")
    if not staking.get("enabled") or not isinstance(current, dict):
        raise CliError("staking is not enabled on this chain")
    changes = data.get("set")
    if isinstance(changes, dict) and "epoch_length_blocks" in changes:
        raise CliError("epoch_length_blocks is not a staking_params field (it has its own kind)")
    merged = _with_changes(current, changes, "staking_params")
    content: SetStakingParams = wire_from_json(merged, SetStakingParams, "staking_params")
    return content


def block_limits_from_json(data: dict[str, Any], status: dict[str, Any]) -> SetBlockLimits:
    names = [name for name, _ in SetBlockLimits.WIRE]
    unknown = sorted(set(data) - {"kind", *names})
    if unknown:
        raise CliError(f"unknown block_limits fields: {', '.join(unknown)}")
    limits = status.get("block_limits", {})
    current = limits if limits.get("governed") else limits.get("node_max", {})
    fields = {name: data.get(name, current.get(name)) for name in names}
    missing = [name for name, value in fields.items() if value is None]
    if missing:
        raise CliError(f"block_limits: give {', '.join(missing)}")
    content: SetBlockLimits = wire_from_json(fields, SetBlockLimits, "block_limits")
    return content


def epoch_length_from_json(value: Any) -> int:
    """A whole number of blocks that fits the proposal (the chain checks its bounds)."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 1 << 32:
        raise CliError('"length_blocks" must be a positive whole number of blocks')
    return value


def fee_tiers_from_json(tiers: Any) -> tuple[FeeTier, ...]:
    """``[{"min_volume_atoms": ..., "taker_fee_ppm": ..., "maker_fee_ppm": ...}, ...]``."""
    if not isinstance(tiers, list):
        raise CliError('"tiers" must be a list of {min_volume_atoms, taker_fee_ppm, maker_fee_ppm}')
    return tuple(wire_from_json(t, FeeTier, f"tiers[{i}]") for i, t in enumerate(tiers))


# ---- commands -----------------------------------------------------------------------------------


def cmd_propose(args: argparse.Namespace) -> int:
    data = read_proposal_file(Path(args.file))
    with open_client(args) as client:
        chain = None
        if data["kind"] in CHAIN_KINDS:
            chain = {"staking": api_get(client, "/v1/staking"),
                     "status": api_get(client, "/v1/status")}  # fmt: skip
        content = content_from_json(data, api_get(client, "/v1/markets"), chain)
        action = SubmitProposal(args.title, encode_content(content))
        answer = sign_and_submit(args, client, [action])
    return print_committed(answer, args)


def cmd_vote(args: argparse.Namespace) -> int:
    if not 0 <= args.proposal_id < 2**63:
        raise CliError("proposal_id must be a non-negative integer")
    with open_client(args) as client:
        action = CastVote(args.proposal_id, VOTE_CODES[args.option])
        answer = sign_and_submit(args, client, [action])
    return print_committed(answer, args)


def _power_row(p: dict[str, Any]) -> list[Any]:
    return [p["yes_power"], p["no_power"], p["abstain_power"], p["total_power"]]


def cmd_list(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 200:
        raise CliError("--limit must be 1..200")
    with open_client(args) as client:
        body = proposals(client, args.status, args.limit)
    if args.json:
        print_json(body)
        return EXIT_OK
    rows = [
        [p["proposal_id"], p["title"], p["content_kind"], p["status"], p["voting_end_height"],
         p["execute_height"] or "", *_power_row(p)]
        for p in body["proposals"]
    ]  # fmt: skip
    columns = ["id", "title", "kind", "status", "voting ends", "executes", "yes", "no",
               "abstain", "total"]  # fmt: skip
    print_tables(table(f"proposals at height {body['height']}", columns, rows))
    return EXIT_OK


def proposals(client: NodeClient, status: str | None, limit: int) -> dict[str, Any]:
    return api_get(client, "/v1/gov/proposals", status=status, limit=limit)  # type: ignore[no-any-return]


def cmd_show(args: argparse.Namespace) -> int:
    if not 0 <= args.proposal_id < 2**63:
        raise CliError("proposal_id must be a non-negative integer")
    with open_client(args) as client:
        body = api_get(client, f"/v1/gov/proposals/{args.proposal_id}")
        live = api_get(client, f"/v1/gov/proposals/{args.proposal_id}/tally")
    if args.json:
        print_json({**body, "tally_now": live})
        return EXIT_OK
    head = table(
        f"proposal {body['proposal_id']}: {body['title']}",
        ["kind", "status", "proposer", "submitted", "voting ends", "executes", "message"],
        [[body["content_kind"], body["status"], body["proposer"][:16], body["submit_height"],
          body["voting_end_height"], body["execute_height"] or "", body["message"] or ""]],
    )  # fmt: skip
    content = table(
        "content",
        ["field", "value"],
        [[k, json.dumps(v)] for k, v in (body["content"] or {}).items()],
    )
    votes = table(
        "votes", ["voter", "option", "height"],
        [[v["voter"][:16], v["option"], v["height"]] for v in body["votes"]],
    )  # fmt: skip
    tally = table(
        f"tally (stored at the end of voting; live: {live['outcome_if_ended_now']})",
        ["", "yes", "no", "abstain", "total"],
        [["stored", *_power_row(body)], ["now", *_power_row(live)]],
    )
    print_tables(head, content, votes, tally)
    return EXIT_OK
