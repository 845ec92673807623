"""Account records: an account (not itself a state entry), its balances (key 0x01) and the
withdrawals (key 0x0a). ``VAULT`` is the liquidation vault's account."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # typing only: these records import nothing of the account's
    from state_machine.book import Order
    from state_machine.perpetuals.records import Position
    from state_machine.triggers.records import Trigger

P_BALANCE = 0x01
P_WITHDRAWAL = 0x0A


def _u32(x: int) -> bytes:
    return x.to_bytes(4, "big")


class Balance:
    __slots__ = ("asset_id", "available_atoms", "dirty", "held_atoms", "key", "owner", "risk_floor")

    def __init__(self, owner: bytes, asset_id: int, available_atoms: int = 0) -> None:
        self.owner = owner
        self.asset_id = asset_id
        self.available_atoms = available_atoms
        self.held_atoms = 0
        self.dirty = False
        self.key = b"\x01" + owner + _u32(asset_id)  # the state key (fixed for life)
        # USDC available when the risk engine last evaluated the owner's cross unit (derived,
        # not stored): a balance that has not fallen below it cannot have hurt the unit.
        self.risk_floor: int | None = None

    def state_key(self) -> bytes:
        return self.key

    def state_obj(self) -> list[Any] | None:
        if self.available_atoms == 0 and self.held_atoms == 0:
            return None
        return [self.available_atoms, self.held_atoms]

    def restore(self, v: list[Any]) -> None:
        """The inverse of :meth:`state_obj`."""
        self.available_atoms, self.held_atoms = v


VAULT = bytes(32)  # the liquidation vault; no one can sign for the all-zero (small-order) key


class Account:
    """Not itself a state entry: its balances and positions are."""

    __slots__ = ("balances", "client_ids", "orders", "positions", "pubkey", "triggers")

    def __init__(self, pubkey: bytes) -> None:
        self.pubkey = pubkey
        self.balances: dict[int, Balance] = {}
        self.positions: dict[int, Position] = {}
        self.orders: dict[int, Order] = {}  # order_id -> open order, in placement order
        self.client_ids: dict[int, Order] = {}  # client_id -> open order
        self.triggers: dict[int, Trigger] = {}  # order_id -> untriggered trigger order


class Withdrawal:
    __slots__ = (
        "account",
        "amount_atoms",
        "asset_id",
        "destination",
        "dirty",
        "height",
        "withdrawal_id",
    )

    def __init__(
        self, wid: int, account: bytes, asset_id: int, amount: int, dest: bytes, height: int
    ) -> None:
        self.withdrawal_id = wid
        self.account = account
        self.asset_id = asset_id
        self.amount_atoms = amount
        self.destination = dest
        self.height = height
        self.dirty = False

    def state_key(self) -> bytes:
        return b"\x0a" + self.withdrawal_id.to_bytes(8, "big")

    def state_obj(self) -> list[Any] | None:
        return [self.account, self.asset_id, self.amount_atoms, self.destination, self.height]

    @classmethod
    def from_state(cls, key: bytes, v: list[Any]) -> Withdrawal:
        """The inverse of :meth:`state_key` and :meth:`state_obj`."""
        return cls(int.from_bytes(key[1:9], "big"), v[0], v[1], v[2], v[3], v[4])
