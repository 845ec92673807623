"""A validator's bridge duties (node/bridge/duties.py) against a real bridge state driven by
real blocks: each duty is sent once and never again once the state holds it, whatever the
EVM chain shows; the key file's refusals."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from node.bridge.duties import (
    SeenDeposit,
    SeenWithdrawal,
    deposit_duties,
    forged_withdrawal,
    key_duty,
    observation_duties,
    observed_status,
    open_withdrawals,
    signature_duties,
)
from node.bridge.keyfile import read_bridge_key, write_bridge_key
from node.keys import KeyFileError
from state_machine.bridge.actions import (
    OBSERVED_DISPUTED,
    OBSERVED_FINALISED,
    OBSERVED_SUBMITTED,
    AttestDeposit,
    AttestWithdrawal,
    BridgeWithdraw,
    RegisterBridgeKey,
)
from state_machine.bridge.records import BridgeState
from tests.state_machine.helpers import USDC, VALIDATORS, Harness
from tests.state_machine.test_bridge import (
    ADDRESSES,
    ALICE,
    EVM_CHAIN,
    RECIPIENT,
    TX_HASH,
    bridge_harness,
)

ME = VALIDATORS[0]
SIG = b"\x44" * 65


def bridge(h: Harness) -> BridgeState:
    assert h.state.bridge is not None
    return h.state.bridge


def seen(log_index: int = 0, amount: int = 5 * USDC, chain: int = EVM_CHAIN) -> SeenDeposit:
    return SeenDeposit(chain, TX_HASH, log_index, ALICE, amount)


def run(h: Harness, signer: bytes, actions: Sequence[object]) -> None:
    for action in actions:
        assert h.one(signer, action).code == "ok", action  # type: ignore[arg-type]


def test_key_duty_registers_or_rotates_once() -> None:
    h = bridge_harness()
    assert key_duty(bridge(h), ME, ADDRESSES[0]) is None  # the genesis key
    rotate = key_duty(bridge(h), ME, b"\x99" * 20)
    assert rotate == RegisterBridgeKey(b"\x99" * 20)
    run(h, ME, [rotate])
    assert key_duty(bridge(h), ME, b"\x99" * 20) is None


def test_deposit_duties_until_attested_or_credited() -> None:
    h = bridge_harness()
    deposits = [seen(0), seen(1), seen(2, amount=0), seen(3, chain=1)]
    duties = deposit_duties(bridge(h), ME, deposits)
    assert [d.log_index for d in duties] == [0, 1]  # zero and other-chain deposits skipped
    run(h, ME, [duties[0]])
    assert [d.log_index for d in deposit_duties(bridge(h), ME, deposits)] == [1]
    # Credited by the others: nothing left for this validator about deposit 1 either.
    run(h, VALIDATORS[1], [AttestDeposit(EVM_CHAIN, TX_HASH, 1, ALICE, 5 * USDC)])
    run(h, VALIDATORS[2], [AttestDeposit(EVM_CHAIN, TX_HASH, 1, ALICE, 5 * USDC)])
    run(h, VALIDATORS[3], [AttestDeposit(EVM_CHAIN, TX_HASH, 1, ALICE, 5 * USDC)])
    assert deposit_duties(bridge(h), ME, deposits) == []


def test_signature_and_observation_duties() -> None:
    h = bridge_harness()
    run(h, ALICE, [BridgeWithdraw(10 * USDC, RECIPIENT), BridgeWithdraw(11 * USDC, RECIPIENT)])
    opened = open_withdrawals(bridge(h), 10)
    assert [w.withdrawal_id for w in opened] == [1, 2]
    assert [w.withdrawal_id for w in open_withdrawals(bridge(h), 1)] == [1]
    signed = signature_duties(bridge(h), ME, lambda w: SIG, opened)
    assert [(s.withdrawal_id, s.signature) for s in signed] == [(1, SIG), (2, SIG)]
    assert signature_duties(bridge(h), VALIDATORS[3], lambda w: SIG, opened) == []  # no key
    run(h, ME, signed)
    assert signature_duties(bridge(h), ME, lambda w: SIG, open_withdrawals(bridge(h), 10)) == []
    onchain = [SeenWithdrawal(1, "pending", False), SeenWithdrawal(2, "none", False)]
    observed = observation_duties(bridge(h), ME, onchain)
    assert observed == [AttestWithdrawal(1, OBSERVED_SUBMITTED)]
    run(h, ME, observed)
    assert observation_duties(bridge(h), ME, onchain) == []
    frozen = [SeenWithdrawal(1, "pending", True)]
    assert observation_duties(bridge(h), ME, frozen) == [AttestWithdrawal(1, OBSERVED_DISPUTED)]


def test_observed_status_of_the_contract_states() -> None:
    assert observed_status(SeenWithdrawal(1, "none", False)) is None
    assert observed_status(SeenWithdrawal(1, "none", True)) is None
    assert observed_status(SeenWithdrawal(1, "pending", False)) == OBSERVED_SUBMITTED
    assert observed_status(SeenWithdrawal(1, "pending", True)) == OBSERVED_DISPUTED
    assert observed_status(SeenWithdrawal(1, "invalidated", False)) == OBSERVED_DISPUTED
    assert observed_status(SeenWithdrawal(1, "finalised", True)) == OBSERVED_FINALISED


def test_bridge_key_file(tmp_path: Path) -> None:
    key = bytes(31) + b"\x07"
    path = tmp_path / "bridge.key"
    write_bridge_key(path, key)
    assert read_bridge_key(path) == key
    assert os.stat(path).st_mode & 0o777 == 0o600
    with pytest.raises(KeyFileError, match="cannot write"):
        write_bridge_key(path, key)  # never overwrites
    bad = {"short": "abcd", "zero": "00" * 32, "not hex": "zz" * 32, "order": "ff" * 32}
    for name, text in bad.items():
        p = tmp_path / name
        p.write_text(text)
        p.chmod(0o600)
        with pytest.raises(KeyFileError, match="64 hex"):
            read_bridge_key(p)
    (tmp_path / "open").write_text("0x" + key.hex())
    (tmp_path / "open").chmod(0o644)
    with pytest.raises(KeyFileError, match="readable by others"):
        read_bridge_key(tmp_path / "open")
    with pytest.raises(KeyFileError, match="does not exist"):
        read_bridge_key(tmp_path / "missing")


def test_forged_withdrawals_are_recognised() -> None:
    h = bridge_harness()
    run(h, ALICE, [BridgeWithdraw(10 * USDC, RECIPIENT)])
    br = bridge(h)
    honest = SeenWithdrawal(1, "pending", False, RECIPIENT, 10 * USDC)
    assert forged_withdrawal(br, [honest, SeenWithdrawal(2, "none", False)]) is None
    assert forged_withdrawal(br, [SeenWithdrawal(1, "invalidated", True, b"\x01" * 20, 1)]) is None
    other_recipient = SeenWithdrawal(1, "pending", False, b"\x01" * 20, 10 * USDC)
    more = SeenWithdrawal(1, "finalised", False, RECIPIENT, 11 * USDC)
    never_issued = SeenWithdrawal(2, "pending", False, RECIPIENT, USDC)
    for forged, reason in [(other_recipient, "another"), (more, "another"),
                           (never_issued, "never made")]:  # fmt: skip
        found = forged_withdrawal(br, [honest, forged])
        assert found is not None and reason in found
