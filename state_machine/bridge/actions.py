"""Bridge actions: wire types signed inside a transaction (tags 48..55). Amounts are USDC atoms
(6 decimals; one atom is one unit of the bridged token)."""

from __future__ import annotations

from typing import ClassVar

from state_machine.bridge.params import EVM_ADDRESS
from state_machine.codec import U32, U64, Bytes, Enum, Wire, wire

PUBKEY = Bytes(exact=32)
TX_HASH = Bytes(exact=32)
EVM_SIGNATURE = Bytes(exact=65)  # r || s || v, as the contract takes it

# Withdrawal statuses a validator can observe on the EVM chain (see engine.py for all five).
OBSERVED_SUBMITTED = 2
OBSERVED_DISPUTED = 3
OBSERVED_FINALISED = 4
OBSERVABLE = frozenset({OBSERVED_SUBMITTED, OBSERVED_DISPUTED, OBSERVED_FINALISED})


@wire
class RegisterBridgeKey(Wire):
    """A validator names the secp256k1 address its withdrawal signatures recover to."""

    TAG: ClassVar[int] = 48
    WIRE = (("address", EVM_ADDRESS),)
    address: bytes


@wire
class AttestDeposit(Wire):
    """A validator saw a confirmed ``Deposit`` event: ``amount_atoms`` for ``account``, at
    (``evm_chain_id``, ``tx_hash``, ``log_index``), which identifies the deposit."""

    TAG: ClassVar[int] = 49
    WIRE = (
        ("evm_chain_id", U64),
        ("tx_hash", TX_HASH),
        ("log_index", U32),
        ("account", PUBKEY),
        ("amount_atoms", U64),
    )
    evm_chain_id: int
    tx_hash: bytes
    log_index: int
    account: bytes
    amount_atoms: int


@wire
class BridgeWithdraw(Wire):
    """Take ``amount_atoms`` of USDC out of the signer's account, payable by the contract to
    ``recipient`` (an EVM address) once the validators have signed the voucher."""

    TAG: ClassVar[int] = 50
    WIRE = (("amount_atoms", U64), ("recipient", EVM_ADDRESS))
    amount_atoms: int
    recipient: bytes


@wire
class SignWithdrawal(Wire):
    """A validator's secp256k1 signature of withdrawal ``withdrawal_id``'s voucher."""

    TAG: ClassVar[int] = 51
    WIRE = (("withdrawal_id", U64), ("signature", EVM_SIGNATURE))
    withdrawal_id: int
    signature: bytes


@wire
class AttestWithdrawal(Wire):
    """A validator saw withdrawal ``withdrawal_id`` reach ``status`` on the EVM chain
    (2 submitted, 3 disputed, 4 finalised)."""

    TAG: ClassVar[int] = 52
    WIRE = (("withdrawal_id", U64), ("status", Enum(OBSERVABLE, "observed withdrawal status")))
    withdrawal_id: int
    status: int


BridgeAction = (
    RegisterBridgeKey | AttestDeposit | BridgeWithdraw | SignWithdrawal | AttestWithdrawal
)
BRIDGE_ACTIONS = (
    RegisterBridgeKey,
    AttestDeposit,
    BridgeWithdraw,
    SignWithdrawal,
    AttestWithdrawal,
)
