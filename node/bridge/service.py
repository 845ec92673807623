"""The bridge service of a validator node: follows the EVM chain and the committed state, and
sends the transactions its duties call for (``duties.py``).

Theory of operation
-------------------
Every ``[bridge] poll_ms`` the service

1. reads the EVM chain's head minus the genesis ``confirmations`` and scans the bridge's
   ``Deposit`` events up to it, at most ``scan_blocks_max`` blocks per query, from where the
   previous poll stopped (``start_block`` after a start: the state says which deposits are
   already attested or credited, so a rescan sends nothing twice);
2. keeps each deposit it saw until the state shows it credited or attested by this validator
   (so an attestation lost in a full mempool is sent again), at most ``SEEN_DEPOSITS_MAX``;
3. signs every open voucher it has not signed with its bridge key (the EIP-712 digest of
   ``evm.voucher``), and reads each open withdrawal's state on the contract;
4. freezes the contract if it holds a withdrawal the chain never made (another recipient or
   amount than the voucher, or an id the state has not issued while the node is caught up):
   the dispute of the dispute period;
5. signs one transaction per batch of at most ``MAX_ACTIONS_PER_TX`` actions with the node key
   and admits it to its own mempool, like a client's.

Web3 calls block, so each runs in a worker thread; a failing RPC endpoint is logged and counted
and the next poll tries again: the node never stops for the EVM chain. Only deposits that are
``confirmations`` deep are attested, so a reorg shallower than that cannot change what an honest
validator attests (a deeper one is out of scope: docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import trio
from web3 import Web3

from evm import chain as evm_chain
from evm.voucher import Domain, Voucher, key_address, sign_voucher
from node.bridge.duties import (
    SeenDeposit,
    SeenWithdrawal,
    deposit_duties,
    forged_withdrawal,
    key_duty,
    observation_duties,
    open_withdrawals,
    signature_duties,
)
from node.config import BridgeSettings
from node.logs import fields, get_logger
from state_machine.bridge.records import SIGNED, BridgeState, Withdrawal, deposit_key
from state_machine.tx import MAX_ACTIONS_PER_TX, Action, sign_transaction

if TYPE_CHECKING:
    from node.node import Node

log = get_logger("bridge")

SEEN_DEPOSITS_MAX = 10_000
SCANS_PER_POLL_MAX = 8
# A withdrawal id the contract holds but the state has not issued is forged only if the state
# is current: a validator more than this far behind the chain does not accuse.
CAUGHT_UP_S = 5.0  # a node far behind catches up over several polls, not in one burst


class BridgeService:
    """One validator's bridge duties; ``await service.run()`` in the node's nursery."""

    def __init__(self, node: Node, settings: BridgeSettings, private_key: bytes) -> None:
        self.node = node
        self.settings = settings
        self.private_key = private_key
        self.address = bytes.fromhex(key_address(private_key)[2:])
        self.next_block = settings.start_block
        self.seen: dict[bytes, SeenDeposit] = {}  # by deposit key, until credited or attested
        self.last_nonce = 0
        self.w3: Web3 | None = None
        self.domain: Domain | None = None

    # ---- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        address = "0x" + self.address.hex()
        log.info("bridge_started", extra=fields(address=address, rpc_url=self.settings.rpc_url))
        while True:
            try:
                await self.poll_once()
            except Exception as exc:  # the EVM node's or web3's failure: try again later
                self.node.metrics.bridge_rpc_errors.inc()
                error = f"{type(exc).__name__}: {exc}"
                log.warning("bridge_poll_failed", extra=fields(error=error))
                self.w3 = None  # reconnect next time
            await trio.sleep(self.settings.poll_ms / 1000)

    def caught_up(self) -> bool:
        """The node executed a block in the last CAUGHT_UP_S seconds of wall-clock time."""
        age_ms = time.time() * 1000 - self.node.last_block_time_ms
        return self.node.last_block_time_ms > 0 and age_ms < CAUGHT_UP_S * 1000

    def bridge_state(self) -> BridgeState | None:
        chain = self.node.chain
        if chain is None or chain.state.bridge is None:
            return None
        if self.node.key.public_key not in chain.state.validator_power:
            return None  # only the current validators' attestations count
        bridge: BridgeState = chain.state.bridge
        return bridge

    async def poll_once(self) -> None:
        br = self.bridge_state()
        if br is None:
            return
        w3 = await self.connect(br)
        await self.scan_deposits(w3, br)
        br = self.bridge_state()  # the state may have moved on while the scan ran
        if br is None:
            return
        me = self.node.key.public_key
        actions: list[Action] = []
        key_action = key_duty(br, me, self.address)
        if key_action is not None:
            actions.append(key_action)
        actions += deposit_duties(br, me, list(self.seen.values()))
        self.forget_settled(br, me)
        opened = open_withdrawals(br, self.settings.actions_max)
        actions += signature_duties(br, me, self.sign, opened)
        ids = [w.withdrawal_id for w in opened if w.status >= SIGNED]
        if self.caught_up():  # a node behind the chain would take a new id for a forged one
            ids.append(br.next_withdrawal_id)
        onchain = await self.read_withdrawals(w3, ids)
        await self.freeze_if_forged(w3, br, onchain)
        actions += observation_duties(br, me, onchain)
        await self.send(actions[: self.settings.actions_max])

    # ---- the EVM side (worker threads) -----------------------------------------------------

    async def connect(self, br: BridgeState) -> Web3:
        if self.w3 is None:
            w3 = await trio.to_thread.run_sync(evm_chain.connect, self.settings.rpc_url)
            chain_id = int(await trio.to_thread.run_sync(lambda: w3.eth.chain_id))
            if chain_id != br.params.evm_chain_id:
                raise ValueError(
                    f"{self.settings.rpc_url} serves chain {chain_id}, the genesis bridge is on "
                    f"{br.params.evm_chain_id}"
                )
            self.w3 = w3
            self.domain = Domain(br.params.evm_chain_id, "0x" + br.params.contract.hex())
        return self.w3

    async def scan_deposits(self, w3: Web3, br: BridgeState) -> None:
        confirmations = br.params.confirmations
        head = await trio.to_thread.run_sync(evm_chain.confirmed_head, w3, confirmations)
        self.node.metrics.bridge_confirmed_block.set(max(head, 0))
        contract = "0x" + br.params.contract.hex()
        for _ in range(SCANS_PER_POLL_MAX):
            if self.next_block > head or len(self.seen) >= SEEN_DEPOSITS_MAX:
                return
            last = min(head, self.next_block + self.settings.scan_blocks_max - 1)
            found = await trio.to_thread.run_sync(
                evm_chain.read_deposits, w3, contract, self.next_block, last
            )
            for d in found:
                seen = SeenDeposit(d.chain_id, d.tx_hash, d.log_index, d.account, d.amount_atoms)
                self.seen[deposit_key(d.chain_id, d.tx_hash, d.log_index)] = seen
            self.next_block = last + 1

    async def read_withdrawals(self, w3: Web3, ids: list[int]) -> list[SeenWithdrawal]:
        """The contract's state of withdrawals ``ids``; the last is the next id the chain will
        issue, which the contract must not know yet (forged_withdrawal)."""
        contract = "0x" + self.node_bridge_contract()
        out = []
        for wid in ids:
            state = await trio.to_thread.run_sync(evm_chain.withdrawal_state, w3, contract, wid)
            recipient = bytes.fromhex(state.recipient[2:]) if state.status != "none" else b""
            out.append(SeenWithdrawal(wid, state.status, state.frozen, recipient,
                                      state.amount_atoms))  # fmt: skip
        return out

    async def freeze_if_forged(
        self, w3: Web3, br: BridgeState, onchain: list[SeenWithdrawal]
    ) -> None:
        """Freeze the bridge when the contract holds a withdrawal the chain never made (the
        validator's bridge key pays the gas); unfreezing takes a supermajority's signatures."""
        reason = forged_withdrawal(br, onchain)
        if reason is None or any(s.frozen for s in onchain):
            return
        log.critical("bridge_forged_withdrawal", extra=fields(reason=reason))
        contract = "0x" + self.node_bridge_contract()
        await trio.to_thread.run_sync(evm_chain.freeze, w3, self.private_key, contract)
        self.node.metrics.bridge_freezes.inc()

    def node_bridge_contract(self) -> str:
        bridge = self.node.genesis.bridge
        assert bridge is not None  # the service runs only on a chain with a bridge
        return bridge.contract.hex()

    # ---- the chain side ---------------------------------------------------------------------

    def forget_settled(self, br: BridgeState, me: bytes) -> None:
        """Drop seen deposits the state has credited or holds this validator's claim of."""
        for key in list(self.seen):
            record = br.deposits.get(key)
            if record is not None and (record.credited_height or me in record.claims):
                del self.seen[key]

    def sign(self, w: Withdrawal) -> bytes:
        assert self.domain is not None  # set by connect() before any duty runs
        voucher = Voucher(w.withdrawal_id, "0x" + w.recipient.hex(), w.amount_atoms)
        signature: bytes = sign_voucher(self.private_key, self.domain, voucher)
        return signature

    def next_nonce(self) -> int:
        """Milliseconds, strictly increasing (the chain's nonce rule, DESIGN section 3)."""
        self.last_nonce = max(int(time.time() * 1000), self.last_nonce + 1)
        return self.last_nonce

    async def send(self, actions: list[Action]) -> None:
        node = self.node
        for start in range(0, len(actions), MAX_ACTIONS_PER_TX):
            batch = actions[start : start + MAX_ACTIONS_PER_TX]
            tx = sign_transaction(node.key, node.chain_id, self.next_nonce(), batch)
            sub = await node.submit(tx.to_wire(), tx)
            for action in batch:
                node.metrics.bridge_actions.labels(kind=type(action).__name__).inc()
            log.info("bridge_sent", extra=fields(actions=len(batch), verdict=_verdict(sub)))


def _verdict(sub: Any) -> str:
    verdict = sub.verdict
    return "" if verdict is None else str(getattr(verdict, "value", verdict))
