"""State root and block commit cost: blocks changing N keys over states of growing size.

For each state size (10k, 100k and 1M keys by default) a fresh subprocess (so its peak RSS is
its own) builds a state of that many entries, creates an LMDB store holding them
(:meth:`node.storage.Store.create`, which also builds the in-memory Merkle working copy), sets
the store's ``proof_history_heights`` (``--proof-history``: an undo record per block keeps that
many past heights provable; 0 keeps none), then commits ``--warmup-blocks`` unmeasured and
``--blocks`` measured blocks through :meth:`node.storage.Store.commit_block`. The state is one
of two kinds:

* default: random entries (account-like keys, 96-byte values) held in a dict as a stand-in for
  the node's working copy; each block changes ``--changed-keys`` keys (80 % updates of existing
  keys, 10 % new keys, 10 % deletions) and writes nothing else.
* ``--exchange``: a real :class:`state_machine.exchange.ExchangeState`, built through
  :func:`state_machine.exchange.apply_block` with unsigned transactions (``apply_block`` never
  verifies signatures; the node does that once on mempool entry). The genesis (default assets
  and markets) funds one treasury account; then, in blocks of ``BUILD_BLOCK_ACTIONS`` actions:
  (1) the treasury transfers USDC, BTC and ETH (seeded amounts) to ``total_keys // 9`` new
  accounts, three balance entries each; (2) each account sends one transaction (its nonce
  entry) placing ``ORDERS_PER_ACCOUNT`` resting GTC limit orders on random markets (spot and
  perp, 1 tick to 0.5 % of the price behind the reference, never crossing) and, with
  probability ``CROSS_PROBABILITY``, an IOC order through the book of a perp market, which
  fills against other accounts' resting orders so both sides hold perp positions; (3) more
  resting orders, round robin over the accounts, until the state has ``total_keys`` entries.
  The measured blocks are real order flow, drawn by :class:`bench.matching.Workload` (adds
  near the touch, cancels, crossing orders, amends) and applied with ``apply_block``; the
  number of actions per block is adjusted from the blocks before so that the block's write set
  (``BlockResult.writes``) has about ``--changed-keys`` keys. Each block is committed as the
  node commits it: the write set, the encoded transaction results and events, and the
  transactions' bytes as the block. The result reports the entry counts by kind and the actual
  write-set sizes.

It reports the median per measured block of

* ``update_ms``: the Merkle tree update and new root (in memory);
* ``commit_ms``: the LMDB write transaction with its commit and fsync;
* ``update_cpu_ms`` and ``commit_cpu_ms``: the same in CPU time of the committing thread,
  which other load on the machine barely moves (the rest of ``commit_ms`` is disk waits);

and the process's peak RSS (LMDB's mapped pages that were touched count too), which includes
the transient peak of creating the store from the full list of entries, as a node has when it
starts from genesis or a snapshot. ``--exchange`` results also give the resident set after the
state was built (``rss_state_mb``) and at the end (``rss_end_mb``). The worker calls
``gc.freeze()`` after building its state, as a long-running node does after loading, so the
cyclic collector does not rescan millions of long-lived objects during the measured blocks.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from client.errors import CliError
from node.storage import DEFAULT_PROOF_HISTORY_HEIGHTS, PROOF_HISTORY_HEIGHTS_MAX, ProofHeightError

if TYPE_CHECKING:
    from node.storage import Store
    from state_machine.exchange import ExchangeState
    from state_machine.tx import Action, Transaction

DEFAULT_SIZES = "10000,100000,1000000"
KEY_PREFIX = b"acct/"
VALUE_BYTES = 96
WORKER_TIMEOUT_S = 1800

# The exchange state (``--exchange``).
CHAIN = "perpbft-bench"
T0 = 1_700_000_000_000
BLOCK_MS = 500
KEYS_PER_ACCOUNT_PLAN = 9  # accounts = total_keys // this; resting orders fill up the rest
ORDERS_PER_ACCOUNT = 3
CROSS_PROBABILITY = 0.6
BOOK_DEPTH_PPM = 5_000  # resting orders sit 1 tick to 0.5 % of the price behind the reference
BUILD_BLOCK_ACTIONS = 4000
TRANSFERS_PER_TX = 60
ORDERS_PER_TOPUP_TX = 8
SPOT_MARKETS = (0, 1)
PERP_MARKETS = (2, 3)
MARKETS = SPOT_MARKETS + PERP_MARKETS
# State key prefix byte -> name (state_machine/state.py, "Key layout").
ENTRY_KINDS = {
    0x00: "meta",
    0x01: "balance",
    0x02: "position",
    0x03: "order",
    0x04: "market",
    0x05: "oracle",
    0x06: "nonces",
    0x07: "fee_pool",
    0x08: "vault_peak",
    0x09: "asset_totals",
    0x0A: "withdrawal",
    0x0B: "trigger",
}

BlockWrites = tuple[
    list[tuple[bytes, bytes | None]],  # state write set
    list[tuple[bytes, bytes]],  # (tx id, result bytes)
    bytes,  # events
    bytes,  # block bytes
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="comma-separated state sizes")
    parser.add_argument("--changed-keys", type=int, default=5000, help="keys changed per block")
    parser.add_argument("--blocks", type=int, default=12, help="measured blocks per size")
    parser.add_argument("--warmup-blocks", type=int, default=3, help="unmeasured blocks first")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the LMDB stores")
    parser.add_argument(
        "--exchange",
        action="store_true",
        help="hold a real exchange state built through apply_block; blocks are real order flow",
    )
    parser.add_argument(
        "--proof-history",
        type=int,
        default=DEFAULT_PROOF_HISTORY_HEIGHTS,
        help="the store's proof_history_heights (undo records kept; 0 keeps none)",
    )
    parser.add_argument(
        "--archive",
        action="store_true",
        help="an archive store ([storage] archive): also writes the version index. With it, or "
        "a --proof-history covering every block, reports proofs at height 1 and at the latest",
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s]
    except ValueError:
        raise CliError("--sizes must be comma-separated integers") from None
    if not sizes or min(sizes) < 1 or args.changed_keys < 1 or args.blocks < 1:
        raise CliError("--sizes, --changed-keys and --blocks must be positive")
    if args.warmup_blocks < 0:
        raise CliError("--warmup-blocks must not be negative")
    if not 0 <= args.proof_history <= PROOF_HISTORY_HEIGHTS_MAX:
        raise CliError(f"--proof-history must be 0..{PROOF_HISTORY_HEIGHTS_MAX}")
    check_work_dir(args.dir)
    state_kind = "exchange" if args.exchange else "random"
    results = []
    load_before = round(os.getloadavg()[0], 2)
    for total_keys in sizes:
        print(
            f"{state_kind} state of {total_keys:,} keys: building and committing...",
            file=sys.stderr,
        )
        result = _run_worker(total_keys, args)
        if args.exchange:
            kinds = ", ".join(f"{n:,} {k}" for k, n in result["entries"].items())
            print(
                f"  {result['total_keys']:,} entries ({kinds}; {result['accounts']:,} accounts); "
                f"write set per block {result['changed_keys_per_block']:,} keys "
                f"({result['actions_per_block']:,} actions, apply_block {result['apply_ms']} ms)",
                file=sys.stderr,
            )
        print(
            f"  update {result['update_ms']:.1f} ms ({result['update_cpu_ms']:.1f} ms CPU), "
            f"commit {result['commit_ms']:.1f} ms ({result['commit_cpu_ms']:.1f} ms CPU), "
            f"peak RSS {result['peak_rss_mb']:.0f} MB (setup {result['setup_s']:.1f} s)",
            file=sys.stderr,
        )
        results.append(result)
    base = results[0]
    for r in results:
        r["update_vs_smallest"] = _ratio(r["update_ms"], base["update_ms"])
        r["update_cpu_vs_smallest"] = _ratio(r["update_cpu_ms"], base["update_cpu_ms"])
        r["total_vs_smallest"] = _ratio(
            r["update_ms"] + r["commit_ms"], base["update_ms"] + base["commit_ms"]
        )
    # Other processes on the machine inflate wall-clock figures; say how busy it was.
    return {
        "bench": "state_root",
        "changed_keys": args.changed_keys,
        "results": results,
        "state": state_kind,
        "proof_history_heights": args.proof_history,
        "archive": bool(args.archive),
        "load_avg_1m": [load_before, round(os.getloadavg()[0], 2)],
        "cpus": os.cpu_count(),
    }


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


def check_work_dir(path: Path | None) -> None:
    """--dir must be an existing directory we may write in (checked before any work)."""
    if path is None:
        return
    if not path.is_dir():
        raise CliError(f"--dir {path} is not an existing directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise CliError(f"--dir {path} is not writable")


def _run_worker(total_keys: int, args: argparse.Namespace) -> dict[str, Any]:
    try:
        work_dir = Path(tempfile.mkdtemp(prefix="perpbft-bench-", dir=args.dir))
    except OSError as exc:
        raise CliError(f"cannot create a work directory in {args.dir}: {exc.strerror}") from None
    params = {
        "total_keys": total_keys,
        "changed_keys": args.changed_keys,
        "blocks": args.blocks,
        "warmup": args.warmup_blocks,
        "work_dir": str(work_dir),
        "exchange": bool(args.exchange),
        "proof_history": args.proof_history,
        "archive": bool(args.archive),
    }
    try:
        cmd = [sys.executable, "-m", "bench.state_root", json.dumps(params)]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S, check=False
        )
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    if proc.returncode != 0:
        raise CliError(f"worker for {total_keys} keys failed: {proc.stderr.strip()[-500:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# --------------------------------------------------------------------------------------------
# The worker (runs in its own process).
# --------------------------------------------------------------------------------------------


def _worker(params: dict[str, Any]) -> None:
    if params["exchange"]:
        result = _exchange_worker(params)
    else:
        result = _random_worker(params)
    print(json.dumps(result))


def _random_worker(params: dict[str, Any]) -> dict[str, Any]:
    from node.storage import Store

    total_keys: int = params["total_keys"]
    changed_keys: int = params["changed_keys"]
    rng = random.Random(total_keys)
    started = time.perf_counter()
    state = {_key(rng): rng.randbytes(VALUE_BYTES) for _ in range(total_keys)}
    store = Store.create(Path(params["work_dir"]), "bench", bytes(32), sorted(state.items()))
    store.proof_history_heights = params["proof_history"]
    store.archive = params.get("archive", False)
    setup_s = time.perf_counter() - started
    gc.collect()
    gc.freeze()
    keys = list(state)

    def next_block(height: int) -> BlockWrites:
        return _block_writes(rng, state, keys, changed_keys), [], b"", b"b"

    result: dict[str, Any] = {"total_keys": total_keys}
    result.update(_measure(store, next_block, params["blocks"], params["warmup"]))
    result["setup_s"] = round(setup_s, 1)
    return result


def _measure(
    store: Store, next_block: Callable[[int], BlockWrites], blocks: int, warmup: int
) -> dict[str, Any]:
    """Commit ``warmup + blocks`` blocks from ``next_block``; medians of the measured ones."""
    update_ms: list[float] = []
    update_cpu_ms: list[float] = []
    commit_ms: list[float] = []
    commit_cpu_ms: list[float] = []
    for height in range(1, warmup + blocks + 1):
        writes, tx_results, events, block = next_block(height)
        store.commit_block(
            height=height,
            block_hash=height.to_bytes(32, "big"),
            block=block,
            qc=b"q",
            writes=writes,
            tx_results=tx_results,
            events=events,
        )
        stats = store.last_commit
        if stats is not None and height > warmup:
            update_ms.append(stats.tree_update_s * 1000)
            update_cpu_ms.append(stats.tree_update_cpu_s * 1000)
            commit_ms.append(stats.lmdb_write_s * 1000)
            commit_cpu_ms.append(stats.lmdb_write_cpu_s * 1000)
    rss_end_mb = _rss_mb()
    provable = store.archive or store.proof_history_heights >= store.height
    proof_ms = _proof_ms(store, [w[0] for w in writes[:PROOF_KEYS]]) if provable else {}
    store.close()
    return {
        **proof_ms,
        "update_ms": round(statistics.median(update_ms), 1),
        "commit_ms": round(statistics.median(commit_ms), 1),
        "update_cpu_ms": round(statistics.median(update_cpu_ms), 1),
        "commit_cpu_ms": round(statistics.median(commit_cpu_ms), 1),
        "update_ms_max": round(max(update_ms), 1),
        "commit_ms_max": round(max(commit_ms), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "rss_end_mb": rss_end_mb,
        "blocks": blocks,
    }


PROOF_KEYS = 20  # keys of the last block, proven at once as one request would


def _proof_ms(store: Store, keys: list[bytes]) -> dict[str, Any]:
    """Median time of one ``prove_many`` of ``keys`` at height 1 (every later block changed
    state since) and at the height below the latest: the version index (archive) against the
    undo walk (a proof history covering every height)."""
    latest = store.height
    out: dict[str, Any] = {}
    for name, height in (("proof_oldest_ms", 1), ("proof_recent_ms", latest - 1)):
        times = []
        for _ in range(5):
            started = time.perf_counter()
            try:
                store.prove_many(keys, height)
            except ProofHeightError as exc:  # the undo walk's per-request bound
                out[name.replace("_ms", "_refused")] = str(exc)
                break
            times.append((time.perf_counter() - started) * 1000)
        else:
            out[name] = round(statistics.median(times), 2)
    return out


def _key(rng: random.Random) -> bytes:
    """An account-like key: prefix, a 32-byte public key, a sub-key."""
    return KEY_PREFIX + rng.randbytes(32) + b"/" + rng.randbytes(4)


def _block_writes(
    rng: random.Random, state: dict[bytes, bytes], keys: list[bytes], changed_keys: int
) -> list[tuple[bytes, bytes | None]]:
    """80 % updates, 10 % inserts, 10 % deletes; applied to ``state``; sorted like a write set."""
    writes: dict[bytes, bytes | None] = {}
    while len(writes) < changed_keys:
        roll = rng.random()
        if roll < 0.1:
            key = _key(rng)
            value: bytes | None = rng.randbytes(VALUE_BYTES)
        else:
            key = keys[rng.randrange(len(keys))]
            if key not in state or key in writes:
                continue
            value = None if roll < 0.2 else rng.randbytes(VALUE_BYTES)
        writes[key] = value
    for key, value in writes.items():
        if value is None:
            del state[key]
        else:
            if key not in state:
                keys.append(key)
            state[key] = value
    return sorted(writes.items())


# ---- the exchange state ----------------------------------------------------------------------


class ExchangeBuilder:
    """Applies blocks of unsigned transactions to a fresh exchange state (see the docstring)."""

    def __init__(self, total_keys: int) -> None:
        from state_machine.exchange import ExchangeState
        from state_machine.genesis import default_genesis

        self.rng = random.Random(total_keys)
        rng = self.rng
        n_accounts = max(2, total_keys // KEYS_PER_ACCOUNT_PLAN)
        self.accounts = [rng.randbytes(32) for _ in range(n_accounts)]
        # Per account: USDC 10,000-1,000,000, BTC 0.1-10, ETH 1-100 (atoms).
        self.funding = [
            (
                rng.randrange(10_000, 1_000_001) * 10**6,
                rng.randrange(10, 1001) * 10**6,
                rng.randrange(100, 10_001) * 10**6,
            )
            for _ in self.accounts
        ]
        self.treasury = b"\x7f" * 32
        totals = [sum(f[asset] for f in self.funding) for asset in range(3)]
        validators = [(bytes([0xF0 + i]) * 32, 1) for i in range(4)]
        funded = [(self.treasury, asset, totals[asset]) for asset in range(3)]
        genesis = default_genesis(CHAIN, validators, funded, genesis_time_ms=T0)
        self.state: ExchangeState = ExchangeState.from_genesis(genesis)
        self.nonce = T0
        self.tx_count = 0
        self.actions_applied = 0
        self.apply_s = 0.0

    def apply(self, txs: list[Transaction]) -> Any:
        """Apply ``txs`` as the next block; returns the BlockResult."""
        from state_machine.exchange import BlockContext, apply_block

        st = self.state
        height = st.height + 1
        ids = [(self.tx_count + i).to_bytes(32, "big") for i in range(len(txs))]
        self.tx_count += len(txs)
        ctx = BlockContext(height, T0 + BLOCK_MS * height, b"")
        started = time.perf_counter()
        res = apply_block(st, ctx, txs, ids)
        self.apply_s += time.perf_counter() - started
        self.actions_applied += sum(len(tx.actions) for tx in txs)
        return res

    def tx(self, signer: bytes, actions: list[Action]) -> Transaction:
        from state_machine.tx import TX_VERSION, Transaction

        self.nonce += 1
        return Transaction(TX_VERSION, CHAIN, signer, self.nonce, 0, tuple(actions), bytes(64))

    def apply_in_blocks(self, txs: Iterable[Transaction]) -> None:
        """Apply ``txs`` in order, in blocks of about BUILD_BLOCK_ACTIONS actions."""
        block: list[Transaction] = []
        n = 0
        for tx in txs:
            block.append(tx)
            n += len(tx.actions)
            if n >= BUILD_BLOCK_ACTIONS:
                self._apply_checked(block)
                block, n = [], 0
        if block:
            self._apply_checked(block)

    def _apply_checked(self, txs: list[Transaction]) -> None:
        res = self.apply(txs)
        for tr in res.tx_results:
            if tr.code != "ok":
                raise RuntimeError(f"build transaction rejected: {tr.code} {tr.message}")

    def resting_order(self, market_id: int) -> Action:
        """A GTC limit order 1 tick to BOOK_DEPTH_PPM behind the market's reference price."""
        from state_machine.tx import KIND_LIMIT, STP_CANCEL_RESTING, TIF_GTC, PlaceOrder

        rng = self.rng
        ref = self._ref(market_id)
        behind = 1 + rng.randrange(max(1, ref * BOOK_DEPTH_PPM // 1_000_000))
        is_buy = rng.random() < 0.5
        price = ref - behind if is_buy else ref + behind
        size = rng.randint(5, 50)
        return PlaceOrder(
            market_id, is_buy, KIND_LIMIT, TIF_GTC, price, size, 0, False, 0, STP_CANCEL_RESTING
        )

    def crossing_order(self, market_id: int) -> Action:
        """An IOC limit order through the book, up to BOOK_DEPTH_PPM past the reference."""
        from state_machine.tx import KIND_LIMIT, STP_CANCEL_RESTING, TIF_IOC, PlaceOrder

        rng = self.rng
        ref = self._ref(market_id)
        through = ref * BOOK_DEPTH_PPM // 1_000_000
        is_buy = rng.random() < 0.5
        price = ref + through if is_buy else ref - through
        size = rng.randint(5, 30)
        return PlaceOrder(
            market_id, is_buy, KIND_LIMIT, TIF_IOC, price, size, 0, False, 0, STP_CANCEL_RESTING
        )

    def _ref(self, market_id: int) -> int:
        ms = self.state.mstates[market_id]
        return ms.oracle_price_ticks or ms.last_trade_price_ticks

    def build(self, total_keys: int) -> None:
        """Funding, trading, then resting orders up to ``total_keys`` entries (the docstring).

        Transactions are generated block by block, so no list of them adds to the peak RSS.
        """
        self.apply_in_blocks(self._funding_txs())
        self.funding = []
        self.apply_in_blocks(self._trading_txs())
        count = count_entries(self.state)
        next_acct = 0
        while count < total_keys:
            self.apply_in_blocks(self._resting_txs(total_keys - count, next_acct))
            next_acct += -(-(total_keys - count) // ORDERS_PER_TOPUP_TX)
            before, count = count, count_entries(self.state)
            if count <= before:
                raise RuntimeError("resting orders did not add state entries")

    def _funding_txs(self) -> Iterator[Transaction]:
        """The treasury's transfers: three balance entries per account."""
        from state_machine.tx import Transfer

        transfers: list[Action] = []
        for acct, amounts in zip(self.accounts, self.funding, strict=True):
            transfers.extend(Transfer(acct, asset, amounts[asset]) for asset in range(3))
            if len(transfers) >= TRANSFERS_PER_TX:
                yield self.tx(self.treasury, transfers)
                transfers = []
        if transfers:
            yield self.tx(self.treasury, transfers)

    def _trading_txs(self) -> Iterator[Transaction]:
        """One transaction per account: resting orders, maybe an IOC through a perp book."""
        rng = self.rng
        for acct in self.accounts:
            actions = [self.resting_order(rng.choice(MARKETS)) for _ in range(ORDERS_PER_ACCOUNT)]
            if rng.random() < CROSS_PROBABILITY:
                actions.append(self.crossing_order(rng.choice(PERP_MARKETS)))
            yield self.tx(acct, actions)

    def _resting_txs(self, n_orders: int, first_acct: int) -> Iterator[Transaction]:
        """``n_orders`` resting orders (one entry each), round robin over the accounts."""
        i = first_acct
        while n_orders > 0:
            k = min(n_orders, ORDERS_PER_TOPUP_TX)
            acct = self.accounts[i % len(self.accounts)]
            yield self.tx(acct, [self.resting_order(self.rng.choice(MARKETS)) for _ in range(k)])
            n_orders -= k
            i += 1


def count_entries(state: ExchangeState) -> int:
    """``len(state.entries())`` without encoding the values."""
    return 1 + sum(1 for obj in state.all_objects() if obj.state_obj() is not None)


def _rss_mb() -> int | None:
    """The current resident set (Linux), in MiB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024)
    except OSError:
        pass
    return None


def _exchange_worker(params: dict[str, Any]) -> dict[str, Any]:
    from bench.matching import Workload
    from node.storage import Store

    total_keys: int = params["total_keys"]
    started = time.perf_counter()
    builder = ExchangeBuilder(total_keys)
    builder.build(total_keys)
    state = builder.state
    build_s = time.perf_counter() - started
    build_actions = builder.actions_applied
    gc.collect()
    rss_state_mb = _rss_mb()
    entries = state.entries()
    kinds = _entry_kinds(entries)
    n_entries = len(entries)
    store = Store.create(Path(params["work_dir"]), CHAIN, state.genesis_hash, entries)
    store.proof_history_heights = params["proof_history"]
    store.archive = params.get("archive", False)
    del entries
    setup_s = time.perf_counter() - started
    gc.collect()
    gc.freeze()
    rss_store_mb = _rss_mb()

    # Measured blocks: order flow; the number of actions follows the write sets seen so far.
    work = Workload(state, builder.accounts, seed=total_keys)
    work.nonce = builder.nonce
    builder.apply_s = 0.0
    flow = _FlowBlocks(builder, work, params["changed_keys"], params["warmup"])
    # The store counts heights from its creation (the state's heights are ahead by the build).
    measured = _measure(store, flow.next_block, params["blocks"], params["warmup"])
    if params.get("verify"):  # tests: the store followed the exchange state block by block
        from state_machine.merkle_state import MerkleState

        if MerkleState.from_entries(state.entries()).root() != store.state_root:
            raise RuntimeError("the store's root differs from the exchange state's entries")
    result: dict[str, Any] = {"total_keys": n_entries, "state": "exchange"}
    result.update(measured)
    result.update(
        {
            "requested_keys": total_keys,
            "entries": kinds,
            "accounts": len(builder.accounts),
            **flow.figures(),
            "rss_state_mb": rss_state_mb,
            "rss_store_mb": rss_store_mb,
            "build_actions": build_actions,
            "build_s": round(build_s, 1),
            "setup_s": round(setup_s, 1),
        }
    )
    return result


def _entry_kinds(entries: list[tuple[bytes, bytes]]) -> dict[str, int]:
    """How many state entries of each record kind (by key prefix)."""
    kinds: dict[str, int] = {}
    for key, _ in entries:
        name = ENTRY_KINDS.get(key[0], f"prefix_{key[0]:02x}")
        kinds[name] = kinds.get(name, 0) + 1
    return kinds


class _FlowBlocks:
    """The measured blocks' order flow: each block's action count follows the write sets
    seen so far, so that a block changes about ``changed_keys`` state keys."""

    def __init__(self, builder: ExchangeBuilder, work: Any, changed_keys: int, warmup: int):
        self.builder = builder
        self.work = work
        self.changed_keys = changed_keys
        self.warmup = warmup
        self.seen_actions = 0
        self.seen_writes = 0
        self.n_actions = max(1, changed_keys // 2)
        self.sizes: list[int] = []
        self.actions: list[int] = []
        self.apply_ms: list[float] = []

    def next_block(self, height: int) -> BlockWrites:
        from state_machine.codec import encode

        txs = self.work.block(self.n_actions)
        apply_before = self.builder.apply_s
        res = self.builder.apply(txs)
        writes: list[tuple[bytes, bytes | None]] = res.writes
        ids = [tr.tx_id for tr in res.tx_results]
        tx_results = [(i, encode(tr.to_obj())) for i, tr in zip(ids, res.tx_results, strict=True)]
        if height > self.warmup:
            self.sizes.append(len(writes))
            self.actions.append(self.n_actions)
            self.apply_ms.append((self.builder.apply_s - apply_before) * 1000)
        self.seen_actions += self.n_actions
        self.seen_writes += len(writes)
        self.n_actions = max(
            1, round(self.changed_keys * self.seen_actions / max(1, self.seen_writes))
        )
        block = b"".join(tx.to_wire() for tx in txs)
        return writes, tx_results, encode(res.events), block

    def figures(self) -> dict[str, Any]:
        return {
            "changed_keys_per_block": round(statistics.median(self.sizes)),
            "changed_keys_per_block_min": min(self.sizes),
            "changed_keys_per_block_max": max(self.sizes),
            "actions_per_block": round(statistics.median(self.actions)),
            "apply_ms": round(statistics.median(self.apply_ms), 1),
        }


if __name__ == "__main__":
    _worker(json.loads(sys.argv[1]))
