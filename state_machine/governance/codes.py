"""Result codes and event kinds of governance and market states (stable; docs/API.md)."""

from __future__ import annotations

NOT_A_VOTER = "not_a_voter"
ALREADY_VOTED = "already_voted"
UNKNOWN_PROPOSAL = "unknown_proposal"
VOTING_CLOSED = "voting_closed"
INVALID_PROPOSAL = "invalid_proposal"
TOO_MANY_PROPOSALS = "too_many_proposals"
NO_EPOCHS = "no_epochs"  # an epoch_length proposal on a chain without staking

# Governance's event kinds and their fields (after the kind), merged into results.EVENT_FIELDS.
GOV_EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "proposal_submitted": ("proposal_id", "proposer", "content_kind", "voting_end_height"),
    "vote_cast": ("proposal_id", "voter", "option", "power"),
    "proposal_tallied": (
        "proposal_id",
        "status",
        "yes_power",
        "no_power",
        "abstain_power",
        "total_power",
        "execute_height",
    ),
    "proposal_executed": ("proposal_id", "content_kind"),
    "proposal_failed": ("proposal_id", "message"),
    "market_state": ("market_id", "state", "cause", "reason"),
    "market_listed": ("market_id", "symbol", "market_kind"),
    "market_changed": ("market_id",),
    "market_controls": ("market_id", "oi_cap_lots"),
    "asset_listed": ("asset_id", "symbol"),
    "parameters_changed": (),
    "delist_settled": ("market_id", "account", "size_lots", "price_ticks", "realized_pnl_atoms"),
    "market_delisted": ("market_id", "final_price_ticks", "positions"),
    # Covering the units a delisting left below zero (governance/settlement.py).
    "delist_vault_payment": ("market_id", "amount_atoms"),
    "delist_haircut": ("market_id", "account", "amount_atoms", "gain_atoms"),
    "delist_covered": ("market_id", "account", "deficit_atoms", "covered_atoms"),
    "staking_params_changed": (),
    "block_limits_changed": (
        "from_height",
        "max_block_txs",
        "max_block_bytes",
        "max_block_actions",
    ),
    "epoch_length_scheduled": ("first_epoch", "first_height", "length_blocks"),
}
