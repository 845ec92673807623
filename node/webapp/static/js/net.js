// The node's REST API and WebSocket stream, as the page uses them.
//
// Stream: one WebSocket to /v1/ws carrying every subscription of the page. Each subscription
// keeps the seq of its last message; a jump (lost messages) re-subscribes it, which makes the
// node send a fresh snapshot. A closed socket reconnects with backoff (0.5 s doubling to
// 10 s) and re-subscribes everything; a subscription refused with `starting` (the node is
// still opening its store) is asked again a second later. The page pings every 20 s so idle proxies keep it open.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(`${code}: ${message}`);
    this.status = status;
    this.code = code;
    this.detail = message;
  }
}

export class Api {
  constructor(base) {
    this.base = base.replace(/\/+$/, "");
  }

  async request(path, init = {}) {
    let answer;
    try {
      answer = await fetch(this.base + path, init);
    } catch (err) {
      throw new ApiError(0, "unreachable", `cannot reach ${this.base} (${err.message})`);
    }
    let body = null;
    const text = await answer.text();
    try { body = text ? JSON.parse(text) : null; } catch { body = null; }
    if (!answer.ok) {
      const code = body && body.code ? body.code : `http_${answer.status}`;
      const message = body && body.message ? body.message : text.slice(0, 200);
      throw new ApiError(answer.status, code, message);
    }
    return body;
  }

  get(path) {
    return this.request(path);
  }

  // Submit canonical msgpack bytes; waits for the commit (the answer is GET /v1/txs/{id}).
  submit(txBytes) {
    return this.request("/v1/txs?wait=commit&timeout_s=20", {
      method: "POST",
      headers: { "content-type": "application/msgpack" },
      body: txBytes,
    });
  }
}

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10_000;
const PING_MS = 20_000;
const STARTING_RETRY_MS = 1_000;

export class Stream {
  constructor(base, onState) {
    this.url = base.replace(/^http/, "ws").replace(/\/+$/, "") + "/v1/ws";
    this.onState = onState;
    this.subs = new Map(); // name -> {request, handler, seq, id}
    this.nextId = 1;
    this.backoff = BACKOFF_MIN_MS;
    this.closed = false;
    this.ws = null;
    this.gaps = 0;
    this.open();
    this.pinger = setInterval(() => this.send({ op: "ping" }), PING_MS);
  }

  open() {
    if (this.closed) return;
    this.onState("connecting");
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => {
      this.backoff = BACKOFF_MIN_MS;
      this.onState("open");
      for (const name of this.subs.keys()) this.subscribe(name);
    };
    ws.onmessage = (event) => this.receive(event.data);
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.onState("closed");
      if (this.closed) return;
      setTimeout(() => this.open(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
    };
  }

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  // Subscribe under a name the page chooses; the handler gets (type, message).
  add(name, request, handler) {
    this.remove(name);
    this.subs.set(name, { request, handler, seq: -1, id: null });
    this.subscribe(name);
  }

  remove(name) {
    const sub = this.subs.get(name);
    if (!sub) return;
    this.subs.delete(name);
    if (sub.id !== null) this.send({ op: "unsubscribe", id: sub.id });
  }

  subscribe(name) {
    const sub = this.subs.get(name);
    if (!sub || !this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    if (sub.id !== null) this.send({ op: "unsubscribe", id: sub.id });
    sub.id = this.nextId++;
    sub.seq = -1;
    this.send({ op: "subscribe", id: sub.id, ...sub.request });
  }

  receive(text) {
    let message;
    try { message = JSON.parse(text); } catch { return; }
    if (message.type === "error") {
      for (const [name, sub] of this.subs) {
        if (sub.id !== message.id) continue;
        // A node still opening its store refuses subscriptions for a moment: ask again.
        if (message.code === "starting") setTimeout(() => this.subscribe(name), STARTING_RETRY_MS);
        else sub.handler("error", message);
      }
      return;
    }
    if (message.type !== "snapshot" && message.type !== "update") return;
    for (const [name, sub] of this.subs) {
      if (sub.id !== message.id) continue;
      if (message.type === "update" && message.seq !== sub.seq + 1) {
        this.gaps += 1; // lost messages: a fresh snapshot replaces what we have
        this.subscribe(name);
        return;
      }
      sub.seq = message.seq;
      sub.handler(message.type, message);
    }
  }

  close() {
    this.closed = true;
    clearInterval(this.pinger);
    if (this.ws) this.ws.close();
  }
}
