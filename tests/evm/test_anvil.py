"""The bridge over real JSON-RPC: the localnet's anvil (localnet/evm.py) started as a process,
the contracts deployed for the validators' bridge keys, a demo wallet deposits, the deposit is
read after confirmations, a voucher signed by 3 of 4 validators is paid after the dispute
period, and anvil's state survives a restart. Skips without anvil (`make anvil`), except in CI."""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_utils.address import to_checksum_address

from bench import bridge_gas
from evm import chain, deploy, voucher
from localnet.evm import (
    DEMO_TOKENS_ATOMS,
    DISPUTE_PERIOD_S,
    LocalEvm,
    anvil_path,
    rpc_url,
    set_balance,
)
from localnet.procs import Procs

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(anvil_path() is None, reason="anvil not installed (make anvil)"),
]
ACCOUNT = bytes(range(1, 33))
CONFIRMATIONS = 2


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    Procs(tmp_path).stop(["anvil"])


def wait_confirmed(w3, block: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while chain.confirmed_head(w3, CONFIRMATIONS) < block:
        assert time.monotonic() < deadline, "anvil stopped mining"
        time.sleep(0.2)


def test_localnet_chain_deposit_withdraw_and_restart(home: Path) -> None:
    procs, evm = Procs(home), LocalEvm(home)
    base_port = random.randrange(31_000, 38_000, 10)
    info = evm.up(procs, base_port, validators=4, accounts=[ACCOUNT.hex()])
    w3 = chain.connect(info.rpc_url)
    assert w3.eth.chain_id == info.chain_id and w3.eth.get_code(to_checksum_address(info.bridge))
    wallet = evm.wallets()[0]
    wallet_key = bytes.fromhex(wallet.evm_key)
    token = chain.token_contract(w3, info.token)
    assert token.functions.balanceOf(wallet.evm_address).call() == DEMO_TOKENS_ATOMS

    sent = chain.deposit(w3, wallet_key, info.token, info.bridge, ACCOUNT, 25_000_000)
    assert chain.read_deposits(w3, info.bridge, info.start_block,
                               chain.confirmed_head(w3, CONFIRMATIONS)) == []
    wait_confirmed(w3, sent.block_number)
    deposits = chain.read_deposits(w3, info.bridge, info.start_block,
                                   chain.confirmed_head(w3, CONFIRMATIONS))
    assert [(d.tx_hash, d.account, d.amount_atoms) for d in deposits] == [
        (sent.tx_hash, ACCOUNT, 25_000_000)]

    v = voucher.Voucher(1, wallet.evm_address, 5_000_000)
    domain = chain.bridge_domain(w3, info.bridge)
    sigs = [voucher.sign_voucher(k, domain, v) for k in evm.validator_keys(4)[:3]]
    chain.submit_withdrawal(w3, wallet_key, info.bridge, v, sigs)
    with pytest.raises(chain.CallRefused, match="dispute period not over"):
        chain.finalize_withdrawal(w3, wallet_key, info.bridge, 1)
    w3.provider.make_request("evm_increaseTime", [DISPUTE_PERIOD_S + 1])  # type: ignore[arg-type]
    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    chain.finalize_withdrawal(w3, wallet_key, info.bridge, 1)
    assert chain.withdrawal_state(w3, info.bridge, 1).status == "finalised"
    assert token.functions.balanceOf(wallet.evm_address).call() == (
        DEMO_TOKENS_ATOMS - 25_000_000 + 5_000_000)

    # A second `up` finds everything in place; after a restart anvil reloads its state.
    assert evm.up(procs, base_port, 4, [ACCOUNT.hex()]) == info
    procs.stop(["anvil"])
    again = evm.up(procs, base_port, 4, [ACCOUNT.hex()])
    assert again == info
    w3 = chain.connect(info.rpc_url)
    assert chain.withdrawal_state(w3, info.bridge, 1).status == "finalised"


def test_gas_bench_measures_withdraw_by_signature_count() -> None:
    result = bridge_gas.run(argparse.Namespace(rpc="", sizes="4,7", base_port=0))
    four, seven = result["gas"]["4"], result["gas"]["7"]
    assert four["quorum_signatures"] == 3 and seven["quorum_signatures"] == 5
    # Every signature costs an ecrecover: more signatures, more gas.
    assert four["withdraw_quorum"] < four["withdraw_all"] < seven["withdraw_all"]


def test_deploy_command_deploys_for_a_given_set(home: Path, capsys) -> None:
    base_port = random.randrange(31_000, 38_000, 10)
    w3 = LocalEvm(home).start(Procs(home), base_port)
    deployer = voucher.new_private_key()
    set_balance(w3, voucher.key_address(deployer), 10**19)
    key_file = home / "deployer.hex"
    key_file.write_text(deployer.hex())
    members = [voucher.key_address(voucher.new_private_key()) for _ in range(3)]
    validators = [f"--validator={a}:{p}" for a, p in zip(members, [1, 2, 4], strict=True)]
    argv = ["--rpc", rpc_url(base_port), "--key-file", str(key_file), "--test-token",
            "--dispute-period-s", "600", *validators]
    assert deploy.main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    bridge = chain.bridge_contract(w3, out["bridge"])
    assert bridge.functions.validator_count().call() == 3
    assert bridge.functions.total_power().call() == 7
    assert bridge.functions.power_of(members[2]).call() == 4
    assert bridge.functions.dispute_period_s().call() == 600
    assert out["validators"] == sorted(members, key=lambda a: int(a, 16))
    with pytest.raises(SystemExit) as bad:
        deploy.main([*argv[:4], "--token", "0x1234", *argv[5:]])
    assert bad.value.code == 2
    assert deploy.main([*argv, f"--validator={members[0]}:1"]) == 2  # a member twice
