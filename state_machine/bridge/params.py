"""The optional genesis ``bridge`` section: the EVM chain and contract the bridge serves, the
confirmations the watchers wait for, the withdrawal rate limit and the genesis validators'
bridge keys (secp256k1 addresses, which the contract is deployed with). Absent: no bridge."""

from __future__ import annotations

from state_machine.codec import U32, U64, Bytes, ListOf, Struct, Wire, wire

EVM_ADDRESS = Bytes(exact=20)
MAX_BRIDGE_KEYS = 1024
BRIDGE_ASSET_ID = 0  # the bridged token is USDC: 1 token unit (6 decimals) = 1 USDC atom


@wire
class BridgeKey(Wire):
    """A genesis validator's bridge key: its consensus key and its secp256k1 address."""

    WIRE = (("validator", Bytes(exact=32)), ("address", EVM_ADDRESS))
    validator: bytes
    address: bytes


@wire
class BridgeParams(Wire):
    WIRE = (
        ("evm_chain_id", U64),
        ("contract", EVM_ADDRESS),
        ("confirmations", U32),
        ("withdraw_limit_atoms", U64),
        ("withdraw_period_ms", U64),
        ("min_withdraw_atoms", U64),
        ("max_pending_deposits", U32),
        ("bridge_keys", ListOf(Struct(BridgeKey), MAX_BRIDGE_KEYS)),
    )
    evm_chain_id: int
    contract: bytes
    confirmations: int = 12
    # At most this many atoms leave through the bridge per period of block time (chain-wide):
    # a compromised key set or a bug drains at most one period's limit before someone freezes.
    withdraw_limit_atoms: int = 1_000_000 * 10**6
    withdraw_period_ms: int = 3_600_000
    min_withdraw_atoms: int = 1_000_000  # 1 USDC: a withdrawal costs every validator a signature
    # Deposits attested by one validator and not yet credited: bounds what a faulty validator
    # can add to the state with attestations of deposits that never happened.
    max_pending_deposits: int = 10_000
    bridge_keys: tuple[BridgeKey, ...] = ()


def validate_bridge_params(p: BridgeParams, validators: list[bytes]) -> str | None:
    """The first problem of a genesis bridge section as ``field: message``, or None."""
    if p.evm_chain_id == 0:
        return "bridge.evm_chain_id: must be positive"
    if p.contract == bytes(20):
        return "bridge.contract: the zero address"
    if p.withdraw_period_ms == 0 or p.min_withdraw_atoms == 0:
        return "bridge.withdraw_period_ms and min_withdraw_atoms: must be positive"
    if p.max_pending_deposits == 0:
        return "bridge.max_pending_deposits: must be positive"
    seen_validators: list[bytes] = []
    seen_addresses: list[bytes] = []
    for i, k in enumerate(p.bridge_keys):
        if k.validator not in validators:
            return f"bridge.bridge_keys[{i}].validator: not a genesis validator"
        if k.validator in seen_validators or k.address in seen_addresses:
            return f"bridge.bridge_keys[{i}]: validator or address listed twice"
        if k.address == bytes(20):
            return f"bridge.bridge_keys[{i}].address: the zero address"
        seen_validators.append(k.validator)
        seen_addresses.append(k.address)
    return None
