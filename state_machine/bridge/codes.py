"""Result codes of the bridge actions and the bridge's event kinds."""

OK = "ok"
BRIDGE_DISABLED = "bridge_disabled"
NOT_VALIDATOR = "not_validator"
BRIDGE_KEY_IN_USE = "bridge_key_in_use"
BAD_BRIDGE_KEY = "bad_bridge_key"
NO_BRIDGE_KEY = "no_bridge_key"
WRONG_EVM_CHAIN = "wrong_evm_chain"
INVALID_AMOUNT = "invalid_amount"
DEPOSIT_CREDITED = "deposit_credited"
ALREADY_ATTESTED = "already_attested"
TOO_MANY_PENDING = "too_many_pending_deposits"
BELOW_MINIMUM = "withdrawal_below_minimum"
RATE_LIMITED = "withdrawal_rate_limited"
UNKNOWN_WITHDRAWAL = "unknown_withdrawal"
ALREADY_SIGNED = "already_signed"
STATUS_NOT_LATER = "status_not_later"

# Event kinds and their fields (after the kind), merged into results.EVENT_FIELDS.
BRIDGE_EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "bridge_key": ("validator", "address"),
    "deposit_attested": (
        "evm_chain_id",
        "tx_hash",
        "log_index",
        "validator",
        "account",
        "amount_atoms",
    ),
    "deposit_credited": ("evm_chain_id", "tx_hash", "log_index", "account", "amount_atoms"),
    "bridge_withdrawal": ("withdrawal_id", "account", "amount_atoms", "recipient"),
    "withdrawal_signature": ("withdrawal_id", "validator", "address"),
    "withdrawal_status": ("withdrawal_id", "status"),
}
