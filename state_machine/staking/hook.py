"""How the exchange runs staking: its USDC balances are the ledger, and its block loop calls
:func:`apply_staking_action` for staking actions, :func:`begin_block` before the
transactions and :func:`end_block` after them. This file is the whole interface; the
exchange's side of it is a dispatch entry per action type and two calls per block.
"""

from __future__ import annotations

from state_machine.invariants import check
from state_machine.perpetuals.margin import free_collateral
from state_machine.staking import engine
from state_machine.staking.actions import (
    CreateValidator,
    Delegate,
    EditValidator,
    StakingAction,
    SubmitEvidence,
    Undelegate,
    Unjail,
)
from state_machine.staking.codes import STAKING_DISABLED
from state_machine.staking.params import ATOMS_PER_POWER, STAKE_ASSET_ID, StakingParams
from state_machine.state import ExchangeCore


class ExchangeLedger:
    """Stake moves between the exchange's available USDC and the staking records. Only USDC
    that leaves the initial margin of open positions covered is movable (like a transfer)."""

    __slots__ = ("st",)

    def __init__(self, st: ExchangeCore) -> None:
        self.st = st

    def movable_atoms(self, owner: bytes) -> int:
        acct = self.st.accounts.get(owner)
        if acct is None:
            return 0
        bal = acct.balances.get(STAKE_ASSET_ID)
        available = 0 if bal is None else bal.available_atoms
        if acct.positions:
            available = min(available, max(0, free_collateral(self.st, acct)))
        return available

    def debit_atoms(self, owner: bytes, amount_atoms: int) -> None:
        bal = self.st.balance(self.st.account(owner), STAKE_ASSET_ID)
        check(bal.available_atoms >= amount_atoms, "staking debit above the balance")
        bal.available_atoms -= amount_atoms
        self.st.touch(bal)

    def credit_atoms(self, owner: bytes, amount_atoms: int) -> None:
        bal = self.st.balance(self.st.account(owner), STAKE_ASSET_ID)
        bal.available_atoms += amount_atoms
        self.st.touch(bal)


def apply_staking_action(
    staking: engine.StakingState, ledger: engine.Ledger, signer: bytes, action: StakingAction
) -> engine.Result:
    """Run one staking action of a transaction signed by ``signer``."""
    if isinstance(action, CreateValidator):
        return engine.process_create_validator(staking, ledger, signer, action)
    if isinstance(action, EditValidator):
        return engine.process_edit_validator(staking, signer, action)
    if isinstance(action, Delegate):
        return engine.process_delegate(staking, ledger, signer, action)
    if isinstance(action, Undelegate):
        return engine.process_undelegate(staking, signer, action)
    if isinstance(action, Unjail):
        return engine.process_unjail(staking, signer, action)
    if isinstance(action, SubmitEvidence):
        return engine.process_submit_evidence(staking, signer, action)
    raise TypeError(f"not a staking action: {type(action).__name__}")


# ---- the exchange's side: one call per action, two per block ----------------------------------

# 0x26: the governed parameters; 0x2f: the epoch schedule
STAKING_KEY_PREFIXES = (*range(0x20, 0x27), 0x2F)


def is_staking_key(key: bytes) -> bool:
    return key[0] in STAKING_KEY_PREFIXES


def enable_staking(
    st: ExchangeCore, params: StakingParams, operators: dict[bytes, tuple[bytes, str]] | None = None
) -> None:
    """Start staking at genesis: the genesis validators are its first operators."""
    validators = [(v.pubkey, v.power) for v in st.genesis.validators]
    st.staking = engine.StakingState.from_genesis(
        st.genesis.chain_id, params, validators, operators
    )


def enable_genesis_staking(st: ExchangeCore) -> None:
    """Staking from the genesis ``staking`` section, if it has one (state_machine/staking/
    genesis.py). Its records are part of the genesis entries, not of block 1's writes."""
    section = st.genesis.staking
    if section is None:
        return
    operators = {v.pubkey: section.operator_of(v.pubkey) for v in st.genesis.validators}
    enable_staking(st, section.params(), operators)
    assert st.staking is not None
    st.staking.take_writes()
    follow_active_set(st)


def genesis_staking_params(st: ExchangeCore) -> StakingParams | None:
    section = st.genesis.staking
    return None if section is None else section.params()


def staking_supply_atoms(st: ExchangeCore) -> tuple[int, int]:
    """USDC conservation's staking terms: (atoms held by staking now: bonded and unbonding,
    atoms it added to the supply: the genesis self-stake minted, less what slashing burnt)."""
    staking = st.staking
    if staking is None:
        return 0, 0
    held = sum(r.tokens_atoms for r in staking.validators.values())
    held += sum(u.amount_atoms for u in staking.unbondings.values())
    section = st.genesis.staking
    minted = 0 if section is None else sum(v.power for v in st.genesis.validators)
    return held, minted * ATOMS_PER_POWER - staking.burnt_atoms


def staking_from_entries(
    st: ExchangeCore, params: StakingParams, entries: list[tuple[bytes, bytes]]
) -> engine.StakingState:
    return engine.StakingState.from_entries(st.genesis.chain_id, params, entries, st.height)


def _move_events(st: ExchangeCore) -> None:
    staking = st.staking
    check(staking is not None, "staking events without staking")
    assert staking is not None
    if staking.events:
        st.events.extend(staking.events)
        staking.events = []


def follow_active_set(st: ExchangeCore) -> None:
    """Who may submit oracle prices, and with which weight in the median: the active set of
    the epoch of the block being executed (the genesis powers while staking is off)."""
    staking = st.staking
    check(staking is not None, "following the active set without staking")
    assert staking is not None
    record = staking.epoch_sets.get(staking.schedule.epoch_of(st.height))
    if record is not None:
        st.validator_power = dict(record.members)


def staking_begin_block(st: ExchangeCore) -> None:
    if st.staking is not None:
        engine.begin_block(st.staking, ExchangeLedger(st), st.height)
        follow_active_set(st)
        _move_events(st)


def staking_end_block(st: ExchangeCore) -> None:
    """At an epoch's last block the new set goes out as an ``epoch_set`` event, which the
    node turns into ``BlockExecuted.next_set`` for consensus."""
    if st.staking is not None:
        engine.end_block(st.staking)
        _move_events(st)


def run_staking_action(st: ExchangeCore, signer: bytes, action: StakingAction) -> engine.Result:
    if st.staking is None:
        return engine.Result(STAKING_DISABLED, "staking is not enabled on this chain")
    result = apply_staking_action(st.staking, ExchangeLedger(st), signer, action)
    _move_events(st)
    return result
