"""The bridge's commands (docs/BRIDGE.md): ``perpbft deposit``, ``perpbft withdraw`` and
``perpbft withdraw status``.

``deposit AMOUNT --evm-key FILE --rpc URL`` approves and deposits test USD into the bridge
contract from an EVM wallet, crediting ``--account`` (default: the ``--key`` account), then
waits until the validators have credited it and prints the deposit-to-credit time.

``withdraw AMOUNT --to 0xADDRESS`` debits the ``--key`` account and records the voucher; with
``--relay --evm-key FILE --rpc URL`` it then waits for the validators' signatures, checks each
against the bridge key the state holds for its validator (a bad one is left out rather than
making the contract refuse the whole submission), submits the voucher to the contract and, with
``--finalize``, waits out the dispute period and collects the payment. ``withdraw status ID``
shows a withdrawal, its signatures and (with ``--rpc``) its state on the contract.

The EVM side (``evm``, web3.py) is imported only by the commands that talk to the EVM chain:
it costs about a second, which the other ``perpbft`` commands should not pay.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from cli.errors import EXIT_OK, EXIT_REJECTED, CliError
from cli.trade_common import (
    add_common_arguments,
    api_get,
    console,
    load_key,
    open_client,
    print_committed,
    print_json,
    print_tables,
    sign_and_submit,
    table,
)
from client.http import NodeClient
from node.api.units import decimal_to_atoms
from node.bridge.keyfile import read_bridge_key
from node.keys import KeyFileError, parse_address
from state_machine.bridge.actions import BridgeWithdraw
from state_machine.genesis import USDC_DECIMALS

RPC_ENV = "PERPBFT_EVM_RPC"
POLL_S = 0.25
WAIT_DEFAULT_S = 120.0


def register(sub: Any) -> None:
    deposit = sub.add_parser("deposit", help="deposit USDC through the EVM bridge")
    deposit.add_argument("amount", help="decimal amount of the bridged token, e.g. 250")
    deposit.add_argument("--account", default=None, help="account to credit (default: --key's)")
    _evm_arguments(deposit)
    deposit.add_argument("--no-wait", action="store_true", help="do not wait for the credit")
    add_common_arguments(deposit, key=True)
    deposit.set_defaults(func=cmd_deposit)

    withdraw = sub.add_parser(
        "withdraw",
        help="withdraw USDC through the EVM bridge (or: withdraw status ID)",
        description="perpbft withdraw AMOUNT --to 0xADDRESS [--relay ...] | "
        "perpbft withdraw status ID",
    )
    withdraw.add_argument("amount", help="decimal USDC amount, or 'status'")
    withdraw.add_argument("withdrawal_id", nargs="?", type=int, help="with 'status': the id")
    withdraw.add_argument("--to", default=None, help="EVM address that receives the tokens")
    withdraw.add_argument("--relay", action="store_true", help="submit the signed voucher")
    withdraw.add_argument("--finalize", action="store_true", help="with --relay: collect it")
    _evm_arguments(withdraw)
    add_common_arguments(withdraw, key=True)
    withdraw.set_defaults(func=cmd_withdraw)


def _evm_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rpc", default=None, help=f"EVM JSON-RPC URL (default: ${RPC_ENV})")
    parser.add_argument("--evm-key", default=None, help="EVM wallet key file (hex, mode 0600)")
    parser.add_argument("--timeout", type=float, default=WAIT_DEFAULT_S, help="seconds to wait")


def rpc_url(args: argparse.Namespace) -> str:
    url: str | None = args.rpc or os.environ.get(RPC_ENV)
    if not url:
        raise CliError(f"--rpc URL of the EVM chain is required (or set ${RPC_ENV})", 2)
    return url


def evm_key(args: argparse.Namespace) -> bytes:
    if not args.evm_key:
        raise CliError("--evm-key FILE (the EVM wallet's key) is required", 2)
    try:
        return read_bridge_key(Path(args.evm_key))
    except KeyFileError as exc:
        raise CliError(str(exc), 2) from None


def usdc_atoms(text: str) -> int:
    try:
        atoms = decimal_to_atoms(text, USDC_DECIMALS)
    except ValueError as exc:
        raise CliError(str(exc), 2) from None
    if atoms <= 0:
        raise CliError("the amount must be positive", 2)
    return atoms


def wait_for(what: str, timeout_s: float, probe: Any) -> Any:
    """``probe()`` until it returns something, or a CliError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise CliError(f"timed out after {timeout_s:.0f} s waiting for {what}", EXIT_REJECTED)
        time.sleep(POLL_S)


# ---- deposit --------------------------------------------------------------------------------


def cmd_deposit(args: argparse.Namespace) -> int:
    from evm import chain as evm_chain  # web3: only this command pays for its import

    atoms = usdc_atoms(args.amount)
    key = evm_key(args)
    with open_client(args) as client:
        account = _deposit_account(args)
        info = api_get(client, "/v1/bridge")
        w3 = evm_chain.connect(rpc_url(args))
        bridge = info["contract"]
        token = evm_chain.bridge_contract(w3, bridge).functions.token().call()
        sent = evm_chain.deposit(w3, key, token, bridge, account, atoms)
        mined_s = time.monotonic()
        tx_hash = bytes(sent.tx_hash)
        log_index = _deposit_log_index(evm_chain, w3, bridge, sent.block_number, tx_hash)
        body: dict[str, Any] = {"tx_hash": "0x" + tx_hash.hex(), "log_index": log_index,
                                "account": account.hex(), "amount": args.amount}  # fmt: skip
        if not args.no_wait:
            credited = wait_for("the credit", args.timeout,
                                lambda: _credited(client, tx_hash, log_index))  # fmt: skip
            body.update(credited, credit_latency_s=round(time.monotonic() - mined_s, 2))
    return _print_deposit(body, args)


def _deposit_account(args: argparse.Namespace) -> bytes:
    if args.account is not None:
        try:
            return parse_address(args.account)
        except ValueError as exc:
            raise CliError(f"--account: {exc}", 2) from None
    return load_key(args)[1].public_key


def _deposit_log_index(evm_chain: Any, w3: Any, bridge: str, block: int, tx_hash: bytes) -> int:
    found = [d for d in evm_chain.read_deposits(w3, bridge, block, block) if d.tx_hash == tx_hash]
    if not found:
        raise CliError("the deposit transaction emitted no Deposit event", EXIT_REJECTED)
    return int(found[0].log_index)


def _credited(client: NodeClient, tx_hash: bytes, log_index: int) -> dict[str, Any] | None:
    try:
        answer = client.bridge_deposit("0x" + tx_hash.hex(), log_index)
    except Exception:  # 404 until the first attestation is committed
        return None
    return answer if answer.get("status") == "credited" else None


def _print_deposit(body: dict[str, Any], args: argparse.Namespace) -> int:
    if args.json:
        print_json(body)
        return EXIT_OK
    out = console()
    out.print(f"deposit {body['tx_hash']} log {body['log_index']}: {body['amount']} USDC "
              f"for {body['account']}")  # fmt: skip
    if "credit_latency_s" in body:
        out.print(f"credited at height {body['credited_height']}, "
                  f"{body['credit_latency_s']} s after the deposit was mined")  # fmt: skip
    return EXIT_OK


# ---- withdraw -------------------------------------------------------------------------------


def cmd_withdraw(args: argparse.Namespace) -> int:
    if args.amount == "status":
        if args.withdrawal_id is None:
            raise CliError("usage: perpbft withdraw status ID", 2)
        return cmd_withdraw_status(args)
    if args.withdrawal_id is not None:
        raise CliError("usage: perpbft withdraw AMOUNT --to 0xADDRESS", 2)
    recipient = _evm_address(args.to)
    atoms = usdc_atoms(args.amount)
    with open_client(args) as client:
        answer = sign_and_submit(args, client, [BridgeWithdraw(atoms, recipient)])
        result = answer.get("results", [{}])[0]
        if not args.relay or result.get("code") != "ok":
            return print_committed(answer, args)
        relayed = relay(args, client, int(result["order_id"]))
    if args.json:
        print_json({**answer, "relay": relayed})
    else:
        print_committed(answer, args)
        console().print(f"relayed: {relayed}")
    return EXIT_OK


def _evm_address(text: str | None) -> bytes:
    if not text:
        raise CliError("--to 0xADDRESS (the EVM recipient) is required", 2)
    body = text[2:] if text.startswith(("0x", "0X")) else text
    try:
        raw = bytes.fromhex(body)
    except ValueError:
        raw = b""
    if len(raw) != 20:
        raise CliError("--to must be an EVM address: 0x and 40 hex characters", 2)
    return raw


def relay(args: argparse.Namespace, client: NodeClient, withdrawal_id: int) -> dict[str, Any]:
    """Wait for the validators' signatures, keep the ones that verify, submit the voucher to
    the contract; with --finalize wait out the dispute period and collect."""
    from evm import chain as evm_chain  # web3: only the EVM commands pay for its import

    key = evm_key(args)
    w3 = evm_chain.connect(rpc_url(args))

    def signed() -> dict[str, Any] | None:
        w = client.bridge_withdrawal(withdrawal_id)
        return w if w["status"] != "requested" else None

    w = wait_for("the validators' signatures", args.timeout, signed)
    voucher, good = verified_signatures(w)
    bridge = w["domain"]["contract"]
    submitted = evm_chain.submit_withdrawal(w3, key, bridge, voucher, good)
    out: dict[str, Any] = {"withdrawal_id": withdrawal_id, "signatures": len(good),
                           "submit_tx": "0x" + submitted.tx_hash.hex(),
                           "submit_gas": submitted.gas_used}  # fmt: skip
    if args.finalize:
        state = evm_chain.withdrawal_state(w3, bridge, withdrawal_id)
        wait_s = max(0.0, state.finalizable_at_s - _evm_time_s(w3)) + 2.0
        time.sleep(min(wait_s, args.timeout))
        finalised = evm_chain.finalize_withdrawal(w3, key, bridge, withdrawal_id)
        out["finalize_tx"] = "0x" + finalised.tx_hash.hex()
    return out


def _evm_time_s(w3: Any) -> int:
    return int(w3.eth.get_block("latest")["timestamp"])


def verified_signatures(w: dict[str, Any]) -> tuple[Any, list[bytes]]:
    """The voucher and the signatures that recover to the address recorded with them."""
    from evm.voucher import Domain, Voucher, recover_signer, voucher_digest

    domain = Domain(int(w["domain"]["chain_id"]), w["domain"]["contract"])
    voucher = Voucher(int(w["withdrawal_id"]), w["recipient"], int(w["amount_atoms"]))
    digest = voucher_digest(domain, voucher)
    good = []
    for s in w["signatures"]:
        signature = bytes.fromhex(s["signature"][2:])
        try:
            signer = recover_signer(digest, signature)
        except ValueError:
            continue
        if signer.lower() == s["address"].lower():
            good.append(signature)
    return voucher, good


def cmd_withdraw_status(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        w = api_get(client, f"/v1/bridge/withdrawals/{args.withdrawal_id}")
    signatures = w["signatures"]
    if signatures and _evm_available():
        _, good = verified_signatures(w)
        valid = {"0x" + g.hex() for g in good}
        for s in signatures:
            s["valid"] = s["signature"] in valid
    if args.rpc or os.environ.get(RPC_ENV):
        w["on_contract"] = _on_contract(args, w)
    if args.json:
        print_json(w)
        return EXIT_OK
    print_tables(_status_table(w))
    return EXIT_OK


def _evm_available() -> bool:
    try:
        import evm.voucher  # noqa: F401
    except ImportError:
        return False
    return True


def _on_contract(args: argparse.Namespace, w: dict[str, Any]) -> dict[str, Any]:
    from evm import chain as evm_chain

    w3 = evm_chain.connect(rpc_url(args))
    state = evm_chain.withdrawal_state(w3, w["domain"]["contract"], int(w["withdrawal_id"]))
    return {"status": state.status, "frozen": state.frozen,
            "finalizable_at_s": state.finalizable_at_s}  # fmt: skip


def _status_table(w: dict[str, Any]) -> Any:
    rows = [
        ["withdrawal", w["withdrawal_id"]],
        ["status", w["status"]],
        ["amount", f"{w['amount']} USDC"],
        ["to", w["recipient"]],
        ["signed power", f"{w['signed_power']} of {w['total_power']}"],
    ]
    for s in w["signatures"]:
        mark = {True: "valid", False: "INVALID"}.get(s.get("valid"), "unchecked")
        rows.append([f"signature {s['validator'][:12]}", f"{s['address']} {mark}"])
    if "on_contract" in w:
        rows.append(["on the contract", str(w["on_contract"])])
    return table("bridge withdrawal", ["field", "value"], rows)
