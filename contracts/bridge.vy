# pragma version ~=0.4.3
"""
@title perpbft bridge: holds the stablecoin that backs USDC on perpbft
@notice Theory of operation.
    Deposits: a user calls `deposit(amount, account)`; the tokens move into this contract and a
    `Deposit` event names the perpbft account (its 32-byte public key). The validators watch the
    event and, after their confirmation depth, attest it on perpbft, which credits the account
    once attestations of more than 2/3 of stake agree. The contract knows nothing of perpbft.

    Withdrawals: perpbft debits the account and its validators sign a voucher
    Withdrawal(id, recipient, amount) with their secp256k1 bridge keys, as EIP-712 typed data
    whose domain binds the EVM chain id and this contract's address (a voucher for another
    chain or another bridge recovers other signers and is refused). Anyone submits the voucher
    with `withdraw`; it is accepted when the signers hold more than 2/3 of the current set's
    power, and its id was never used (replay protection: one payout per id, ever). The payout
    waits for the dispute period, then anyone calls `finalize`.

    Disputes: any validator can `freeze` the bridge (one honest validator suffices to stop a
    forged set of vouchers from paying out). While frozen nothing is deposited or paid; a
    supermajority unfreezes, and may invalidate pending withdrawals at the same time.

    Validator set: addresses with powers, numbered by `epoch`. The current set signs the next
    one (`update_validators`), which waits the dispute period like a withdrawal before
    `finalize_validators` installs it: otherwise signers who could forge vouchers could first
    vote the honest validators out of the set, and nobody would be left to freeze. A freeze
    stops the hand-over too, and an unfreeze drops it (a genuine one is proposed again).
    Vouchers already accepted stay payable after a hand-over.

    Signatures are (v, r, s) with low s (no malleable twins), in strictly ascending order of
    signer address: that order is the duplicate check, so a signer cannot count twice.
"""

from ethereum.ercs import IERC20

MAX_VALIDATORS: constant(uint256) = 64
MAX_INVALIDATED: constant(uint256) = 64
# A single deposit's ceiling: far above any real deposit, far below perpbft's 2**62 atom supply
# limit, so one event cannot overflow the chain's balances.
MAX_DEPOSIT: constant(uint256) = 2**56
MAX_TOTAL_POWER: constant(uint256) = 2**128
# (order of secp256k1) // 2: the largest s of a canonical, non-malleable signature.
SECP256K1_HALF_N: constant(uint256) = 57896044618658097711785492504343953926418782139537452191302581570759080747168

DOMAIN_TYPEHASH: constant(bytes32) = keccak256(
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
NAME_HASH: constant(bytes32) = keccak256("perpbft bridge")
VERSION_HASH: constant(bytes32) = keccak256("1")
WITHDRAWAL_TYPEHASH: constant(bytes32) = keccak256(
    "Withdrawal(uint256 id,address recipient,uint256 amount)"
)
VALIDATOR_SET_TYPEHASH: constant(bytes32) = keccak256(
    "ValidatorSet(uint256 epoch,address[] validators,uint256[] powers)"
)
UNFREEZE_TYPEHASH: constant(bytes32) = keccak256("Unfreeze(uint256 nonce,uint256[] invalidatedIds)")

STATUS_NONE: constant(uint8) = 0
STATUS_PENDING: constant(uint8) = 1
STATUS_FINALISED: constant(uint8) = 2
STATUS_INVALIDATED: constant(uint8) = 3

struct Signature:
    v: uint8
    r: uint256
    s: uint256

struct Withdrawal:
    recipient: address
    amount: uint256
    requested_at_s: uint256
    status: uint8

event Deposit:
    sender: indexed(address)
    account: indexed(bytes32)
    amount: uint256
    deposit_nonce: uint256

event WithdrawalRequested:
    withdrawal_id: indexed(uint256)
    recipient: address
    amount: uint256

event WithdrawalFinalized:
    withdrawal_id: indexed(uint256)
    recipient: address
    amount: uint256

event WithdrawalInvalidated:
    withdrawal_id: indexed(uint256)

event Frozen:
    by: indexed(address)

event Unfrozen:
    nonce: uint256

event ValidatorSetUpdated:
    epoch: uint256
    total_power: uint256

event ValidatorSetProposed:
    epoch: uint256
    total_power: uint256

token: public(IERC20)
dispute_period_s: public(uint256)
epoch: public(uint256)
total_power: public(uint256)
frozen: public(bool)
unfreeze_nonce: public(uint256)
deposit_count: public(uint256)
validators: public(DynArray[address, MAX_VALIDATORS])
# Powers per epoch: a set update starts a fresh map, so old members weigh nothing.
powers: HashMap[uint256, HashMap[address, uint256]]
withdrawals: HashMap[uint256, Withdrawal]
# The next set, signed by the current one, waiting for the dispute period (none: empty).
pending_validators: public(DynArray[address, MAX_VALIDATORS])
pending_powers: public(DynArray[uint256, MAX_VALIDATORS])
pending_set_at_s: public(uint256)


@deploy
def __init__(
    _token: IERC20,
    _validators: DynArray[address, MAX_VALIDATORS],
    _powers: DynArray[uint256, MAX_VALIDATORS],
    _dispute_period_s: uint256,
):
    assert _token.address != empty(address), "no token"
    self.token = _token
    self.dispute_period_s = _dispute_period_s
    self._install_set(0, _validators, _powers)


# ---- domain separation (EIP-712) ----

@internal
@view
def _domain_separator() -> bytes32:
    # Computed at each use, not cached: after a chain split the chain id differs, and so must
    # every digest.
    return keccak256(abi_encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, chain.id, self))


@internal
@view
def _typed_digest(struct_hash: bytes32) -> bytes32:
    return keccak256(concat(b"\x19\x01", self._domain_separator(), struct_hash))


@internal
@pure
def _hash_addresses(items: DynArray[address, MAX_VALIDATORS]) -> bytes32:
    # EIP-712 encodes an array as the hash of its members' 32-byte words: the ABI encoding of
    # a dynamic array after its offset and length words.
    encoded: Bytes[2112] = abi_encode(items)
    return keccak256(slice(encoded, 64, 32 * len(items)))


@internal
@pure
def _hash_uints(items: DynArray[uint256, MAX_VALIDATORS]) -> bytes32:
    encoded: Bytes[2112] = abi_encode(items)
    return keccak256(slice(encoded, 64, 32 * len(items)))


@external
@view
def domain_separator() -> bytes32:
    return self._domain_separator()


@external
@view
def withdrawal_digest(withdrawal_id: uint256, recipient: address, amount: uint256) -> bytes32:
    return self._typed_digest(
        keccak256(abi_encode(WITHDRAWAL_TYPEHASH, withdrawal_id, recipient, amount))
    )


@external
@view
def validator_set_digest(
    _epoch: uint256,
    _validators: DynArray[address, MAX_VALIDATORS],
    _powers: DynArray[uint256, MAX_VALIDATORS],
) -> bytes32:
    return self._validator_set_digest(_epoch, _validators, _powers)


@internal
@view
def _validator_set_digest(
    _epoch: uint256,
    _validators: DynArray[address, MAX_VALIDATORS],
    _powers: DynArray[uint256, MAX_VALIDATORS],
) -> bytes32:
    return self._typed_digest(keccak256(abi_encode(
        VALIDATOR_SET_TYPEHASH, _epoch, self._hash_addresses(_validators),
        self._hash_uints(_powers),
    )))


@internal
@view
def _unfreeze_digest(nonce: uint256, ids: DynArray[uint256, MAX_INVALIDATED]) -> bytes32:
    return self._typed_digest(
        keccak256(abi_encode(UNFREEZE_TYPEHASH, nonce, self._hash_uints(ids)))
    )


# ---- the quorum rule ----

@internal
@view
def _require_supermajority(digest: bytes32, signatures: DynArray[Signature, MAX_VALIDATORS]):
    """More than 2/3 of the current epoch's power signed `digest`, each signer once."""
    current: uint256 = self.epoch
    signed_power: uint256 = 0
    previous: uint256 = 0
    for sig: Signature in signatures:
        assert sig.s <= SECP256K1_HALF_N, "high-s signature"
        signer: address = ecrecover(digest, sig.v, sig.r, sig.s)
        assert signer != empty(address), "invalid signature"
        assert convert(signer, uint256) > previous, "signers not strictly ascending"
        previous = convert(signer, uint256)
        power: uint256 = self.powers[current][signer]
        assert power > 0, "signer is not a validator"
        signed_power += power
    assert signed_power * 3 > self.total_power * 2, "signers hold at most 2/3 of the power"


@internal
@pure
def _check_set(
    _validators: DynArray[address, MAX_VALIDATORS],
    _powers: DynArray[uint256, MAX_VALIDATORS],
) -> uint256:
    """The total power of a well-formed set: members strictly ascending, each power > 0."""
    assert len(_validators) > 0, "empty validator set"
    assert len(_validators) == len(_powers), "one power per validator"
    total: uint256 = 0
    previous: uint256 = 0
    for i: uint256 in range(len(_validators), bound=MAX_VALIDATORS):
        assert convert(_validators[i], uint256) > previous, "validators not strictly ascending"
        previous = convert(_validators[i], uint256)
        assert _powers[i] > 0, "zero power"
        total += _powers[i]
        assert total < MAX_TOTAL_POWER, "total power too large"
    return total


@internal
def _install_set(
    _epoch: uint256,
    _validators: DynArray[address, MAX_VALIDATORS],
    _powers: DynArray[uint256, MAX_VALIDATORS],
):
    total: uint256 = self._check_set(_validators, _powers)
    for i: uint256 in range(len(_validators), bound=MAX_VALIDATORS):
        self.powers[_epoch][_validators[i]] = _powers[i]
    self.epoch = _epoch
    self.total_power = total
    self.validators = _validators
    log ValidatorSetUpdated(epoch=_epoch, total_power=total)


@internal
def _drop_pending_set():
    self.pending_validators = []
    self.pending_powers = []
    self.pending_set_at_s = 0


# ---- user actions ----

@external
def deposit(amount: uint256, account: bytes32):
    """Move `amount` tokens (approved beforehand) into the bridge for perpbft `account`."""
    assert not self.frozen, "bridge is frozen"
    assert amount > 0, "zero amount"
    assert amount <= MAX_DEPOSIT, "deposit above the ceiling"
    assert account != empty(bytes32), "no account"
    assert extcall self.token.transferFrom(msg.sender, self, amount, default_return_value=True), "transfer failed"
    nonce: uint256 = self.deposit_count
    self.deposit_count = nonce + 1
    log Deposit(sender=msg.sender, account=account, amount=amount, deposit_nonce=nonce)


@external
def withdraw(
    withdrawal_id: uint256,
    recipient: address,
    amount: uint256,
    signatures: DynArray[Signature, MAX_VALIDATORS],
):
    """Accept a voucher signed by a supermajority; it pays out after the dispute period."""
    assert not self.frozen, "bridge is frozen"
    assert amount > 0, "zero amount"
    assert recipient != empty(address), "no recipient"
    assert self.withdrawals[withdrawal_id].status == STATUS_NONE, "withdrawal id already used"
    digest: bytes32 = self._typed_digest(
        keccak256(abi_encode(WITHDRAWAL_TYPEHASH, withdrawal_id, recipient, amount))
    )
    self._require_supermajority(digest, signatures)
    self.withdrawals[withdrawal_id] = Withdrawal(
        recipient=recipient, amount=amount, requested_at_s=block.timestamp, status=STATUS_PENDING
    )
    log WithdrawalRequested(withdrawal_id=withdrawal_id, recipient=recipient, amount=amount)


@external
def finalize(withdrawal_id: uint256):
    """Pay a pending withdrawal whose dispute period has passed (anyone may call)."""
    assert not self.frozen, "bridge is frozen"
    w: Withdrawal = self.withdrawals[withdrawal_id]
    assert w.status == STATUS_PENDING, "withdrawal is not pending"
    assert block.timestamp >= w.requested_at_s + self.dispute_period_s, "dispute period not over"
    self.withdrawals[withdrawal_id].status = STATUS_FINALISED
    assert extcall self.token.transfer(w.recipient, w.amount, default_return_value=True), "transfer failed"
    log WithdrawalFinalized(withdrawal_id=withdrawal_id, recipient=w.recipient, amount=w.amount)


@external
@view
def withdrawal(withdrawal_id: uint256) -> Withdrawal:
    return self.withdrawals[withdrawal_id]


@external
@view
def power_of(member: address) -> uint256:
    return self.powers[self.epoch][member]


@external
@view
def validator_count() -> uint256:
    return len(self.validators)


# ---- validators' actions ----

@external
def freeze():
    """Any single validator of the current set stops deposits and payouts."""
    assert self.powers[self.epoch][msg.sender] > 0, "only a validator freezes"
    self.frozen = True
    log Frozen(by=msg.sender)


@external
def unfreeze(
    invalidated_ids: DynArray[uint256, MAX_INVALIDATED],
    signatures: DynArray[Signature, MAX_VALIDATORS],
):
    """A supermajority resumes the bridge, cancelling the disputed pending withdrawals."""
    assert self.frozen, "bridge is not frozen"
    nonce: uint256 = self.unfreeze_nonce
    self._require_supermajority(self._unfreeze_digest(nonce, invalidated_ids), signatures)
    self.unfreeze_nonce = nonce + 1
    self._drop_pending_set()
    for withdrawal_id: uint256 in invalidated_ids:
        assert self.withdrawals[withdrawal_id].status == STATUS_PENDING, "only pending withdrawals"
        self.withdrawals[withdrawal_id].status = STATUS_INVALIDATED
        log WithdrawalInvalidated(withdrawal_id=withdrawal_id)
    self.frozen = False
    log Unfrozen(nonce=nonce)


@external
def update_validators(
    _validators: DynArray[address, MAX_VALIDATORS],
    _powers: DynArray[uint256, MAX_VALIDATORS],
    signatures: DynArray[Signature, MAX_VALIDATORS],
):
    """Propose the next set (epoch + 1), signed by the current set's supermajority; it is
    installed by `finalize_validators` after the dispute period. A newer proposal for the same
    epoch replaces a pending one and restarts its wait."""
    next_epoch: uint256 = self.epoch + 1
    self._require_supermajority(
        self._validator_set_digest(next_epoch, _validators, _powers), signatures
    )
    total: uint256 = self._check_set(_validators, _powers)
    self.pending_validators = _validators
    self.pending_powers = _powers
    self.pending_set_at_s = block.timestamp
    log ValidatorSetProposed(epoch=next_epoch, total_power=total)


@external
def finalize_validators():
    """Install the pending set once its dispute period has passed (anyone may call)."""
    assert not self.frozen, "bridge is frozen"
    at: uint256 = self.pending_set_at_s
    assert at != 0, "no pending validator set"
    assert block.timestamp >= at + self.dispute_period_s, "dispute period not over"
    self._install_set(self.epoch + 1, self.pending_validators, self.pending_powers)
    self._drop_pending_set()
