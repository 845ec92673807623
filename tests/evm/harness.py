"""An in-process EVM (eth-tester on py-evm) with a deployed test token and bridge, for the
contract tests. Real contracts, real signatures, a real EVM: only the chain is in-process."""

from __future__ import annotations

from dataclasses import dataclass

from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.backends.pyevm.main import get_default_account_keys
from web3 import EthereumTesterProvider, Web3

from evm import chain, voucher
from evm.voucher import Domain, Voucher

DISPUTE_PERIOD_S = 3_600
# Funded accounts of the in-process chain: 0 deploys (and mints), 1 is a user, 2 a relayer.
DEPLOYER, USER, RELAYER = 0, 1, 2


@dataclass
class Bridge:
    w3: Web3
    tester: EthereumTester
    keys: list[bytes]  # funded accounts' keys
    validator_keys: list[bytes]  # sorted by address
    powers: list[int]
    token: str
    bridge: str

    @property
    def domain(self) -> Domain:
        return chain.bridge_domain(self.w3, self.bridge)

    def address(self, index: int) -> str:
        return voucher.key_address(self.keys[index])

    def sign(self, digest: bytes, signers: list[int]) -> list[bytes]:
        return [voucher.sign_digest(self.validator_keys[i], digest) for i in signers]

    def voucher_sigs(self, v: Voucher, signers: list[int]) -> list[bytes]:
        return self.sign(voucher.voucher_digest(self.domain, v), signers)

    def balance(self, address: str) -> int:
        return int(chain.token_contract(self.w3, self.token).functions.balanceOf(address).call())

    def advance_time_s(self, seconds: int) -> None:
        now = self.w3.eth.get_block("latest")["timestamp"]
        self.tester.time_travel(int(now) + seconds)


def validator_keys(count: int) -> list[bytes]:
    """Deterministic distinct secp256k1 keys, sorted by their address."""
    keys = [(0xB1D6E000 + i).to_bytes(32, "big") for i in range(count)]  # not the funded ones
    return sorted(keys, key=lambda k: int(voucher.key_address(k), 16))


def new_chain() -> tuple[Web3, EthereumTester, list[bytes]]:
    tester = EthereumTester(PyEVMBackend())
    w3 = Web3(EthereumTesterProvider(tester))
    keys = [k.to_bytes() for k in get_default_account_keys(quantity=4)]
    return w3, tester, keys


def deploy(
    validators: int = 4, powers: list[int] | None = None, dispute_period_s: int = DISPUTE_PERIOD_S
) -> Bridge:
    w3, tester, keys = new_chain()
    vkeys = validator_keys(validators)
    powers = powers or [1] * validators
    token = chain.deploy_token(w3, keys[DEPLOYER])
    bridge = chain.deploy_bridge(
        w3, keys[DEPLOYER], token, [voucher.key_address(k) for k in vkeys], powers,
        dispute_period_s,
    )
    for k in vkeys[:4]:  # a few validators get gas money (to call freeze)
        chain.fund_eth(w3, keys[DEPLOYER], voucher.key_address(k), 10**18)
    return Bridge(w3, tester, keys, vkeys, powers, token, bridge)
