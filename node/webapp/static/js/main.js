// The trading page and block explorer: one page, views chosen by the URL's hash
// (#/markets, #/market/BTC-PERP, #/account[/ADDR], #/explorer, #/block/H, #/tx/ID,
// #/address/ADDR, #/keys). It talks to one node (this one by default; ?node=URL or the
// header's field picks another, which must allow this origin by CORS). Live data comes over
// the WebSocket (net.js); REST fills in what the stream does not carry.
//
// Trust: market data and account views show what the node says. The explorer's checks (a
// transaction's inclusion, an account's state proof, a block's commit QC) trust only the
// genesis file the user loads. Orders are signed here with the user's key and only the signed
// bytes leave the page.

import * as codec from "./codec.js";
import { Api, ApiError, Stream } from "./net.js";

const KEY_STORAGE = "perpbft.key";
const NONCE_STORAGE = "perpbft.last_nonce";
const GENESIS_STORAGE = "perpbft.genesis";
const NODE_STORAGE = "perpbft.node";
const BLOCK_ROWS = 20;
const TRADE_ROWS = 40;
const BOOK_DEPTH = 15;

const $ = (sel) => document.querySelector(sel);

// Exposed for people debugging in the console and for the browser tests' assertions.
const page = (window.perpbftPage = {
  api: null, stream: null, status: null, markets: [], bySymbol: {}, assetsById: {},
  market: null, interval: "1m", chart: null, candleSeries: null, volumeSeries: null,
  candles: 0, bookUpdates: 0, tradesSeen: 0, accountUpdates: 0, lastOrder: null,
  lastVerdict: null, height: 0,
});

// ---- small DOM helpers ---------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "onclick") node.addEventListener("click", v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}

function rows(tbody, items, render) {
  const body = typeof tbody === "string" ? $(tbody) : tbody;
  body.replaceChildren(...items.map((item) => {
    const cells = render(item);
    return el("tr", {}, ...cells.map((c) => (c instanceof Node && c.tagName === "TD" ? c : el("td", {}, c))));
  }));
}

function link(text, hash) {
  return el("a", { href: hash }, text);
}

function short(hexText, n = 10) {
  return hexText ? hexText.slice(0, n) + "…" : "";
}

function time(ms) {
  return ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) : "";
}

function showResult(target, ok, text) {
  const box = typeof target === "string" ? $(target) : target;
  box.className = "result " + (ok ? "ok" : "error");
  box.textContent = text;
}

function banner(text) {
  const b = $("#banner");
  b.hidden = !text;
  b.textContent = text || "";
}

function errorText(err) {
  return err instanceof ApiError ? `${err.code}: ${err.detail}` : String(err.message || err);
}

// ---- node connection ------------------------------------------------------------------------

function nodeUrl() {
  const fromQuery = new URLSearchParams(location.search).get("node");
  return fromQuery || localStorage.getItem(NODE_STORAGE) || location.origin;
}

async function connect(url) {
  if (page.stream) page.stream.close();
  page.api = new Api(url);
  $("#node-url").value = url;
  page.stream = new Stream(url, (s) => {
    const pill = $("#ws-status");
    pill.textContent = "ws: " + s;
    pill.classList.toggle("open", s === "open");
  });
  try {
    const [status, markets] = await Promise.all([page.api.get("/v1/status"), page.api.get("/v1/markets")]);
    page.status = status;
    page.markets = markets.markets;
    page.bySymbol = Object.fromEntries(markets.markets.map((m) => [m.symbol, m]));
    page.assetsById = Object.fromEntries(markets.assets.map((a) => [a.asset_id, a]));
    banner("");
  } catch (err) {
    banner(`Cannot read ${url}: ${errorText(err)}`);
    return;
  }
  $("#market-select").replaceChildren(...page.markets.map((m) => el("option", { value: m.symbol }, m.symbol)));
  page.stream.add("blocks", { channel: "blocks" }, onBlocks);
  route();
}

function onBlocks(type, message) {
  if (type !== "snapshot" && type !== "update") return;
  const data = message.data;
  if (type === "snapshot") {
    page.status = data;
    renderValidators(data.validators);
  } else {
    prependBlock(data);
    if (!$("#view-markets").hidden) refreshMarketsSoon();
    if (!$("#view-market").hidden) refreshMarketFactsSoon();
  }
  page.height = message.height;
  $("#chain-status").textContent = `${page.status.chain_id} · height ${message.height}`;
}

// ---- markets overview -----------------------------------------------------------------------

let marketsTimer = null;
function refreshMarketsSoon() {
  if (marketsTimer) return;
  marketsTimer = setTimeout(() => { marketsTimer = null; renderMarkets(); }, 2000);
}

// REST paths name a market by its id: a spot symbol ("BTC/USDC") has a slash.
function marketPath(symbol) {
  return `/v1/markets/${page.bySymbol[symbol].market_id}`;
}

function marketHash(symbol) {
  return `#/market/${encodeURIComponent(symbol)}`;
}

async function statsOf(symbol) {
  try { return await page.api.get(`${marketPath(symbol)}/stats`); } catch { return null; }
}

async function renderMarkets() {
  let list;
  try { list = (await page.api.get("/v1/markets")).markets; } catch (err) { banner(errorText(err)); return; }
  for (const m of list) page.bySymbol[m.symbol] = m;
  const stats = await Promise.all(list.map((m) => statsOf(m.symbol)));
  rows("#markets-table tbody", list.map((m, i) => [m, stats[i]]), ([m, s]) => {
    const change = s && s.change_pct !== null ? s.change_pct : null;
    const changeCell = el("td", { class: change === null ? "" : change.startsWith("-") ? "down" : "up" },
      change === null ? "–" : `${change}%`);
    const state = m.best_bid && m.best_ask ? "two-sided book" : m.best_bid || m.best_ask ? "one-sided book" : "empty book";
    return [link(m.symbol, marketHash(m.symbol)), m.kind, m.last_trade_price ?? "–", m.mark_price,
      changeCell, s ? s.volume : "–", m.kind === "perp" ? `${m.funding_rate_8h_ppm} ppm` : "–",
      m.kind === "perp" ? m.open_interest : "–", state];
  });
}

// ---- market page -----------------------------------------------------------------------------

function ensureChart() {
  if (page.chart) return;
  const LW = globalThis.LightweightCharts;
  page.chart = LW.createChart($("#chart"), {
    autoSize: true,
    layout: { background: { color: "#171d24" }, textColor: "#d8dee6" },
    grid: { vertLines: { color: "#222b35" }, horzLines: { color: "#222b35" } },
    timeScale: { timeVisible: true, secondsVisible: false },
  });
  page.candleSeries = page.chart.addSeries(LW.CandlestickSeries, {
    upColor: "#26a69a", downColor: "#ef5350", borderVisible: false,
    wickUpColor: "#26a69a", wickDownColor: "#ef5350",
  });
  page.volumeSeries = page.chart.addSeries(LW.HistogramSeries, {
    priceFormat: { type: "volume" }, priceScaleId: "", color: "#4c8dff88",
  });
  page.volumeSeries.priceScale().applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
}

function candleBar(c) {
  return { time: Math.floor(c.start_ms / 1000), open: +c.open, high: +c.high, low: +c.low, close: +c.close };
}

function volumeBar(c) {
  return { time: Math.floor(c.start_ms / 1000), value: +c.volume, color: +c.close >= +c.open ? "#26a69a66" : "#ef535066" };
}

function onCandles(type, message) {
  if (type === "error") { $("#chart-status").textContent = `candles: ${message.code}`; return; }
  const candles = message.data.candles || [];
  if (type === "snapshot") {
    page.candleSeries.setData(candles.map(candleBar));
    page.volumeSeries.setData(candles.map(volumeBar));
    page.candles = candles.length;
  } else {
    for (const c of candles) {
      page.candleSeries.update(candleBar(c));
      page.volumeSeries.update(volumeBar(c));
    }
    page.candles = page.candleSeries.data().length;
  }
  $("#chart-status").textContent = page.candles ? "" : "no trades in this range yet";
}

async function loadCandles(symbol, interval) {
  try {
    const body = await page.api.get(`${marketPath(symbol)}/candles?interval=${interval}&limit=300`);
    onCandles("snapshot", { data: body });
  } catch (err) {
    $("#chart-status").textContent = `candles unavailable: ${errorText(err)}`;
  }
}

function renderBook(data) {
  const depthOf = (levels) => {
    let total = 0;
    return levels.map(([price, size, count]) => { total += +size; return { price, size, count, total }; });
  };
  const asks = depthOf(data.asks || []);
  const bids = depthOf(data.bids || []);
  const max = Math.max(1e-18, ...asks.map((l) => l.total), ...bids.map((l) => l.total));
  const draw = (tbody, levels) => {
    rows(tbody, levels, (l) => [l.price, l.size, String(l.count)]);
    [...$(tbody).children].forEach((tr, i) => { tr.style.backgroundSize = `${(100 * levels[i].total) / max}% 100%`; });
  };
  draw("#book-asks tbody", asks.slice().reverse());
  draw("#book-bids tbody", bids);
  const bestAsk = asks[0], bestBid = bids[0];
  $("#book-spread").textContent = bestAsk && bestBid ? `spread ${(+bestAsk.price - +bestBid.price).toPrecision(6)}` : "";
}

function onBook(type, message) {
  if (type === "error") return;
  renderBook(message.data);
  page.bookUpdates += 1;
  $("#book-height").textContent = `height ${message.height}`;
}

function onTrades(type, message) {
  if (type === "error") return;
  const body = $("#trades tbody");
  const trades = type === "snapshot" ? message.data.trades.slice().reverse() : message.data.trades;
  if (type === "snapshot") body.replaceChildren();
  for (const t of trades) {
    body.prepend(el("tr", {}, el("td", { class: t.taker_side }, t.price), el("td", {}, t.size), el("td", {}, String(t.height))));
    page.tradesSeen += 1;
  }
  while (body.children.length > TRADE_ROWS) body.lastChild.remove();
}

let factsTimer = null;
function refreshMarketFactsSoon() {
  if (factsTimer) return;
  factsTimer = setTimeout(() => { factsTimer = null; renderMarketFacts(); }, 1500);
}

async function renderMarketFacts() {
  const symbol = page.market;
  try {
    const [m, stats, funding] = await Promise.all([
      page.api.get(marketPath(symbol)), statsOf(symbol),
      page.bySymbol[symbol].kind === "perp" ? page.api.get(`${marketPath(symbol)}/funding?limit=8`) : null,
    ]);
    page.bySymbol[symbol] = m;
    const change = stats && stats.change_pct !== null ? ` · 24h ${stats.change_pct}%` : "";
    const volume = stats ? ` · 24h volume ${stats.volume}` : "";
    $("#market-summary").textContent = `mark ${m.mark_price} · oracle ${m.oracle_price} · last ${m.last_trade_price ?? "–"}${change}${volume}`;
    const facts = m.kind === "perp" ? [
      ["Rate (8h, running)", `${m.funding_rate_8h_ppm} ppm`], ["Last interval", `${m.last_funding_rate_ppb} ppb`],
      ["Premium", `${m.premium_ppb} ppb`], ["Next settlement", time(m.next_funding_ms)],
      ["Open interest", m.open_interest], ["Max leverage", `${m.max_leverage}x`],
    ] : [["Spot market", "no funding"]];
    $("#funding").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
    rows("#funding-history tbody", funding ? funding.funding : [], (f) => [time(f.timestamp_ms), String(f.rate_ppb), String(f.height)]);
  } catch (err) {
    $("#market-summary").textContent = errorText(err);
  }
}

function enterMarket(symbol) {
  if (!page.bySymbol[symbol]) symbol = page.markets.find((m) => m.kind === "perp")?.symbol || page.markets[0]?.symbol;
  if (!symbol) return;
  $("#nav-market").setAttribute("href", marketHash(symbol));
  $("#market-select").value = symbol;
  ensureChart();
  if (page.market !== symbol || !page.stream.subs.has("book")) {
    page.market = symbol;
    page.candleSeries.setData([]);
    page.volumeSeries.setData([]);
    $("#trades tbody").replaceChildren();
    page.stream.add("book", { channel: "book", market: symbol, depth: BOOK_DEPTH }, onBook);
    page.stream.add("trades", { channel: "trades", market: symbol }, onTrades);
    subscribeCandles();
  }
  renderMarketFacts();
}

function subscribeCandles() {
  loadCandles(page.market, page.interval);
  page.stream.add("candles", { channel: "candles", market: page.market, interval: page.interval }, onCandles);
}

// ---- keys and signing -------------------------------------------------------------------------

function loadKey() {
  const text = localStorage.getItem(KEY_STORAGE);
  if (!text) return null;
  try { return codec.unhex(JSON.parse(text).seed); } catch { return null; }
}

function keyAddress() {
  const seed = loadKey();
  return seed ? codec.hex(codec.publicKeyOf(seed)) : null;
}

function saveKey(seed) {
  const body = { kind: "ed25519", seed: codec.hex(seed), public_key: codec.hex(codec.publicKeyOf(seed)) };
  localStorage.setItem(KEY_STORAGE, JSON.stringify(body));
  renderKey();
}

function renderKey() {
  $("#key-address").textContent = keyAddress() || "none";
}

async function importKeyFile(file) {
  try {
    const body = JSON.parse(await file.text());
    if (body.kind !== "ed25519" || typeof body.seed !== "string") throw new Error("not an ed25519 key file");
    const seed = codec.unhex(body.seed);
    if (seed.length !== 32) throw new Error("the seed is not 32 bytes");
    if (body.public_key && body.public_key.toLowerCase() !== codec.hex(codec.publicKeyOf(seed))) {
      throw new Error("public_key does not match the seed");
    }
    saveKey(seed);
    showResult("#key-result", true, `imported key ${keyAddress()}`);
  } catch (err) {
    showResult("#key-result", false, `cannot import: ${err.message}`);
  }
}

function exportKey() {
  const text = localStorage.getItem(KEY_STORAGE);
  if (!text) { showResult("#key-result", false, "no key to download"); return; }
  const a = el("a", { href: URL.createObjectURL(new Blob([text], { type: "application/json" })), download: "perpbft-key.json" });
  a.click();
}

// Nonces: milliseconds by convention, strictly increasing per key in this browser.
function nextNonce() {
  const last = Number(localStorage.getItem(NONCE_STORAGE) || 0);
  const nonce = Math.max(Date.now(), last + 1);
  localStorage.setItem(NONCE_STORAGE, String(nonce));
  return nonce;
}

// Sign `actions`, submit and wait for the commit; returns the committed answer or throws.
async function signAndSend(actions) {
  const seed = loadKey();
  if (!seed) throw new Error("no signing key: import or create one under Key");
  const signed = codec.signTransaction(seed, page.status.chain_id, nextNonce(), actions);
  const answer = await page.api.submit(signed.tx);
  return { txId: signed.txId, answer };
}

// The committed answer's verdict: every action ok, or the node's refusal codes.
function verdictOf(answer) {
  if (answer.status !== "committed") return { ok: false, text: `not committed yet (${answer.status}); follow it in the explorer` };
  const refused = (answer.results || []).filter((r) => r.code !== "ok");
  if (answer.code !== "ok" || refused.length) {
    const what = refused.length ? refused.map((r) => `${r.code}: ${r.message}`).join("; ") : `${answer.code}: ${answer.message}`;
    return { ok: false, text: `refused by the node: ${what}` };
  }
  const r = answer.results[0] || {};
  return { ok: true, text: `committed at height ${answer.height}: ${r.status || r.message || "ok"}${r.order_id ? ` (order ${r.order_id})` : ""}` };
}

// ---- order ticket -----------------------------------------------------------------------------

const LIMIT_KINDS = new Set(["limit", "stop_limit", "take_profit_limit"]);
const TRIGGER_KINDS = new Set(["stop_market", "stop_limit", "take_profit_market", "take_profit_limit"]);

function syncTicket() {
  const kind = $("#order-kind").value;
  $("#row-price").hidden = !LIMIT_KINDS.has(kind) && kind !== "market";
  $("#order-price").placeholder = kind === "market" ? "optional worst price" : "";
  $("#row-trigger").hidden = !TRIGGER_KINDS.has(kind);
  $("#row-tif").hidden = kind !== "limit";
  $("#order-post-only").disabled = !LIMIT_KINDS.has(kind);
}

// The place_order action from the ticket; errors name the field (the user's mistake, before
// anything is signed).
function orderFromTicket() {
  const m = page.bySymbol[page.market];
  const kind = $("#order-kind").value;
  const priceText = $("#order-price").value.trim();
  const triggerText = $("#order-trigger").value.trim();
  const sizeText = $("#order-size").value.trim();
  const size = codec.toSteps(sizeText, m.lot_size, "size");
  let price = 0n;
  if (LIMIT_KINDS.has(kind) || (kind === "market" && priceText)) price = codec.toSteps(priceText, m.tick_size, "price");
  const trigger = TRIGGER_KINDS.has(kind) ? codec.toSteps(triggerText, m.tick_size, "trigger price") : 0n;
  let tif = kind === "limit" ? codec.TIFS[$("#order-tif").value] : LIMIT_KINDS.has(kind) ? codec.TIFS.gtc : codec.TIFS.ioc;
  if ($("#order-post-only").checked && LIMIT_KINDS.has(kind)) tif = codec.TIFS.post_only;
  return codec.placeOrderAction({
    market_id: m.market_id, is_buy: document.querySelector("input[name=side]:checked").value === "buy",
    kind: codec.ORDER_KINDS[kind], tif, price_ticks: price, size_lots: size, trigger_price_ticks: trigger,
    reduce_only: $("#order-reduce-only").checked, client_id: 0, stp: 0,
  });
}

async function submitOrder(event) {
  event.preventDefault();
  let action;
  try { action = orderFromTicket(); } catch (err) { showResult("#order-result", false, err.message); return; }
  $("#order-submit").disabled = true;
  showResult("#order-result", true, "signing and sending…");
  try {
    const { txId, answer } = await signAndSend([action]);
    const verdict = verdictOf(answer);
    page.lastOrder = { txId, verdict, answer };
    showResult("#order-result", verdict.ok, `${verdict.text}\ntx ${txId}`);
    const result = $("#order-result");
    result.append(" ", link("view", `#/tx/${txId}`));
  } catch (err) {
    page.lastOrder = { error: errorText(err) };
    showResult("#order-result", false, `refused by the node: ${errorText(err)}`);
  } finally {
    $("#order-submit").disabled = false;
  }
}

// ---- account -----------------------------------------------------------------------------------

const KIND_NAMES = ["limit", "market", "stop market", "stop limit", "take profit market", "take profit limit"];

function renderAccount(account, orders) {
  rows("#balances tbody", account.balances, (b) => [b.asset, b.available, b.held]);
  const m = account.margin || {};
  $("#margin").replaceChildren(...[["Account value", m.account_value], ["Maintenance margin", m.maintenance_margin],
    ["Free collateral", m.free_collateral], ["Liquidatable", m.liquidatable === undefined ? "" : String(m.liquidatable)]]
    .flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v ?? "–")]));
  rows("#positions tbody", account.positions, (p) => {
    const pnl = el("td", { class: p.unrealized_pnl.startsWith("-") ? "down" : "up" }, p.unrealized_pnl);
    return [p.market, el("td", { class: p.side === "long" ? "buy" : p.side === "short" ? "sell" : "" }, p.side), p.size,
      p.entry_price, p.mark_price, pnl, p.realized_pnl, p.liquidation_price ?? "–", `${p.leverage}x ${p.margin_mode}`];
  });
  rows("#orders tbody", orders, (o) => {
    const cancel = el("button", { type: "button", class: "cancel", onclick: () => cancelOrder(o) }, "Cancel");
    return [String(o.order_id), o.market, el("td", { class: o.side }, o.side), KIND_NAMES[o.kind] + (o.reduce_only ? " (reduce)" : ""),
      o.price ?? "market", o.trigger_price ? `${o.trigger_kind} @ ${o.trigger_price}` : "–", o.size, o.filled, o.status, el("td", {}, cancel)];
  });
}

async function renderFills(address) {
  try {
    const body = await page.api.get(`/v1/accounts/${address}/fills?limit=50`);
    rows("#fills tbody", body.fills, (f) => {
      const taker = f.taker === address;
      const buy = taker ? f.taker_is_buy : !f.taker_is_buy;
      return [String(f.height), f.market, el("td", { class: buy ? "buy" : "sell" }, buy ? "buy" : "sell"), f.price, f.size,
        taker ? f.taker_fee : f.maker_fee, taker ? f.taker_realized_pnl : f.maker_realized_pnl];
    });
  } catch (err) {
    $("#account-note").textContent = errorText(err);
  }
}

async function cancelOrder(order) {
  const m = page.bySymbol[order.market];
  try {
    const { answer } = await signAndSend([codec.cancelOrderAction(m.market_id, order.order_id)]);
    const verdict = verdictOf(answer);
    $("#account-note").textContent = `cancel order ${order.order_id}: ${verdict.text}`;
  } catch (err) {
    $("#account-note").textContent = `cancel refused: ${errorText(err)}`;
  }
}

function enterAccount(address) {
  address = (address || keyAddress() || "").toLowerCase();
  $("#account-address").textContent = address || "";
  if (!address) {
    $("#account-note").textContent = "No key yet: import or create one under Key, or open #/account/ADDRESS.";
    page.stream.remove("account");
    return;
  }
  $("#account-note").textContent = "";
  page.stream.add("account", { channel: "account", address }, (type, message) => {
    if (type === "error") { $("#account-note").textContent = `${message.code}: ${message.message}`; return; }
    renderAccount(message.data.account, message.data.orders);
    page.accountUpdates += 1;
    renderFills(address);
  });
}

// ---- explorer ------------------------------------------------------------------------------------

function loadGenesis() {
  const text = localStorage.getItem(GENESIS_STORAGE);
  return text ? JSON.parse(text) : null;
}

async function importGenesis(file) {
  try {
    const g = JSON.parse(await file.text());
    if (typeof g.chain_id !== "string" || !Array.isArray(g.validators) || !Array.isArray(g.assets) || !Array.isArray(g.markets)) {
      throw new Error("not a genesis file (chain_id, validators, assets, markets)");
    }
    const kept = {
      chain_id: g.chain_id,
      validators: g.validators.map((v) => ({ pubkey: String(v.pubkey).toLowerCase(), power: v.power })),
      assets: g.assets.map((a) => ({ asset_id: a.asset_id, symbol: a.symbol, decimals: a.decimals })),
      markets: g.markets.map((m) => ({ market_id: m.market_id, symbol: m.symbol, kind: m.kind })),
    };
    localStorage.setItem(GENESIS_STORAGE, JSON.stringify(kept));
    renderGenesisStatus();
    route();
  } catch (err) {
    $("#genesis-status").textContent = `cannot use that file: ${err.message}`;
  }
}

function renderGenesisStatus() {
  const g = loadGenesis();
  const mismatch = g && page.status && g.chain_id !== page.status.chain_id ? ` (the node is on ${page.status.chain_id}!)` : "";
  $("#genesis-status").textContent = g ? `loaded: ${g.chain_id}, ${g.validators.length} validators${mismatch}` : "none loaded";
}

function verdict(check, what) {
  page.lastVerdict = { what, ok: check.ok, failures: check.failures };
  const box = el("div", { class: "verdict " + (check.ok ? "ok" : "bad") },
    check.ok ? `✔ ${what}: verified in this page against the genesis validators` : `✘ ${what}: NOT verified`);
  if (!check.ok) box.append(el("ul", {}, ...check.failures.map((f) => el("li", {}, f))));
  return box;
}

function needGenesis(what) {
  page.lastVerdict = { what, ok: false, failures: ["no genesis file loaded"] };
  return el("div", { class: "verdict bad" }, `${what}: load the chain's genesis file above to verify`);
}

function renderValidators(validators) {
  rows("#validators tbody", validators || [], (v) => [el("td", { class: "addr", title: v.pubkey }, short(v.pubkey, 16)), String(v.power), v.connected ? "yes" : "no"]);
}

function blockRow(b) {
  return el("tr", {}, el("td", {}, link(String(b.height), `#/block/${b.height}`)), el("td", {}, time(b.timestamp_ms)),
    el("td", {}, String(b.txs ?? b.tx_ids?.length ?? 0)), el("td", { class: "addr" }, short(b.block_hash, 16)));
}

function prependBlock(b) {
  const body = $("#blocks tbody");
  body.prepend(blockRow(b));
  while (body.children.length > BLOCK_ROWS) body.lastChild.remove();
}

async function fillRecentBlocks() {
  const body = $("#blocks tbody");
  if (body.children.length) return;
  const top = page.height || (page.status && page.status.height) || 0;
  const heights = [];
  for (let h = top; h > 0 && heights.length < 10; h--) heights.push(h);
  const blocks = await Promise.all(heights.map((h) => page.api.get(`/v1/blocks/${h}`).catch(() => null)));
  for (const b of blocks.filter(Boolean).reverse()) {
    prependBlock({ height: b.height, timestamp_ms: b.header.timestamp_ms, tx_ids: b.tx_ids, block_hash: b.block_hash });
  }
}

function facts(pairs) {
  return el("dl", { class: "facts" }, ...pairs.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v instanceof Node ? v : String(v ?? "–"))]));
}

async function showBlock(height) {
  const out = $("#explorer-detail");
  out.replaceChildren(el("p", { class: "muted" }, `loading block ${height}…`));
  try {
    const b = await page.api.get(`/v1/blocks/${height}`);
    const genesis = loadGenesis();
    let check = null;
    if (genesis) {
      const failures = [];
      const header = codec.checkCertifiedHeader(b.header.wire, b.commit_qc.wire, genesis, failures);
      if (header && codec.hex(header.block_hash) !== b.block_hash) failures.push("the header's hash is not the block hash the node gave");
      check = { ok: failures.length === 0, failures };
    }
    const h = b.header;
    out.replaceChildren(el("div", { class: "panel" },
      el("div", { class: "panel-head" }, `Block ${b.height}`),
      check ? verdict(check, `block ${b.height}'s commit QC`) : needGenesis(`block ${b.height}'s commit QC`),
      facts([["Hash", b.block_hash], ["View", h.view], ["Time", time(h.timestamp_ms)], ["Proposer", h.proposer],
        ["Parent", h.parent_hash], ["Payload root", h.payload_root], ["State root (after parent)", h.state_root],
        ["QC signers", b.commit_qc.signatures.map((s) => short(s.signer, 12)).join(", ")]]),
      el("div", { class: "panel-head" }, `Transactions (${b.tx_ids.length})`),
      el("ul", {}, ...b.tx_ids.map((id) => el("li", {}, link(id, `#/tx/${id}`))))));
  } catch (err) {
    out.replaceChildren(el("div", { class: "verdict bad" }, errorText(err)));
  }
}

async function showTx(txId) {
  const out = $("#explorer-detail");
  out.replaceChildren(el("p", { class: "muted" }, `loading transaction ${txId}…`));
  try {
    const tx = await page.api.get(`/v1/txs/${txId}`);
    if (tx.status !== "committed") {
      out.replaceChildren(el("div", { class: "panel" }, `Transaction ${txId}: ${tx.status}`));
      return;
    }
    const genesis = loadGenesis();
    let box;
    if (genesis) {
      const block = await page.api.get(`/v1/blocks/${tx.height}`);
      box = verdict(codec.checkTxInclusion(txId, tx, block, genesis), "inclusion in a certified block");
    } else {
      box = needGenesis("inclusion in a certified block");
    }
    const results = el("table", { class: "grid" }, el("thead", {}, el("tr", {}, ...["#", "Action", "Code", "Message", "Order", "Filled", "Status"].map((t) => el("th", {}, t)))), el("tbody"));
    rows(results.querySelector("tbody"), tx.results.map((r, i) => [i, r]), ([i, r]) => [String(i), r.action,
      el("td", { class: r.code === "ok" ? "up" : "down" }, r.code), r.message, String(r.order_id ?? ""), r.filled ?? "", r.status ?? ""]);
    out.replaceChildren(el("div", { class: "panel" },
      el("div", { class: "panel-head" }, `Transaction ${short(txId, 16)}`), box,
      facts([["Id", txId], ["Block", link(String(tx.height), `#/block/${tx.height}`)], ["Index", tx.index], ["Code", `${tx.code} ${tx.message}`],
        ["Signer", link(tx.signer, `#/address/${tx.signer}`)], ["Nonce", tx.nonce], ["Time", time(tx.timestamp_ms)]]),
      el("div", { class: "panel-head" }, "Results per action"), results,
      el("div", { class: "panel-head" }, `Events (${tx.events.length})`), el("pre", {}, JSON.stringify(tx.events, null, 1))));
  } catch (err) {
    out.replaceChildren(el("div", { class: "verdict bad" }, errorText(err)));
  }
}

function balanceText(genesis, keyHex, value, proven) {
  const assetId = parseInt(keyHex.slice(-8), 16);
  // A listed asset: its proven listing record (0x32 ‖ asset_id) is [asset_id, symbol, decimals].
  const listed = proven[`32${keyHex.slice(-8)}`];
  const asset = genesis.assets.find((a) => a.asset_id === assetId)
    || (listed ? { symbol: listed[1], decimals: Number(listed[2]) } : { symbol: `asset ${assetId}`, decimals: 0 });
  const fmt = (atoms) => {
    const s = BigInt(atoms).toString().padStart(asset.decimals + 1, "0");
    return asset.decimals ? `${s.slice(0, -asset.decimals)}.${s.slice(-asset.decimals)}` : s;
  };
  return [asset.symbol, value ? fmt(value[0]) : "0", value ? fmt(value[1]) : "0"];
}

async function showAddress(address) {
  const out = $("#explorer-detail");
  out.replaceChildren(el("p", { class: "muted" }, `loading the state proof of ${address}…`));
  const genesis = loadGenesis();
  if (!genesis) { out.replaceChildren(needGenesis(`account ${short(address)}'s state proof`)); return; }
  try {
    const body = await page.api.get(`/v1/proofs/accounts/${address}`);
    const check = codec.checkAccountProof(body, genesis, address);
    const balances = el("table", { class: "grid" }, el("thead", {}, el("tr", {}, el("th", {}, "Asset"), el("th", {}, "Available"), el("th", {}, "Held"))), el("tbody"));
    const balanceKeys = Object.keys(check.values).filter((k) => k.startsWith("01"));
    rows(balances.querySelector("tbody"), balanceKeys, (k) => balanceText(genesis, k, check.values[k], check.values));
    const positions = Object.entries(check.values).filter(([k, v]) => k.startsWith("02") && v !== null);
    out.replaceChildren(el("div", { class: "panel" },
      el("div", { class: "panel-head" }, "Account state proof"), verdict(check, `account ${short(address)}'s state at height ${body.height}`),
      facts([["Address", link(address, `#/account/${address}`)], ["Height", body.height], ["State root", body.state_root]]),
      el("div", { class: "panel-head" }, "Proven balances"), balances,
      el("div", { class: "panel-head" }, `Proven positions (${positions.length})`),
      el("pre", {}, positions.map(([k, v]) => `market ${parseInt(k.slice(-8), 16)}: ${JSON.stringify(v, (_, x) => (typeof x === "bigint" ? x.toString() : x))}`).join("\n"))));
  } catch (err) {
    out.replaceChildren(el("div", { class: "verdict bad" }, errorText(err)));
  }
}

function search(event) {
  event.preventDefault();
  const q = $("#search-input").value.trim().toLowerCase().replace(/^0x/, "");
  if (/^[0-9]+$/.test(q)) location.hash = `#/block/${q}`;
  else if (/^[0-9a-f]{64}$/.test(q)) {
    // A transaction id or an address: both are 64 hex characters; try the transaction first.
    page.api.get(`/v1/txs/${q}`).then(() => { location.hash = `#/tx/${q}`; }, () => { location.hash = `#/address/${q}`; });
  } else $("#explorer-detail").replaceChildren(el("div", { class: "verdict bad" }, "enter a height, a transaction id or an address (64 hex)"));
}

// ---- routing ---------------------------------------------------------------------------------------

const VIEWS = ["markets", "market", "account", "explorer", "keys"];

function show(view) {
  for (const v of VIEWS) $(`#view-${v}`).hidden = v !== view;
  for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("active", a.getAttribute("href").startsWith(`#/${view}`));
}

function route() {
  if (!page.api || !page.markets.length) return;
  const [name, arg] = location.hash.replace(/^#\/?/, "").split("/");
  if (name === "market") { show("market"); enterMarket(arg ? decodeURIComponent(arg) : page.market); return; }
  if (name === "account") { show("account"); enterAccount(arg); return; }
  if (name === "keys") { show("keys"); renderKey(); return; }
  if (["explorer", "block", "tx", "address"].includes(name)) {
    show("explorer");
    renderGenesisStatus();
    fillRecentBlocks();
    if (name === "block") showBlock(arg);
    else if (name === "tx") showTx(arg);
    else if (name === "address") showAddress(arg);
    else $("#explorer-detail").replaceChildren();
    return;
  }
  show("markets");
  renderMarkets();
}

// ---- start ---------------------------------------------------------------------------------------

function start() {
  $("#node-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const url = $("#node-url").value.trim();
    localStorage.setItem(NODE_STORAGE, url);
    connect(url);
  });
  $("#market-select").addEventListener("change", (e) => { location.hash = marketHash(e.target.value); });
  $("#interval-select").addEventListener("change", (e) => { page.interval = e.target.value; page.candleSeries.setData([]); page.volumeSeries.setData([]); subscribeCandles(); });
  $("#order-kind").addEventListener("change", syncTicket);
  $("#order-form").addEventListener("submit", submitOrder);
  $("#key-file").addEventListener("change", (e) => e.target.files[0] && importKeyFile(e.target.files[0]));
  $("#key-create").addEventListener("click", () => { saveKey(codec.newSeed()); showResult("#key-result", true, `created key ${keyAddress()}; download the key file to keep it`); });
  $("#key-export").addEventListener("click", exportKey);
  $("#key-forget").addEventListener("click", () => { localStorage.removeItem(KEY_STORAGE); renderKey(); showResult("#key-result", true, "key forgotten"); });
  $("#genesis-file").addEventListener("change", (e) => e.target.files[0] && importGenesis(e.target.files[0]));
  $("#search-form").addEventListener("submit", search);
  window.addEventListener("hashchange", route);
  syncTicket();
  renderKey();
  connect(nodeUrl());
}

start();
