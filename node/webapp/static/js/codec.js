// The chain's encodings and checks, in the browser: transaction signing (canonical msgpack +
// Ed25519, byte for byte what state_machine/tx.py produces; tests/webapp/test_codec_vectors.py
// runs this file in Chromium on vectors made by the Python encoder), decimal <-> ticks/lots,
// and the light-client checks of the explorer: a transaction's RFC 6962 inclusion path, a
// state proof of state_machine/merkle_state.py, a block header's hash and its commit QC
// against the genesis validators (the rules of consensus/quorum.py).
//
// Everything decoded here is hostile input: a check returns {ok, failures[]} and never trusts
// the JSON copies beside a "wire" field.

import * as ed from "../vendor/noble-ed25519/index.js";
import { sha256, sha512 } from "../vendor/noble-hashes/sha2.js";

ed.hashes.sha512 = sha512;

const MessagePack = globalThis.MessagePack;
const enc = new TextEncoder();

export const TX_DOMAIN_TAG = enc.encode("perpbft/tx/v1\x00");
export const VOTE_DOMAIN_TAG = enc.encode("perpbft/vote/v1\x00");
export const BLOCK_DOMAIN_TAG = enc.encode("perpbft/block/v1\x00");
export const TX_VERSION = 1;
export const COMMIT_PHASE = 3;

export const ORDER_KINDS = {
  limit: 0, market: 1, stop_market: 2, stop_limit: 3, take_profit_market: 4, take_profit_limit: 5,
};
export const TIFS = { gtc: 0, ioc: 1, fok: 2, post_only: 3 };

// ---- bytes ------------------------------------------------------------------------------

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function unhex(text) {
  const clean = text.startsWith("0x") ? text.slice(2) : text;
  if (clean.length % 2 || /[^0-9a-fA-F]/.test(clean)) throw new Error("not hex: " + text.slice(0, 20));
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

function equal(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// ---- canonical msgpack --------------------------------------------------------------------

// Integers must be JavaScript safe integers (the encoder then writes their smallest form, as
// Python's msgpack does); a bigint is narrowed when it fits, refused otherwise, because the
// library writes every bigint as 8 bytes, which the node refuses as non-canonical.
function narrow(value) {
  if (typeof value === "bigint") {
    if (value < 0n || value > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error("integer out of range");
    return Number(value);
  }
  if (typeof value === "number" && !Number.isSafeInteger(value)) throw new Error("not an integer: " + value);
  if (Array.isArray(value)) return value.map(narrow);
  return value;
}

export function packb(value) {
  return MessagePack.encode(narrow(value));
}

export function unpackb(bytes) {
  return MessagePack.decode(bytes, { useBigInt64: true });
}

// ---- decimals -----------------------------------------------------------------------------

function parseDecimal(text, what) {
  if (typeof text !== "string" || !/^[0-9]{1,30}(\.[0-9]{1,30})?$/.test(text)) {
    throw new Error(`${what}: not a plain decimal`);
  }
  const [whole, frac = ""] = text.split(".");
  return { digits: BigInt(whole + frac), scale: frac.length };
}

// How many `step`s `amount` is, exactly (both decimal strings), or an error naming `what`.
export function toSteps(amount, step, what) {
  const a = parseDecimal(amount, what);
  const s = parseDecimal(step, what + " step");
  const scale = Math.max(a.scale, s.scale);
  const an = a.digits * 10n ** BigInt(scale - a.scale);
  const sn = s.digits * 10n ** BigInt(scale - s.scale);
  if (sn === 0n) throw new Error(`${what}: zero step`);
  if (an % sn !== 0n) throw new Error(`${what} ${amount} is not a multiple of ${step}`);
  return an / sn;
}

// ---- transactions -------------------------------------------------------------------------

// Action arrays as the node's ACTION codec dumps them: [tag, field, ...].
export function placeOrderAction(o) {
  return [1, o.market_id, !!o.is_buy, o.kind, o.tif, o.price_ticks, o.size_lots,
    o.trigger_price_ticks || 0, !!o.reduce_only, o.client_id || 0, o.stp || 0];
}

export function cancelOrderAction(marketId, orderId) {
  return [2, marketId, orderId];
}

export function signingBytes(chainId, signer, nonce, expiresAtMs, actions) {
  const unsigned = [TX_VERSION, chainId, signer, nonce, expiresAtMs, actions];
  return concat(TX_DOMAIN_TAG, enc.encode(chainId), new Uint8Array([0]), packb(unsigned));
}

export function publicKeyOf(seed) {
  return ed.getPublicKey(seed);
}

export function newSeed() {
  return ed.utils.randomSecretKey();
}

// Sign and encode: {tx (canonical msgpack bytes to POST), txId (hex), signing (bytes)}.
export function signTransaction(seed, chainId, nonce, actions, expiresAtMs = 0) {
  const signer = ed.getPublicKey(seed);
  const signing = signingBytes(chainId, signer, nonce, expiresAtMs, actions);
  const signature = ed.sign(signing, seed);
  const tx = packb([TX_VERSION, chainId, signer, nonce, expiresAtMs, actions, signature]);
  return { tx, txId: hex(sha256(signing)), signing, signature };
}

// The signing bytes of raw transaction bytes: the 7-element array's first six elements are
// the unsigned array, and the signature (bin8 of 64 bytes) is the last 66 bytes.
export function txIdOfRaw(raw) {
  const decoded = unpackb(raw);
  if (!Array.isArray(decoded) || decoded.length !== 7 || raw[0] !== 0x97) throw new Error("not a transaction");
  const chainId = decoded[1];
  const unsigned = concat(new Uint8Array([0x96]), raw.subarray(1, raw.length - 66));
  const signing = concat(TX_DOMAIN_TAG, enc.encode(chainId), new Uint8Array([0]), unsigned);
  return hex(sha256(signing));
}

// ---- RFC 6962 inclusion (state_machine/txroot.py verify_inclusion) -------------------------

const leafHash = (data) => sha256(concat(new Uint8Array([0]), data));
const nodeHash = (l, r) => sha256(concat(new Uint8Array([1]), l, r));

export function verifyInclusion(leafData, index, treeSize, path, root) {
  if (index < 0 || index >= treeSize || path.length > 64) return false;
  let fn = index;
  let sn = treeSize - 1;
  let r = leafHash(leafData);
  for (const p of path) {
    if (sn === 0 || p.length !== 32) return false;
    if (fn & 1 || fn === sn) {
      r = nodeHash(p, r);
      while (!(fn & 1) && fn !== 0) { fn >>= 1; sn >>= 1; }
    } else {
      r = nodeHash(r, p);
    }
    fn >>= 1; sn >>= 1;
  }
  return sn === 0 && equal(r, root);
}

// ---- state proofs (state_machine/merkle_state.py verify_proof) -----------------------------

const RECORD = 64;
const MIN_DEPTH = 4;
const BUCKET_BYTES_MAX = 1024 * RECORD;

function nibble(kh, depth) {
  const byte = kh[depth >> 1];
  return depth & 1 ? byte & 0x0f : byte >> 4;
}

function samePath(a, b, depth) {
  for (let d = 0; d < depth; d++) if (nibble(a, d) !== nibble(b, d)) return false;
  return true;
}

function lessThan(a, b) {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] < b[i];
  return false;
}

export function verifyStateProof(root, key, value, proofBytes) {
  let proof;
  try { proof = unpackb(proofBytes); } catch { return false; }
  if (!Array.isArray(proof) || proof.length !== 2) return false;
  const [siblings, bucket] = proof;
  if (!Array.isArray(siblings) || !(bucket instanceof Uint8Array)) return false;
  const depth = siblings.length;
  if (depth < MIN_DEPTH || depth > 64 || bucket.length % RECORD || bucket.length > BUCKET_BYTES_MAX) return false;
  const kh = sha256(key);
  let found = -1;
  let previous = null;
  for (let pos = 0; pos < bucket.length; pos += RECORD) {
    const recordKh = bucket.subarray(pos, pos + 32);
    if ((previous && !lessThan(previous, recordKh)) || !samePath(recordKh, kh, depth)) return false;
    previous = recordKh;
    if (equal(recordKh, kh)) found = pos;
  }
  if (value === null) {
    if (found !== -1) return false;
  } else if (found === -1 || !equal(bucket.subarray(found + 32, found + RECORD), sha256(concat(new Uint8Array([0]), value)))) {
    return false;
  }
  let hash = sha256(concat(new Uint8Array([2]), bucket));
  for (let d = depth - 1; d >= 0; d--) {
    const row = siblings[d];
    if (!(row instanceof Uint8Array) || row.length !== 15 * 32) return false;
    const cut = nibble(kh, d) * 32;
    hash = sha256(concat(new Uint8Array([1]), row.subarray(0, cut), hash, row.subarray(cut)));
  }
  return equal(hash, root);
}

// ---- headers and quorum certificates (consensus/types.py, consensus/quorum.py) -------------

export function decodeHeader(wire) {
  const h = unpackb(wire);
  if (!Array.isArray(h) || h.length !== 7) throw new Error("header wire is not a 7-field array");
  return {
    height: Number(h[0]), view: Number(h[1]), parent_hash: h[2], timestamp_ms: Number(h[3]),
    proposer: h[4], payload_root: h[5], state_root: h[6],
    block_hash: sha256(concat(BLOCK_DOMAIN_TAG, wire)),
  };
}

export function decodeQc(wire) {
  const q = unpackb(wire);
  if (!Array.isArray(q) || q.length !== 5 || !Array.isArray(q[4])) throw new Error("QC wire is not a 5-field array");
  return {
    phase: Number(q[0]), view: Number(q[1]), height: Number(q[2]), block_hash: q[3],
    signatures: q[4].map((s) => ({ signer: s[0], signature: s[1] })),
  };
}

// validators: [{pubkey: hex, power}] from the genesis file.
export function qcValid(qc, chainId, validators) {
  const power = new Map(validators.map((v) => [v.pubkey.toLowerCase(), BigInt(v.power)]));
  const total = [...power.values()].reduce((a, b) => a + b, 0n);
  if (qc.view === 0 || qc.height === 0 || qc.signatures.length > validators.length) return false;
  const message = concat(VOTE_DOMAIN_TAG, enc.encode(chainId), new Uint8Array([0]),
    packb([qc.phase, qc.view, qc.height, qc.block_hash]));
  const seen = new Set();
  let signed = 0n;
  for (const s of qc.signatures) {
    const who = hex(s.signer);
    if (!power.has(who)) return false;
    if (!ed.verify(s.signature, message, s.signer)) return false;
    if (!seen.has(who)) { seen.add(who); signed += power.get(who); }
  }
  return 3n * signed > 2n * total;
}

// A header (wire hex) certified by its commit QC (wire hex) under the genesis.
export function checkCertifiedHeader(headerWireHex, qcWireHex, genesis, failures) {
  let header, qc;
  try {
    header = decodeHeader(unhex(headerWireHex));
    qc = decodeQc(unhex(qcWireHex));
  } catch (err) {
    failures.push("certificate does not decode: " + err.message);
    return null;
  }
  if (qc.phase !== COMMIT_PHASE) failures.push(`QC phase is ${qc.phase}, not COMMIT`);
  if (!equal(qc.block_hash, header.block_hash) || qc.height !== header.height) {
    failures.push("commit QC certifies a different block than the header");
  }
  if (!qcValid(qc, genesis.chain_id, genesis.validators)) {
    failures.push("commit QC is not signed by more than 2/3 of the genesis validators' power");
  }
  return header;
}

// ---- whole checks of API answers ------------------------------------------------------------

// GET /v1/txs/{id} answer + GET /v1/blocks/{height} answer -> {ok, failures}.
export function checkTxInclusion(txId, txAnswer, blockAnswer, genesis) {
  const failures = [];
  const p = txAnswer.inclusion_proof;
  if (!p) return { ok: false, failures: ["the answer has no inclusion proof"] };
  const raw = unhex(p.tx);
  let rawId = null;
  try { rawId = txIdOfRaw(raw); } catch (err) { failures.push("proven bytes: " + err.message); }
  if (rawId !== null && rawId !== txId.toLowerCase()) failures.push(`proven bytes are transaction ${rawId}, not ${txId}`);
  const header = checkCertifiedHeader(blockAnswer.header.wire, blockAnswer.commit_qc.wire, genesis, failures);
  if (header) {
    if (header.height !== txAnswer.height) failures.push(`header is at height ${header.height}, not ${txAnswer.height}`);
    const path = p.path.map(unhex);
    if (!verifyInclusion(raw, p.leaf_index, p.tree_size, path, header.payload_root)) {
      failures.push("the inclusion path does not lead to the certified header's payload root");
    }
  }
  return { ok: failures.length === 0, failures };
}

// The listing records (0x30 market, 0x32 asset) of ids above the genesis ones: listed ids
// are consecutive, so the listed ones and the first free id prove which exist
// (state_machine/proofkeys.py). listings = {markets: [[id, isPerp]...], assets: count}.
const u32 = (n) => new Uint8Array([(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);
const firstListedIds = (genesis) => [
  Math.max(-1, ...genesis.markets.map((m) => m.market_id)) + 1,
  Math.max(-1, ...genesis.assets.map((a) => a.asset_id)) + 1,
];
const marketListingKey = (id) => hex(concat(new Uint8Array([0x30]), u32(id)));
const assetListingKey = (id) => hex(concat(new Uint8Array([0x32]), u32(id)));
const LISTINGS_MAX = 4096;

export function expectedAccountKeys(genesis, addressHex, listings = { markets: [], assets: 0 }) {
  const who = unhex(addressHex);
  const [firstMarket, firstAsset] = firstListedIds(genesis);
  const assetIds = genesis.assets.map((a) => a.asset_id);
  for (let i = 0; i < listings.assets; i++) assetIds.push(firstAsset + i);
  const keys = assetIds.map((id) => hex(concat(new Uint8Array([1]), who, u32(id))));
  const perpIds = genesis.markets.filter((m) => m.kind === "perp").map((m) => m.market_id);
  for (const [id, isPerp] of listings.markets) if (isPerp) perpIds.push(id);
  for (const id of perpIds) keys.push(hex(concat(new Uint8Array([2]), who, u32(id))));
  for (let i = 0; i <= listings.markets.length; i++) keys.push(marketListingKey(firstMarket + i));
  for (let i = 0; i <= listings.assets; i++) keys.push(assetListingKey(firstAsset + i));
  // The sub-account record (0x42: present iff the address is a sub-account, naming its master).
  keys.push(hex(concat(new Uint8Array([0x42]), who)));
  // The account's order-tools record (0x4b: ids of its TWAPs, TP/SL groups, good-til times).
  keys.push(hex(concat(new Uint8Array([0x4b]), who)));
  return keys.sort();
}

// The listings at the answer's height, from its listing records whose proofs verify.
export function provenListings(body, genesis, root, failures) {
  const proven = new Map();
  for (const entry of body.entries || []) {
    const key = String(entry.key || "").toLowerCase();
    if (!key.startsWith("30") && !key.startsWith("32")) continue;
    try {
      const value = entry.value === null ? null : unhex(entry.value);
      if (verifyStateProof(root, unhex(key), value, unhex(entry.proof))) proven.set(key, value);
    } catch { /* a malformed entry is reported by the main check */ }
  }
  const [firstMarket, firstAsset] = firstListedIds(genesis);
  const listings = { markets: [], assets: 0 };
  for (let i = 0; i < LISTINGS_MAX; i++) {
    const key = marketListingKey(firstMarket + i);
    if (!proven.has(key)) { failures.push(`no valid proof for listing key ${key}`); return listings; }
    const value = proven.get(key);
    if (value === null) break;
    let kind = null;
    try { kind = unpackb(value)[2]; } catch { /* reported below */ }
    if (typeof kind !== "number") { failures.push(`market listing record ${key} does not decode`); return listings; }
    listings.markets.push([firstMarket + i, kind === 1]);
  }
  for (let i = 0; i < LISTINGS_MAX; i++) {
    const key = assetListingKey(firstAsset + i);
    if (!proven.has(key)) { failures.push(`no valid proof for listing key ${key}`); return listings; }
    if (proven.get(key) === null) break;
    listings.assets += 1;
  }
  return listings;
}

// GET /v1/proofs/accounts/{address} answer -> {ok, failures, values} (cli/lightclient.py).
export function checkAccountProof(body, genesis, addressHex) {
  const failures = [];
  const values = {};
  const root = unhex(body.state_root || "");
  const listings = provenListings(body, genesis, root, failures);
  const expected = new Set(expectedAccountKeys(genesis, addressHex, listings));
  const seen = new Set();
  for (const [i, entry] of (body.entries || []).entries()) {
    const key = (entry.key || "").toLowerCase();
    if (!expected.has(key)) { failures.push(`entry ${i} key ${key} is not a key of this account`); continue; }
    if (seen.has(key)) { failures.push(`key ${key} appears twice`); continue; }
    seen.add(key);
    const value = entry.value === null ? null : unhex(entry.value);
    if (!verifyStateProof(root, unhex(key), value, unhex(entry.proof))) {
      failures.push(`Merkle proof of key ${key} does not match the root`);
      continue;
    }
    values[key] = value === null ? null : unpackb(value);
  }
  for (const key of expected) if (!seen.has(key)) failures.push(`no proof for key ${key}`);
  const cert = body.certified_by;
  if (!cert) {
    failures.push("no certifying block");
  } else {
    const header = checkCertifiedHeader(cert.header.wire, cert.commit_qc.wire, genesis, failures);
    if (header) {
      if (header.height !== body.height + 1) failures.push(`certifying header is at ${header.height}, not ${body.height + 1}`);
      if (!equal(header.state_root, root)) failures.push("certifying header carries another state root");
    }
  }
  return { ok: failures.length === 0, failures, values };
}
