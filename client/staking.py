"""Staking transactions in the user's units: amounts are decimal USDC strings ("1000", "2.5"),
commission a percentage with at most two decimals ("5", "2.25"), keys 64 hex. Each builder
returns the action (``state_machine.staking.actions``) to sign like any other
(``Trader.send``, ``client.signing.sign_actions``); a value that does not convert exactly
raises :class:`client.errors.CliError` before anything is signed.

    with Trader(node, Path("me.key")) as t:
        t.send([delegate(operator, "250")])
"""

from __future__ import annotations

from client.errors import CliError
from node.api.units import UnitError, decimal_to_atoms, parse_decimal
from node.keys import parse_address
from state_machine.staking.actions import (
    CreateValidator,
    Delegate,
    EditValidator,
    Undelegate,
    Unjail,
)
from state_machine.staking.params import BPS

USDC_DECIMALS = 6
U64_LIMIT = 2**64


def usdc_atoms(text: str, what: str = "amount") -> int:
    """A positive decimal USDC amount in atoms, exactly."""
    try:
        atoms = decimal_to_atoms(text, USDC_DECIMALS, what)
    except UnitError as exc:
        raise CliError(exc.message) from None
    if not 0 < atoms < U64_LIMIT:
        raise CliError(f"{what} must be positive and below 2**64 atoms")
    return atoms


def commission_bps(text: str) -> int:
    """A percentage ("5", "2.25", "5%") in basis points, exactly."""
    try:
        value = parse_decimal(text.removesuffix("%"), "commission") * 100
    except UnitError as exc:
        raise CliError(exc.message) from None
    if value.denominator != 1 or value > BPS:
        raise CliError("commission: a percent from 0 to 100 with at most two decimals")
    return int(value)


def key_bytes(text: str, what: str) -> bytes:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise CliError(f"{what}: {exc}") from None


def create_validator(
    consensus_key: str, p2p_address: str, commission: str, self_stake: str
) -> CreateValidator:
    return CreateValidator(
        key_bytes(consensus_key, "consensus key"),
        p2p_address,
        commission_bps(commission),
        usdc_atoms(self_stake, "self-stake"),
    )


def edit_validator(p2p_address: str, commission: str) -> EditValidator:
    return EditValidator(p2p_address, commission_bps(commission))


def delegate(operator: str, amount: str) -> Delegate:
    return Delegate(key_bytes(operator, "operator"), usdc_atoms(amount))


def undelegate(operator: str, amount: str) -> Undelegate:
    return Undelegate(key_bytes(operator, "operator"), usdc_atoms(amount))


def unjail() -> Unjail:
    return Unjail()
