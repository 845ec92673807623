"""Behaviour pins: fixed seeded flows through the engine must end in the recorded state root
and produce byte-identical events and results.

The engine was restructured (issue 15: rules moved into domain modules, shared predicates)
under a "no behaviour change" rule. The golden vectors pin one short chain; these pins cover
much more of the engine, each flow with a constant recorded before the restructuring:

* the matching bench's workload (``perpbft bench matching``: adds, cancels, crossing orders,
  amends over two spot and two perp markets);
* the NASDAQ LOBSTER replay (tests/state_machine/test_lobster.py: every message of the file);
* a perps flow: the crash ladder of test_risk.py (liquidations in the book, vault takeovers,
  insurance payouts, ADL, socialised losses) and a seeded random flow of every action type,
  valid and invalid, with trigger orders, oracle moves and block times long enough for funding.

A pin that changes means the engine's observable behaviour changed: find out why; only a
deliberate chain upgrade may re-record it (and then the golden vectors move too).

Re-recorded: the events hashes of the bench and random perps flows, when refusal messages
moved to traders' units (decimal prices and sizes, symbols, required and free margin); the
state roots did not move.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

from bench.matching import T0 as BENCH_T0
from bench.matching import Workload
from node.chain import encode_events
from state_machine.codec import encode
from state_machine.exchange import BlockContext, BlockResult, ExchangeState, apply_block
from state_machine.genesis import Genesis, default_genesis
from state_machine.merkle_state import MerkleState
from state_machine.tx import (
    KIND_STOP_LIMIT,
    KIND_STOP_MARKET,
    KIND_TAKE_PROFIT_LIMIT,
    KIND_TAKE_PROFIT_MARKET,
    TIF_GTC,
    TIF_IOC,
    Action,
    OraclePrice,
    OracleUpdate,
    PlaceOrder,
    Transaction,
)
from tests.state_machine.helpers import T0, VALIDATORS, Harness, make_genesis, tx
from tests.state_machine.randgen import BASE_PRICE, RandomFlow
from tests.state_machine.test_lobster import Replay, replay
from tests.state_machine.test_risk import crash, crash_genesis, open_crash_positions


class Pin:
    """SHA-256 over every block's events and results, in the bytes the node stores."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.blocks = 0

    def add(self, res: BlockResult) -> None:
        self.blocks += 1
        self.digest.update(encode_events(res.events))
        self.digest.update(encode([r.to_obj() for r in res.tx_results]))

    def hexdigest(self) -> str:
        return self.digest.hexdigest()


def check_pin(root: str, pin: Pin, want_root: str, want_events: str) -> None:
    got = (root, pin.hexdigest())
    assert got == (want_root, want_events), f"state root and events hash now {got}"


def state_root(state: ExchangeState) -> str:
    return MerkleState.from_entries(state.entries()).root().hex()


# ---- the matching bench's flow ---------------------------------------------------------------

BENCH_ROOT = "8c78f4bc250bc43c683ce5ddd20c7732808e4ae37b61b98424c492a81817b77b"
BENCH_EVENTS = "7ce3685ecb55bd683247b112b7b9d9f8364a0868f1dcd4ac9e084ac5925e488d"


def test_matching_bench_flow_is_pinned() -> None:
    accounts = [(i + 1).to_bytes(32, "big") for i in range(200)]
    validators = [(bytes([0xF0 + i]) * 32, 1) for i in range(4)]
    genesis = default_genesis("perpbft-bench", validators, accounts, genesis_time_ms=BENCH_T0)
    state = ExchangeState.from_genesis(genesis)
    work = Workload(state, accounts, seed=1)
    pin = Pin()
    for height in range(1, 21):
        txs = work.block(1000)
        pin.add(apply_block(state, BlockContext(height, BENCH_T0 + 500 * height, b""), txs))
    check_pin(state_root(state), pin, BENCH_ROOT, BENCH_EVENTS)


# ---- the LOBSTER replay ----------------------------------------------------------------------

LOBSTER_ROOT = "8cc0467cdff61642a283c2a0f2100ca234777decf06cb1795ed98d0a724b0b40"
LOBSTER_EVENTS = "0fa7d89189326c3313082f80c84e697c27010eb9ba8c9871fd3bba8197752609"


def test_lobster_replay_is_pinned() -> None:
    rp = Replay()
    pin = Pin()
    rp.on_block = pin.add
    matched, _, _, _ = replay(rp)
    assert matched == 999
    check_pin(state_root(rp.st), pin, LOBSTER_ROOT, LOBSTER_EVENTS)


# ---- perps: the crash ladder and a random flow with triggers and funding ----------------------

CRASH_ROOT = "41a5ec9e2eed73aa5c31b1c7e0282e4a37ffc44e14f184c37ca442736f037b5a"
CRASH_EVENTS = "16e708a5719a9821190d2f93eacaca1fe4501cb266d089816a972b295c6f15d3"


class PinnedHarness(Harness):
    def __init__(self, genesis: Genesis, pin: Pin) -> None:
        super().__init__(genesis)
        self.pin = pin

    def block(self, txs: Sequence[Transaction], dt_ms: int = 500) -> BlockResult:
        res = super().block(txs, dt_ms)
        self.pin.add(res)
        return res


def test_crash_ladder_is_pinned() -> None:
    g, traders = crash_genesis(120, insurance_usdc=500)
    pin = Pin()
    h = PinnedHarness(g, pin)
    open_crash_positions(h, traders)
    kinds = crash(h, [5_880_000, 5_700_000, 5_100_000, 4_500_000, 4_200_000])
    assert {"liquidation", "backstop", "adl", "vault_adl", "socialised_loss"} <= set(kinds)
    check_pin(state_root(h.state), pin, CRASH_ROOT, CRASH_EVENTS)


class PerpFlow(RandomFlow):
    """RandomFlow plus trigger orders (stop / take-profit, market and limit) on the perps and
    wider oracle moves, so triggers fire and positions get liquidated."""

    def action(self, st: ExchangeState, signer: bytes) -> Action:
        rng = self.rng
        if rng.random() < 0.15:
            mid = rng.choice((2, 3))
            base = st.mstates[mid].oracle_price_ticks or BASE_PRICE[mid]
            kind = rng.choice(
                (KIND_STOP_MARKET, KIND_STOP_LIMIT, KIND_TAKE_PROFIT_MARKET, KIND_TAKE_PROFIT_LIMIT)
            )
            trig = base + rng.randint(-base // 20, base // 20)
            tif = rng.choice((TIF_GTC, TIF_IOC))
            return PlaceOrder(
                mid, rng.random() < 0.5, kind, tif, trig, rng.choice((1, 5, 50)), trig,
                rng.random() < 0.5,
            )  # fmt: skip
        return super().action(st, signer)

    def oracle_block(self, st: ExchangeState, rng: random.Random) -> list[Transaction]:
        prices = []
        for mid in (2, 3):
            base = st.mstates[mid].oracle_price_ticks or BASE_PRICE[mid]
            prices.append(OraclePrice(mid, max(1, base + rng.randint(-base // 12, base // 12))))
        out = []
        for v in VALIDATORS:
            self.nonce += 1
            out.append(tx(v, [OracleUpdate(tuple(prices))], self.nonce))
        return out


PERP_ROOT = "beae5adf3b2e00ecd6fb8ce402858865e023e216d97939438f5ab6c3c3584ca2"
# Re-recorded twice (tests/vectors/README.md, table of changes): amends outside the price band
# now say "from reference {ref}" like placements (events only); a losing partial close of an
# isolated position releases only the closed lots' own margin (7 closes of this flow moved).
PERP_EVENTS = "8bc496a99cb4beebc6ea809cbea896a744a45f7a10380b4f810ea589acbec13f"


def test_random_perp_flow_with_triggers_and_funding_is_pinned() -> None:
    st = ExchangeState.from_genesis(make_genesis(6))
    flow = PerpFlow(7)
    rng = random.Random(7)
    pin = Pin()
    kinds: set[str] = set()
    time_ms = T0
    for h in range(1, 241):
        txs = flow.block(st)
        if h % 5 == 0:
            txs = flow.oracle_block(st, rng) + txs
        time_ms += 60_000  # a minute per block: funding intervals end during the flow
        res = apply_block(st, BlockContext(h, time_ms, b""), txs)
        kinds |= {e[0] for e in res.events}
        pin.add(res)
    wanted = {"fill", "trigger_fired", "funding_payment", "liquidation", "adl", "order_amended"}
    assert wanted <= kinds, wanted - kinds
    check_pin(state_root(st), pin, PERP_ROOT, PERP_EVENTS)
