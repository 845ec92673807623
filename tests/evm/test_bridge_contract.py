"""The bridge contract (contracts/bridge.vy) on an in-process EVM (eth-tester with py-evm):
deposits, vouchers that must be refused (replayed, forged, under-signed, wrong chain or
contract, duplicated or malleable signatures), the dispute period, freeze and unfreeze, and the
validator-set hand-over. Python's EIP-712 digests are checked against the contract's own."""

from __future__ import annotations

import pytest
from hexbytes import HexBytes

from evm import chain, voucher
from evm.voucher import Domain, Voucher
from tests.evm.harness import DEPLOYER, DISPUTE_PERIOD_S, RELAYER, USER, Bridge, deploy

ACCOUNT = bytes(range(32))  # a perpbft account public key; the contract does not care whose


@pytest.fixture(scope="module")
def digests_bridge() -> Bridge:
    return deploy()


@pytest.fixture
def b() -> Bridge:
    bridge = deploy()
    chain.mint(bridge.w3, bridge.keys[DEPLOYER], bridge.token, bridge.address(USER), 10**12)
    chain.deposit(bridge.w3, bridge.keys[USER], bridge.token, bridge.bridge, ACCOUNT, 10**9)
    return bridge


def submit(b: Bridge, v: Voucher, signers: list[int]) -> chain.TxResult:
    return chain.submit_withdrawal(b.w3, b.keys[RELAYER], b.bridge, v, b.voucher_sigs(v, signers))


def contract(b: Bridge):  # the raw contract, to send what evm.chain would never build
    return chain.bridge_contract(b.w3, b.bridge)


# ---- digests: Python and the contract agree ----

def test_voucher_digest_matches_the_contract(digests_bridge: Bridge) -> None:
    b = digests_bridge
    v = Voucher(2**255 + 7, b.address(USER), 123_456)
    on_chain = contract(b).functions.withdrawal_digest(
        v.withdrawal_id, v.recipient, v.amount_atoms).call()
    assert bytes(on_chain) == voucher.voucher_digest(b.domain, v)


def test_validator_set_digest_matches_the_contract(digests_bridge: Bridge) -> None:
    b = digests_bridge
    members = [voucher.key_address(k) for k in b.validator_keys]
    on_chain = contract(b).functions.validator_set_digest(5, members, [1, 2, 3, 4]).call()
    assert bytes(on_chain) == voucher.validator_set_digest(b.domain, 5, members, [1, 2, 3, 4])


def test_signatures_are_low_s_deterministic_and_recoverable() -> None:
    key = (7).to_bytes(32, "big")
    digest = bytes(range(32))
    sig = voucher.sign_digest(key, digest)
    assert sig == voucher.sign_digest(key, digest)
    assert voucher.recover_signer(digest, sig) == voucher.key_address(key)
    assert int.from_bytes(sig[32:64], "big") <= voucher.SECP256K1_N // 2
    with pytest.raises(ValueError, match=r"64 bytes|65 bytes"):
        voucher.recover_signer(digest, sig[:64])


# ---- deposits ----

def test_deposit_holds_the_tokens_and_is_read_with_its_id(b: Bridge) -> None:
    assert b.balance(b.bridge) == 10**9
    deposits = chain.read_deposits(b.w3, b.bridge, 0, b.w3.eth.block_number)
    assert len(deposits) == 1
    d = deposits[0]
    assert (d.account, d.amount_atoms, d.depositor) == (ACCOUNT, 10**9, b.address(USER))
    assert d.chain_id == b.w3.eth.chain_id and len(d.tx_hash) == 32
    receipt = b.w3.eth.get_transaction_receipt(HexBytes(d.tx_hash))
    assert receipt["blockNumber"] == d.block_number


def test_deposits_are_read_only_up_to_the_confirmed_head(b: Bridge) -> None:
    head = b.w3.eth.block_number
    assert chain.confirmed_head(b.w3, 3) == head - 3
    assert chain.read_deposits(b.w3, b.bridge, 0, chain.confirmed_head(b.w3, 3)) == []
    assert len(chain.read_deposits(b.w3, b.bridge, 0, chain.confirmed_head(b.w3, 0))) == 1


def test_bad_deposits_are_refused(b: Bridge) -> None:
    w3, key = b.w3, b.keys[USER]
    with pytest.raises(chain.CallRefused, match="zero amount"):
        chain.deposit(w3, key, b.token, b.bridge, ACCOUNT, 0)
    with pytest.raises(chain.CallRefused, match="no account"):
        chain.deposit(w3, key, b.token, b.bridge, bytes(32), 5)
    with pytest.raises(chain.CallRefused):  # more than the user holds: the token refuses
        chain.deposit(w3, key, b.token, b.bridge, ACCOUNT, 10**13)
    assert b.balance(b.bridge) == 10**9


# ---- withdrawals ----

def test_withdrawal_pays_out_after_the_dispute_period(b: Bridge) -> None:
    v = Voucher(1, b.address(RELAYER), 4_000_000)
    submit(b, v, [0, 1, 2])
    state = chain.withdrawal_state(b.w3, b.bridge, 1)
    assert state.status == "pending" and state.amount_atoms == 4_000_000
    assert state.finalizable_at_s == state.requested_at_s + DISPUTE_PERIOD_S
    with pytest.raises(chain.CallRefused, match="dispute period not over"):
        chain.finalize_withdrawal(b.w3, b.keys[USER], b.bridge, 1)
    b.advance_time_s(DISPUTE_PERIOD_S + 1)
    chain.finalize_withdrawal(b.w3, b.keys[USER], b.bridge, 1)  # anyone may finalise
    assert b.balance(b.address(RELAYER)) == 4_000_000
    assert chain.withdrawal_state(b.w3, b.bridge, 1).status == "finalised"
    with pytest.raises(chain.CallRefused, match="not pending"):
        chain.finalize_withdrawal(b.w3, b.keys[USER], b.bridge, 1)


def test_replayed_voucher_is_refused(b: Bridge) -> None:
    v = Voucher(9, b.address(USER), 1_000)
    sigs = b.voucher_sigs(v, [0, 1, 2])
    chain.submit_withdrawal(b.w3, b.keys[RELAYER], b.bridge, v, sigs)
    with pytest.raises(chain.CallRefused, match="already used"):
        chain.submit_withdrawal(b.w3, b.keys[RELAYER], b.bridge, v, sigs)
    b.advance_time_s(DISPUTE_PERIOD_S + 1)
    chain.finalize_withdrawal(b.w3, b.keys[USER], b.bridge, 9)
    with pytest.raises(chain.CallRefused, match="already used"):
        chain.submit_withdrawal(b.w3, b.keys[RELAYER], b.bridge, v, sigs)


def test_under_signed_voucher_is_refused(b: Bridge) -> None:
    v = Voucher(2, b.address(USER), 1_000)
    with pytest.raises(chain.CallRefused, match="at most 2/3"):
        submit(b, v, [0, 1])  # 2 of 4
    with pytest.raises(chain.CallRefused, match="at most 2/3"):
        submit(b, v, [])
    assert chain.withdrawal_state(b.w3, b.bridge, 2).status == "none"


def test_exactly_two_thirds_is_not_enough_and_powers_weigh() -> None:
    b = deploy(validators=3)
    chain.mint(b.w3, b.keys[DEPLOYER], b.token, b.bridge, 10**6)
    v = Voucher(1, b.address(USER), 10)
    with pytest.raises(chain.CallRefused, match="at most 2/3"):
        submit(b, v, [0, 1])  # 2 of 3 is exactly 2/3
    heavy = deploy(validators=4, powers=[5, 1, 1, 1])
    with pytest.raises(chain.CallRefused, match="at most 2/3"):
        submit(heavy, v, [1, 2, 3])  # three validators, 3/8 of the power
    submit(heavy, v, [0, 1])  # two validators, 6/8


def test_quorum_rule_over_every_subset_of_signers() -> None:
    """All 128 subsets of 7 validators with unequal powers: the contract accepts a voucher
    exactly when the subset holds more than 2/3 of the power (eth_call, nothing is sent)."""
    powers = [1, 2, 3, 5, 8, 13, 21]
    b = deploy(validators=7, powers=powers)
    v = Voucher(1, b.address(USER), 10)
    digest = voucher.voucher_digest(b.domain, v)
    sigs = b.sign(digest, list(range(7)))  # in address order, as the contract wants
    withdraw = contract(b).functions.withdraw
    accepted = []
    for mask in range(2**7):
        chosen = [voucher.split_signature(sigs[i]) for i in range(7) if mask >> i & 1]
        try:
            withdraw(v.withdrawal_id, v.recipient, v.amount_atoms, chosen).call(
                {"from": b.address(RELAYER)})
            accepted.append(mask)
        except Exception as exc:
            assert "at most 2/3" in str(exc)
    expected = [m for m in range(2**7)
                if 3 * sum(p for i, p in enumerate(powers) if m >> i & 1) > 2 * sum(powers)]
    assert accepted == expected and 0 < len(expected) < 2**7


def test_forged_vouchers_are_refused(b: Bridge) -> None:
    v = Voucher(3, b.address(USER), 1_000)
    outsider = (0xBAD).to_bytes(32, "big")
    forged = [voucher.sign_voucher(outsider, b.domain, v), *b.voucher_sigs(v, [0, 1])]
    with pytest.raises(chain.CallRefused, match="not a validator"):
        chain.submit_withdrawal(b.w3, b.keys[RELAYER], b.bridge, v, forged)
    # Signatures over 1 000 atoms presented for 1 000 000: they recover other addresses.
    sigs = b.voucher_sigs(v, [0, 1, 2])
    inflated = Voucher(3, b.address(USER), 1_000_000)
    with pytest.raises(chain.CallRefused, match=r"not a validator|not strictly ascending"):
        raw_withdraw(b, inflated, [voucher.split_signature(s) for s in sigs])
    # ... or to another recipient.
    redirected = Voucher(3, b.address(RELAYER), 1_000)
    with pytest.raises(chain.CallRefused, match=r"not a validator|not strictly ascending"):
        raw_withdraw(b, redirected, [voucher.split_signature(s) for s in sigs])


def test_wrong_chain_or_wrong_contract_vouchers_are_refused(b: Bridge) -> None:
    v = Voucher(4, b.address(USER), 1_000)
    for domain in (Domain(b.domain.chain_id + 1, b.bridge), Domain(b.domain.chain_id, b.token)):
        sigs = [voucher.sign_voucher(k, domain, v) for k in b.validator_keys[:3]]
        ordered = chain.signature_tuples(voucher.voucher_digest(domain, v), sigs)
        with pytest.raises(chain.CallRefused, match=r"not a validator|not strictly ascending"):
            raw_withdraw(b, v, ordered)
    assert chain.withdrawal_state(b.w3, b.bridge, 4).status == "none"


def test_duplicate_and_malleable_signatures_are_refused(b: Bridge) -> None:
    v = Voucher(5, b.address(USER), 1_000)
    digest = voucher.voucher_digest(b.domain, v)
    one, two = chain.signature_tuples(digest, b.voucher_sigs(v, [0, 1]))
    with pytest.raises(chain.CallRefused, match="not strictly ascending"):
        raw_withdraw(b, v, [one, one, two])  # the same signer three times would be 3 of 4
    with pytest.raises(chain.CallRefused, match="not strictly ascending"):
        raw_withdraw(b, v, [two, one])
    vv, r, s = one
    twin = (55 - vv, r, voucher.SECP256K1_N - s)  # the same signature, high s, other parity
    with pytest.raises(chain.CallRefused, match="high-s"):
        raw_withdraw(b, v, [twin, two])


def raw_withdraw(b: Bridge, v: Voucher, sigs: list[tuple[int, int, int]]) -> None:
    fn = contract(b).functions.withdraw(v.withdrawal_id, v.recipient, v.amount_atoms, sigs)
    chain._call(b.w3, b.keys[RELAYER], fn)


# ---- freeze, unfreeze, disputes ----

def test_any_validator_freezes_and_nothing_moves_while_frozen(b: Bridge) -> None:
    v = Voucher(6, b.address(USER), 1_000)
    submit(b, v, [0, 1, 2])
    with pytest.raises(chain.CallRefused, match="only a validator"):
        chain.freeze(b.w3, b.keys[USER], b.bridge)
    chain.freeze(b.w3, b.validator_keys[3], b.bridge)
    b.advance_time_s(DISPUTE_PERIOD_S + 1)
    assert chain.withdrawal_state(b.w3, b.bridge, 6).frozen
    with pytest.raises(chain.CallRefused, match="frozen"):
        chain.finalize_withdrawal(b.w3, b.keys[USER], b.bridge, 6)
    with pytest.raises(chain.CallRefused, match="frozen"):
        submit(b, Voucher(7, b.address(USER), 1_000), [0, 1, 2])
    with pytest.raises(chain.CallRefused, match="frozen"):
        chain.deposit(b.w3, b.keys[USER], b.token, b.bridge, ACCOUNT, 5)


def unfreeze(b: Bridge, ids: list[int], signers: list[int]) -> None:
    nonce = contract(b).functions.unfreeze_nonce().call()
    digest = voucher.unfreeze_digest(b.domain, nonce, ids)
    chain.unfreeze(b.w3, b.keys[RELAYER], b.bridge, ids, digest, b.sign(digest, signers))


def test_unfreeze_needs_a_supermajority_and_cancels_disputed_withdrawals(b: Bridge) -> None:
    bad, good = Voucher(10, b.address(USER), 1_000), Voucher(11, b.address(RELAYER), 2_000)
    submit(b, bad, [0, 1, 2])
    submit(b, good, [0, 1, 2])
    chain.freeze(b.w3, b.validator_keys[0], b.bridge)
    with pytest.raises(chain.CallRefused, match="at most 2/3"):
        unfreeze(b, [10], [0, 1])
    unfreeze(b, [10], [1, 2, 3])
    assert not chain.withdrawal_state(b.w3, b.bridge, 10).frozen
    assert chain.withdrawal_state(b.w3, b.bridge, 10).status == "invalidated"
    b.advance_time_s(DISPUTE_PERIOD_S + 1)
    with pytest.raises(chain.CallRefused, match="not pending"):
        chain.finalize_withdrawal(b.w3, b.keys[USER], b.bridge, 10)
    chain.finalize_withdrawal(b.w3, b.keys[USER], b.bridge, 11)
    assert b.balance(b.address(RELAYER)) == 2_000
    with pytest.raises(chain.CallRefused, match="already used"):
        submit(b, bad, [0, 1, 2])  # an invalidated id stays spent


def test_bridge_events_trace_each_withdrawal(b: Bridge) -> None:
    start = b.w3.eth.block_number
    submit(b, Voucher(30, b.address(USER), 1_000), [0, 1, 2])
    submit(b, Voucher(31, b.address(USER), 1_000), [0, 1, 2])
    chain.freeze(b.w3, b.validator_keys[1], b.bridge)
    unfreeze(b, [31], [0, 1, 2])
    b.advance_time_s(DISPUTE_PERIOD_S + 1)
    chain.finalize_withdrawal(b.w3, b.keys[USER], b.bridge, 30)
    events = chain.read_bridge_events(b.w3, b.bridge, start, b.w3.eth.block_number)
    assert [(e.kind, e.withdrawal_id) for e in events] == [
        ("submitted", 30), ("submitted", 31), ("frozen", None), ("invalidated", 31),
        ("unfrozen", None), ("finalised", 30),
    ]


def test_unfreeze_signatures_cannot_be_replayed(b: Bridge) -> None:
    chain.freeze(b.w3, b.validator_keys[0], b.bridge)
    digest = voucher.unfreeze_digest(b.domain, 0, [])
    sigs = b.sign(digest, [0, 1, 2])
    chain.unfreeze(b.w3, b.keys[RELAYER], b.bridge, [], digest, sigs)
    chain.freeze(b.w3, b.validator_keys[0], b.bridge)
    with pytest.raises(chain.CallRefused, match=r"not a validator|not strictly ascending"):
        chain.unfreeze(b.w3, b.keys[RELAYER], b.bridge, [], digest, sigs)  # nonce is now 1
    unfreeze(b, [], [0, 1, 2])  # fresh signatures over nonce 1
    with pytest.raises(chain.CallRefused, match="not frozen"):
        unfreeze(b, [], [0, 1, 2])


# ---- validator-set hand-over ----

def hand_over(b: Bridge, new_keys: list[bytes], powers: list[int], signers: list[int]) -> None:
    members = [voucher.key_address(k) for k in new_keys]
    epoch = contract(b).functions.epoch().call() + 1
    digest = voucher.validator_set_digest(b.domain, epoch, members, powers)
    chain.update_validators(b.w3, b.keys[RELAYER], b.bridge, members, powers,
                            b.sign(digest, signers), digest)


def sorted_keys(first: int, count: int) -> list[bytes]:
    return sorted(((first + i).to_bytes(32, "big") for i in range(count)),
                  key=lambda k: int(voucher.key_address(k), 16))


def test_the_current_set_hands_over_after_the_dispute_period(b: Bridge) -> None:
    new_keys = sorted_keys(100, 3)
    with pytest.raises(chain.CallRefused, match="at most 2/3"):
        hand_over(b, new_keys, [1, 1, 1], [0, 1])
    pending = Voucher(20, b.address(USER), 1_000)
    submit(b, pending, [0, 1, 2])  # accepted by the old set: stays payable
    hand_over(b, new_keys, [1, 1, 1], [0, 2, 3])
    with pytest.raises(chain.CallRefused, match="dispute period not over"):
        chain.finalize_validators(b.w3, b.keys[USER], b.bridge)
    assert contract(b).functions.epoch().call() == 0  # the old set rules meanwhile
    submit(b, Voucher(22, b.address(USER), 1_000), [0, 1, 2])
    b.advance_time_s(DISPUTE_PERIOD_S + 1)
    chain.finalize_validators(b.w3, b.keys[USER], b.bridge)
    assert contract(b).functions.epoch().call() == 1
    old_set = b.validator_keys
    with pytest.raises(chain.CallRefused, match="not a validator"):
        submit(b, Voucher(21, b.address(USER), 1_000), [0, 1, 2])
    b.validator_keys = new_keys
    submit(b, Voucher(21, b.address(USER), 1_000), [0, 1, 2])
    b.validator_keys = old_set
    with pytest.raises(chain.CallRefused, match="not a validator"):  # old set cannot hand over
        hand_over(b, old_set, [1, 1, 1, 1], [0, 1, 2, 3])
    with pytest.raises(chain.CallRefused, match="no pending"):
        chain.finalize_validators(b.w3, b.keys[USER], b.bridge)
    chain.finalize_withdrawal(b.w3, b.keys[USER], b.bridge, 20)


def test_a_freeze_stops_a_hand_over_and_the_unfreeze_drops_it(b: Bridge) -> None:
    """Signers able to forge could otherwise vote out the honest validators who would freeze."""
    hand_over(b, sorted_keys(200, 3), [1, 1, 1], [0, 1, 2])
    chain.freeze(b.w3, b.validator_keys[3], b.bridge)  # the validator being voted out
    b.advance_time_s(DISPUTE_PERIOD_S + 1)
    with pytest.raises(chain.CallRefused, match="frozen"):
        chain.finalize_validators(b.w3, b.keys[USER], b.bridge)
    unfreeze(b, [], [0, 1, 3])
    with pytest.raises(chain.CallRefused, match="no pending"):
        chain.finalize_validators(b.w3, b.keys[USER], b.bridge)
    assert contract(b).functions.epoch().call() == 0
    assert contract(b).functions.power_of(voucher.key_address(b.validator_keys[3])).call() == 1


def test_a_malformed_set_is_refused(b: Bridge) -> None:
    keys = b.validator_keys
    with pytest.raises(chain.CallRefused, match="not strictly ascending"):
        hand_over(b, [keys[1], keys[0]], [1, 1], [0, 1, 2])
    with pytest.raises(chain.CallRefused, match="zero power"):
        hand_over(b, keys[:2], [1, 0], [0, 1, 2])
    with pytest.raises(chain.CallRefused, match="empty"):
        hand_over(b, [], [], [0, 1, 2])
