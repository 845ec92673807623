"""Bridge records and their keys (under the exchange's Merkle root, prefixes 0x38..0x3c).

=====  ===================================  ==========================================
prefix key                                   value (msgpack array)
=====  ===================================  ==========================================
0x38   validator(32)                         bridge key: [address(20)]
0x39   evm_chain_id(8) tx_hash(32)           deposit: [credited_height (0: pending),
       log_index(4)                          account, amount_atoms,
                                             [[validator, account, amount_atoms], ...]]
0x3a   withdrawal_id(8)                      withdrawal: [account, amount_atoms,
                                             recipient(20), requested_height, status,
                                             [[validator, address, signature(65)], ...],
                                             [[validator, observed_status], ...]]
0x3b   ``3b``                                rate-limit window: [period_index,
                                             withdrawn_atoms]
0x3c   ``3c``                                bridge meta: [next_withdrawal_id,
                                             deposited_atoms, withdrawn_atoms]
=====  ===================================  ==========================================

The withdrawal record holds the voucher's fields and every validator's signature of it, so a
proof of that one record (``/v1/proof/record``) gives a relayer everything the contract needs,
checked against a QC-signed state root. A credited deposit keeps its key for ever (without its
attestations): that key is what makes a second credit of the same deposit impossible.
"""

from __future__ import annotations

from typing import Any

from state_machine.bridge.params import BridgeParams
from state_machine.codec import encode
from state_machine.invariants import check

P_BRIDGE_KEY = 0x38
P_DEPOSIT = 0x39
P_WITHDRAWAL = 0x3A
WINDOW_KEY = b"\x3b\x3b"
META_KEY = b"\x3c\x3c"
BRIDGE_KEY_PREFIXES = range(0x38, 0x40)

REQUESTED = 0
SIGNED = 1
SUBMITTED = 2
DISPUTED = 3
FINALISED = 4
STATUS_NAMES = ("requested", "signed", "submitted", "disputed", "finalised")


def _u64(x: int) -> bytes:
    return x.to_bytes(8, "big")


def deposit_key(evm_chain_id: int, tx_hash: bytes, log_index: int) -> bytes:
    """The deposit id (EVM chain, transaction, log index) as a state key."""
    return bytes([P_DEPOSIT]) + _u64(evm_chain_id) + tx_hash + log_index.to_bytes(4, "big")


class Deposit:
    """A deposit seen by at least one validator. ``claims`` maps each attesting validator to
    what it saw (account, amount): the deposit is credited when validators holding more than
    two thirds of the power saw the same thing."""

    __slots__ = ("account", "amount_atoms", "claims", "credited_height", "key")

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.credited_height = 0
        self.account = b""
        self.amount_atoms = 0
        self.claims: dict[bytes, tuple[bytes, int]] = {}  # in attestation order

    def state_key(self) -> bytes:
        return self.key

    def state_obj(self) -> list[Any]:
        claims = [[v, a, n] for v, (a, n) in self.claims.items()]
        return [self.credited_height, self.account, self.amount_atoms, claims]


class Withdrawal:
    """A withdrawal through the bridge: the voucher's fields (id, recipient, amount), the
    validators' signatures of it and what they saw of it on the EVM chain."""

    __slots__ = (
        "account",
        "amount_atoms",
        "observations",
        "recipient",
        "requested_height",
        "signatures",
        "status",
        "withdrawal_id",
    )

    def __init__(
        self, wid: int, account: bytes, amount_atoms: int, recipient: bytes, height: int
    ) -> None:
        self.withdrawal_id = wid
        self.account = account
        self.amount_atoms = amount_atoms
        self.recipient = recipient
        self.requested_height = height
        self.status = REQUESTED
        self.signatures: dict[bytes, tuple[bytes, bytes]] = {}  # validator -> (address, sig)
        self.observations: dict[bytes, int] = {}  # validator -> observed status

    def state_key(self) -> bytes:
        return bytes([P_WITHDRAWAL]) + _u64(self.withdrawal_id)

    def state_obj(self) -> list[Any]:
        return [
            self.account,
            self.amount_atoms,
            self.recipient,
            self.requested_height,
            self.status,
            [[v, a, s] for v, (a, s) in self.signatures.items()],
            [[v, s] for v, s in self.observations.items()],
        ]


class BridgeState:
    """All bridge records, with dirty tracking like the staking state."""

    def __init__(self, params: BridgeParams) -> None:
        self.params = params
        self.keys: dict[bytes, bytes] = {}  # validator -> address, in registration order
        self.by_address: dict[bytes, bytes] = {}  # address -> validator
        self.deposits: dict[bytes, Deposit] = {}  # by key
        self.pending_by_validator: dict[bytes, int] = {}  # derived: uncredited attestations
        self.withdrawals: dict[int, Withdrawal] = {}
        self.by_account: dict[bytes, list[int]] = {}  # derived: account -> withdrawal ids
        self.window_period = 0
        self.window_withdrawn_atoms = 0
        self.next_withdrawal_id = 1
        self.deposited_atoms = 0
        self.withdrawn_atoms = 0
        self._dirty: dict[bytes, bytes | None] = {}
        for k in params.bridge_keys:
            self.set_key(k.validator, k.address)
        self._dirty = {}  # genesis keys are written by entries() with the rest of genesis

    @classmethod
    def from_entries(cls, params: BridgeParams, entries: list[tuple[bytes, Any]]) -> BridgeState:
        """Rebuild from stored (key, decoded value) pairs: the inverse of :meth:`entries`."""
        st = cls(params)
        st.keys, st.by_address = {}, {}
        for key, v in entries:
            load_entry(st, key, v)
        for dep in st.deposits.values():
            st.count_pending(dep, 1)
        for w in st.withdrawals.values():
            st.by_account.setdefault(w.account, []).append(w.withdrawal_id)
        return st

    # ---- records ------------------------------------------------------------------------------

    def set_key(self, validator: bytes, address: bytes) -> None:
        old = self.keys.get(validator)
        if old is not None:
            del self.by_address[old]
        self.keys[validator] = address
        self.by_address[address] = validator
        self._dirty[bytes([P_BRIDGE_KEY]) + validator] = encode([address])

    def touch(self, record: Deposit | Withdrawal) -> None:
        self._dirty[record.state_key()] = encode(record.state_obj())

    def count_pending(self, dep: Deposit, sign: int) -> None:
        if dep.credited_height:
            return
        for v in dep.claims:
            self.pending_by_validator[v] = self.pending_by_validator.get(v, 0) + sign

    def meta_obj(self) -> list[int]:
        return [self.next_withdrawal_id, self.deposited_atoms, self.withdrawn_atoms]

    def window_obj(self) -> list[int]:
        return [self.window_period, self.window_withdrawn_atoms]

    def take_writes(self) -> list[tuple[bytes, bytes | None]]:
        out = dict(self._dirty)
        out[META_KEY] = encode(self.meta_obj())
        out[WINDOW_KEY] = encode(self.window_obj())
        self._dirty = {}
        return sorted(out.items())

    def entries(self) -> list[tuple[bytes, bytes]]:
        out = [(META_KEY, encode(self.meta_obj())), (WINDOW_KEY, encode(self.window_obj()))]
        out += [(bytes([P_BRIDGE_KEY]) + v, encode([a])) for v, a in self.keys.items()]
        out += [(d.key, encode(d.state_obj())) for d in self.deposits.values()]
        out += [(w.state_key(), encode(w.state_obj())) for w in self.withdrawals.values()]
        return sorted(out)


def load_entry(st: BridgeState, key: bytes, v: Any) -> None:
    """One stored record back into ``st`` (the inverse of each record's ``state_obj``)."""
    p = key[0]
    if key == META_KEY:
        st.next_withdrawal_id, st.deposited_atoms, st.withdrawn_atoms = v
    elif key == WINDOW_KEY:
        st.window_period, st.window_withdrawn_atoms = v
    elif p == P_BRIDGE_KEY:
        st.keys[key[1:]] = v[0]
        st.by_address[v[0]] = key[1:]
    elif p == P_DEPOSIT:
        dep = Deposit(key)
        dep.credited_height, dep.account, dep.amount_atoms = v[0], v[1], v[2]
        dep.claims = {c[0]: (c[1], c[2]) for c in v[3]}
        st.deposits[key] = dep
    elif p == P_WITHDRAWAL:
        w = Withdrawal(int.from_bytes(key[1:9], "big"), v[0], v[1], v[2], v[3])
        w.status = v[4]
        w.signatures = {s[0]: (s[1], s[2]) for s in v[5]}
        w.observations = {o[0]: o[1] for o in v[6]}
        st.withdrawals[w.withdrawal_id] = w
    else:
        check(False, f"not a bridge key prefix: {p}")
