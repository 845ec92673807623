"""Result codes of the staking actions (strings, like the exchange's)."""

OK = "ok"
VALIDATOR_EXISTS = "validator_exists"
CONSENSUS_KEY_IN_USE = "consensus_key_in_use"
TOO_MANY_VALIDATORS = "too_many_validators"
COMMISSION_TOO_HIGH = "commission_too_high"
BAD_P2P_ADDRESS = "bad_p2p_address"
STAKE_TOO_SMALL = "stake_too_small"
INSUFFICIENT_BALANCE = "insufficient_balance"
NOT_A_VALIDATOR = "not_a_validator"
UNKNOWN_VALIDATOR = "unknown_validator"
VALIDATOR_SLASHED_OUT = "validator_slashed_out"
NO_DELEGATION = "no_delegation"
INVALID_AMOUNT = "invalid_amount"
INSUFFICIENT_DELEGATION = "insufficient_delegation"
TOO_MANY_UNBONDINGS = "too_many_unbondings"
NOT_JAILED = "not_jailed"
STILL_JAILED = "still_jailed"
EVIDENCE_FROM_FUTURE = "evidence_from_future"
EVIDENCE_TOO_OLD = "evidence_too_old"
EVIDENCE_MISMATCHED = "evidence_mismatched"
EVIDENCE_NOT_CONFLICTING = "evidence_not_conflicting"
EVIDENCE_NOT_VALIDATOR = "evidence_not_validator"
EVIDENCE_BAD_SIGNATURE = "evidence_bad_signature"
EVIDENCE_DUPLICATE = "evidence_duplicate"
STAKING_DISABLED = "staking_disabled"

# Staking's event kinds and their fields (after the kind), merged into results.EVENT_FIELDS.
STAKING_EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "validator_created": ("operator", "consensus_key", "self_stake_atoms"),
    "validator_edited": ("operator",),
    "delegated": ("delegator", "operator", "amount_atoms"),
    "undelegated": ("delegator", "operator", "amount_atoms"),
    "unbonded": ("delegator", "operator", "amount_atoms"),
    "unjailed": ("operator",),
    "slashed": ("operator", "consensus_key", "view", "burnt_atoms", "submitter"),
    "epoch_set": ("epoch", "members"),
}
