"""Result codes and event fields of the account actions (sub-accounts, agents, fee tiers);
stable and machine readable, docs/API.md lists them."""

from __future__ import annotations

NOT_AUTHORIZED = "not_authorized"  # the signer may not act for that account
AGENT_EXPIRED = "agent_expired"  # the signer's agent approval has expired
AGENT_NOT_ALLOWED = "agent_not_allowed"  # an agent may not take this action (transfer, ...)
SUBACCOUNT_LIMIT = "subaccount_limit"  # the master has its maximum of sub-accounts
SUBACCOUNT_NESTED = "subaccount_nested"  # a sub-account cannot have sub-accounts
NOT_SUBACCOUNT = "not_subaccount"  # the address is not a sub-account of the acting account
AGENT_LIMIT = "agent_limit"  # the account has its maximum of agents
AGENT_IN_USE = "agent_in_use"  # the key is an agent of another account
INVALID_AGENT = "invalid_agent"  # the key is the account itself, a sub-account or the vault
UNKNOWN_AGENT = "unknown_agent"  # revoking a key that is not the account's agent
AGENT_EXPIRY_PAST = "agent_expiry_past"  # an expiry at or before the block time

ACCOUNT_EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "subaccount_created": ("master", "subaccount", "index", "name"),
    "subaccount_transfer": ("master", "subaccount", "deposit", "asset_id", "amount_atoms"),
    "agent_approved": ("account", "agent", "name", "expires_at_ms"),
    "agent_revoked": ("account", "agent", "reason"),
    "fee_tiers": ("tiers",),
}
