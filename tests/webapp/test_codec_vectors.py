"""The page's JavaScript encodings and checks (static/js/codec.js) against the Python code,
run in headless Chromium on shared vectors: the same transaction fields must give the same
msgpack bytes, transaction id and Ed25519 signature; proofs and certificates made by the
node's own code must verify in the page, and tampered ones must not."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from cli.lightclient import expected_account_keys
from consensus.types import COMMIT, BlockHeader, QCSignature, QuorumCert, vote_signing_bytes
from state_machine.codec import encode
from state_machine.crypto import Keypair
from state_machine.genesis import Asset, default_genesis
from state_machine.merkle_state import MerkleState
from state_machine.proofkeys import Listings, asset_listing_key, market_listing_key
from state_machine.tx import (
    Action,
    CancelOrder,
    PlaceOrder,
    sign_transaction,
)
from state_machine.txroot import inclusion_proof, tx_root
from tests.webapp.browser import browser_page, load_codec

pytestmark = pytest.mark.slow

SEEDS = [bytes([i]) * 32 for i in (1, 2, 7)]
# Field values across msgpack's integer widths (fixint, uint8, uint16, uint32, uint64) and
# a 32-character chain id (str8, one past fixstr).
PLACE_ORDERS = [
    PlaceOrder(2, True, 0, 0, 5_999_000, 10),
    PlaceOrder(0, False, 1, 1, 0, 127, 0, False, 0, 0),
    PlaceOrder(3, True, 3, 0, 128, 255, 0, True, 65_535, 1),
    PlaceOrder(2, False, 2, 1, 0, 65_536, 4_294_967_295, True, 4_294_967_296, 2),
    PlaceOrder(1, True, 5, 0, 2**53 - 1, 1, 2**40, False, 2**52, 0),
    PlaceOrder(2, True, 0, 3, 6_000_000, 1, 0, False, 9, 0),
]


def place_js(a: PlaceOrder) -> dict[str, Any]:
    return {
        "market_id": a.market_id,
        "is_buy": a.is_buy,
        "kind": a.kind,
        "tif": a.tif,
        "price_ticks": a.price_ticks,
        "size_lots": a.size_lots,
        "trigger_price_ticks": a.trigger_price_ticks,
        "reduce_only": a.reduce_only,
        "client_id": a.client_id,
        "stp": a.stp,
    }


def tx_vectors() -> list[dict[str, Any]]:
    vectors = []
    chains = ["perpbft-localnet", "a", "x" * 32]
    for i, order in enumerate(PLACE_ORDERS):
        key = Keypair(SEEDS[i % len(SEEDS)])
        chain = chains[i % len(chains)]
        nonce = [1, 1_795_310_607_195, 2**32, 2**53 - 1][i % 4]
        expires = [0, 1_795_310_700_000][i % 2]
        tx = sign_transaction(key, chain, nonce, [order], expires_at_ms=expires)
        vectors.append(
            {
                "seed": key.seed.hex(),
                "chain_id": chain,
                "nonce": nonce,
                "expires_at_ms": expires,
                "orders": [place_js(order)],
                "cancel": None,
                "tx": tx.to_wire().hex(),
                "tx_id": tx.tx_id().hex(),
                "signature": tx.signature.hex(),
                "public_key": key.public_key.hex(),
            }
        )
    # Several actions, a cancel among them.
    key = Keypair(SEEDS[0])
    actions: list[Action] = [PLACE_ORDERS[0], CancelOrder(2, 123_456), PLACE_ORDERS[2]]
    tx = sign_transaction(key, "perpbft-localnet", 1_795_310_607_196, actions)
    vectors.append(
        {
            "seed": key.seed.hex(),
            "chain_id": "perpbft-localnet",
            "nonce": 1_795_310_607_196,
            "expires_at_ms": 0,
            "orders": [place_js(PLACE_ORDERS[0]), place_js(PLACE_ORDERS[2])],
            "cancel": [2, 123_456],
            "tx": tx.to_wire().hex(),
            "tx_id": tx.tx_id().hex(),
            "signature": tx.signature.hex(),
            "public_key": key.public_key.hex(),
        }
    )
    return vectors


SIGN_IN_PAGE = """(v) => {
  const c = window.codec;
  const actions = v.orders.map(c.placeOrderAction);
  if (v.cancel) actions.splice(1, 0, c.cancelOrderAction(v.cancel[0], v.cancel[1]));
  const out = c.signTransaction(c.unhex(v.seed), v.chain_id, v.nonce, actions, v.expires_at_ms);
  return {tx: c.hex(out.tx), tx_id: out.txId, signature: c.hex(out.signature),
          public_key: c.hex(c.publicKeyOf(c.unhex(v.seed))), raw_id: c.txIdOfRaw(c.unhex(v.tx))};
}"""


def test_transactions_signed_in_the_browser_equal_the_python_encoders() -> None:
    vectors = tx_vectors()
    with browser_page() as page:
        load_codec(page)
        for v in vectors:
            got = page.evaluate(SIGN_IN_PAGE, v)
            assert got["tx"] == v["tx"], v
            assert got["tx_id"] == v["tx_id"]
            assert got["signature"] == v["signature"]
            assert got["public_key"] == v["public_key"]
            assert got["raw_id"] == v["tx_id"]
        # A value the library would write as 8 bytes (non-canonical) is refused, not sent.
        refused = page.evaluate(
            """() => { try { window.codec.packb([2 ** 53]); return "encoded"; }
                       catch (e) { return e.message; } }"""
        )
        assert refused != "encoded"


def test_decimal_conversion_is_exact_or_refused() -> None:
    cases = [
        ("59990", "0.01", "5999000"),
        ("0.001", "0.0001", "10"),
        ("0.00015", "0.0001", "error"),
        ("1e5", "1", "error"),
        ("-1", "1", "error"),
        ("123456789012345678901234567890", "0.5", "246913578024691357802469135780"),
    ]
    with browser_page() as page:
        load_codec(page)
        for amount, step, want in cases:
            got = page.evaluate(
                """([a, s]) => { try { return window.codec.toSteps(a, s, "price").toString(); }
                                 catch (e) { return "error"; } }""",
                [amount, step],
            )
            assert got == want, (amount, step)


def test_inclusion_paths_of_the_node_verify_in_the_browser_and_tampered_ones_do_not() -> None:
    cases = []
    for size in (1, 2, 3, 5, 8, 13):
        leaves = [bytes([size, i]) * 20 for i in range(size)]
        root = tx_root(leaves)
        for index in range(size):
            proof = inclusion_proof(leaves, index)
            cases.append(
                {
                    "leaf": leaves[index].hex(),
                    "index": index,
                    "size": size,
                    "path": [p.hex() for p in proof.path],
                    "root": root.hex(),
                }
            )
    with browser_page() as page:
        load_codec(page)
        results = page.evaluate(
            """(cases) => cases.map((k) => {
                 const c = window.codec;
                 const path = k.path.map(c.unhex);
                 const root = c.unhex(k.root);
                 const good = c.verifyInclusion(c.unhex(k.leaf), k.index, k.size, path, root);
                 const leaf = c.unhex(k.leaf); leaf[0] ^= 1;
                 const badLeaf = c.verifyInclusion(leaf, k.index, k.size, path, c.unhex(k.root));
                 const badIndex = k.size > 1 && c.verifyInclusion(
                     c.unhex(k.leaf), (k.index + 1) % k.size, k.size, path, c.unhex(k.root));
                 return [good, badLeaf, badIndex];
               })""",
            cases,
        )
    assert results == [[True, False, False]] * len(cases)


def test_state_proofs_of_the_node_verify_in_the_browser_and_tampered_ones_do_not() -> None:
    tree = MerkleState()
    entries = {
        b"\x01" + i.to_bytes(2, "big") * 16 + bytes(4): bytes([i % 256]) * (i % 50 + 1)
        for i in range(3000)
    }
    tree.apply(sorted(entries.items()))
    root = tree.root()
    cases: list[dict[str, str | None]] = []
    for key in list(entries)[:40]:
        proof = tree.prove(key).to_wire().hex()
        cases.append({"key": key.hex(), "value": entries[key].hex(), "proof": proof})
    for i in range(10):
        absent = bytes([2]) + bytes([i]) * 36
        proof = tree.prove(absent).to_wire().hex()
        cases.append({"key": absent.hex(), "value": None, "proof": proof})
    with browser_page() as page:
        load_codec(page)
        results = page.evaluate(
            """([root, cases]) => cases.map((k) => {
                 const c = window.codec;
                 const value = k.value === null ? null : c.unhex(k.value);
                 const [key, proof] = [c.unhex(k.key), c.unhex(k.proof)];
                 const good = c.verifyStateProof(c.unhex(root), key, value, proof);
                 const other = value === null ? new Uint8Array([1]) : null;
                 const flipped = c.verifyStateProof(c.unhex(root), key, other, proof);
                 const r = c.unhex(root); r[31] ^= 1;
                 const badRoot = c.verifyStateProof(r, c.unhex(k.key), value, c.unhex(k.proof));
                 return [good, flipped, badRoot];
               })""",
            [root.hex(), cases],
        )
    assert results == [[True, False, False]] * len(cases)


def test_commit_certificates_verify_against_the_genesis_validators_in_the_browser() -> None:
    keys = [Keypair(bytes([40 + i]) * 32) for i in range(4)]
    validators = [{"pubkey": k.public_key.hex(), "power": 1} for k in keys]
    chain = "perpbft-localnet"
    header = BlockHeader(
        7, 9, bytes(32), 1_795_310_607_195, keys[1].public_key, bytes(32), b"\x05" * 32
    )
    block_hash = header.block_hash()

    def qc(signers: list[Keypair], signed_hash: bytes = block_hash) -> str:
        msg = vote_signing_bytes(chain, COMMIT, 9, 7, signed_hash)
        sigs = tuple(QCSignature(k.public_key, k.sign(msg)) for k in signers)
        return QuorumCert(COMMIT, 9, 7, block_hash, sigs).to_wire().hex()

    outsider = Keypair(b"\x63" * 32)
    cases = {
        "quorum": qc(keys[:3]),
        "all": qc(keys),
        "two_of_four": qc(keys[:2]),
        "outsider": qc([*keys[:2], outsider]),
        "wrong_message": qc(keys[:3], b"\x01" * 32),
    }
    genesis = {"chain_id": chain, "validators": validators}
    with browser_page() as page:
        load_codec(page)
        got = page.evaluate(
            """([header, cases, genesis]) => {
                 const c = window.codec;
                 const out = {};
                 for (const [name, qc] of Object.entries(cases)) {
                   const failures = [];
                   const h = c.checkCertifiedHeader(header, qc, genesis, failures);
                   out[name] = {failures, hash: c.hex(h.block_hash), height: h.height};
                 }
                 return out;
               }""",
            [header.to_wire().hex(), cases, genesis],
        )
    assert got["quorum"] == {"failures": [], "hash": block_hash.hex(), "height": 7}
    assert got["all"]["failures"] == []
    for bad in ("two_of_four", "outsider", "wrong_message"):
        assert got[bad]["failures"], bad


def test_the_account_keys_a_proof_must_cover_are_the_light_clients() -> None:
    """The page insists on the same keys as cli/lightclient.py: every balance and position of
    the account and its order-tools record (0x4b), so it cannot be shown a proof that hides a
    position or a TWAP."""
    genesis = default_genesis("perpbft-page", [(bytes([0xA1]) * 32, 1)], [])
    who = bytes([0x5C]) * 32
    page_genesis = {
        "assets": [{"asset_id": a.asset_id} for a in genesis.assets],
        "markets": [
            {"market_id": m.market_id, "kind": "perp" if m.is_perp else "spot"}
            for m in genesis.markets
        ],
    }
    with browser_page() as page:
        load_codec(page)
        keys = page.evaluate(
            "([g, who]) => window.codec.expectedAccountKeys(g, who)", [page_genesis, who.hex()]
        )
    assert keys == [k.hex() for k in expected_account_keys(genesis, who)]
    assert "4b" + who.hex() in keys


def test_the_page_reads_listed_markets_from_the_proven_listing_records() -> None:
    """With governance listings the page derives the same keys as the light client: a
    listed perp's position and a listed asset's balance, from the listing records whose
    proofs verify (state_machine/proofkeys.py); a missing listing proof is a failure."""
    genesis = default_genesis("perpbft-page", [(bytes([0xA1]) * 32, 1)], [])
    who = bytes([0x5C]) * 32
    perp = dataclasses.replace(genesis.markets[2], market_id=4, symbol="SOL-PERP")
    spot = dataclasses.replace(genesis.markets[0], market_id=5, symbol="SOL/USDC")
    records = {
        market_listing_key(4): encode(perp.to_obj()),
        market_listing_key(5): encode(spot.to_obj()),
        asset_listing_key(3): encode(Asset(3, "SOL", 9).to_obj()),
    }
    tree = MerkleState.from_entries(sorted(records.items()))
    listings = Listings([(4, True), (5, False)], 1)
    keys = expected_account_keys(genesis, who, listings)
    body = {
        "entries": [
            {"key": k.hex(), "value": records[k].hex() if k in records else None,
             "proof": tree.prove(k).to_wire().hex()}
            for k in keys
        ]
    }  # fmt: skip
    page_genesis = {
        "assets": [{"asset_id": a.asset_id} for a in genesis.assets],
        "markets": [
            {"market_id": m.market_id, "kind": "perp" if m.is_perp else "spot"}
            for m in genesis.markets
        ],
    }
    script = """([g, who, body, root]) => {
        const failures = [];
        const listings = window.codec.provenListings(body, g, window.codec.unhex(root), failures);
        return [listings, window.codec.expectedAccountKeys(g, who, listings), failures];
    }"""
    cut = {"entries": [e for e in body["entries"] if e["key"] != market_listing_key(5).hex()]}
    with browser_page() as page:
        load_codec(page)
        got, page_keys, failures = page.evaluate(
            script, [page_genesis, who.hex(), body, tree.root().hex()]
        )
        _, _, cut_failures = page.evaluate(
            script, [page_genesis, who.hex(), cut, tree.root().hex()]
        )
    assert failures == []
    assert got == {"markets": [[4, True], [5, False]], "assets": 1}
    assert page_keys == [k.hex() for k in keys]
    assert ("02" + who.hex() + "00000004") in page_keys  # the listed perp's position
    assert ("02" + who.hex() + "00000005") not in page_keys  # a listed spot market has none
    assert cut_failures == [f"no valid proof for listing key {market_listing_key(5).hex()}"]
