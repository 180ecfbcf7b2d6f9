// flask-sockets.js: the browser client of Flask-Sockets' JSON envelope (see
// docs/client.rst). One dependency-free ES module, no globals: it reconnects
// with exponential backoff and full jitter, resubscribes every room from its
// last position, drops duplicates, declares a silent link dead, and tries
// again soon when the browser is back online or the page is shown again.

// Close codes after which the client does not reconnect on its own.
const terminal = (code) =>
  code == 1003 || code == 1007 || code == 1010 || (code >= 4400 && code < 4500);
const g = globalThis;

export class SocketClient extends EventTarget {
  /**
   * @param url a ws:, wss:, http(s): or relative URL, or a function returning one
   *   (called at each connect: a place for a fresh token)
   * @param options see flask-sockets.d.ts
   */
  constructor(url, options = {}) {
    super();
    this.url = url;
    this.options = {
      heartbeat: true,
      grace: 5000,
      stable: 10000,
      queue: 100,
      WebSocket: g.WebSocket,
      ...options,
      backoff: { min: 500, max: 20000, ...options.backoff },
    };
    // closed | connecting | open | waiting (for the next attempt)
    this.state = "closed";
    this.attempt = 0;
    this.rooms = new Map(); // room -> {offset, epoch, subs: Set, seen, ask}
    this.queue = []; // data sent while not open
    this._ws = null;
    this._timers = {};
    // Back online, or the page shown again (perhaps after a sleep: timers
    // stop then, the wall clock does not). Waiting: try within a short
    // jittered window, unless the retry is due within it anyway. Connected:
    // check the liveness window by the wall clock.
    this._wake = (event) => {
      if (event.type != "online" && g.document?.hidden) return;
      const now = Date.now();
      const ms = this._window();
      if (this.state == "waiting") {
        const b = this.options.backoff;
        const delay = Math.random() * Math.min(b.max, 4 * b.min);
        const left = this._due - now;
        if (left > delay || left <= 0) this._retry(delay);
      } else if (this._ws && ms && now - this._heard > ms) this._dead();
    };
  }

  /** Connect now (also after "unauthorized", a terminal close or close()). */
  connect() {
    if (!this._ws) {
      this.attempt = 0;
      this._listen("addEventListener");
      this._connect();
    }
    return this;
  }

  /** Close for good: no reconnect until connect(); the send queue is emptied. */
  close(code = 1000, reason = "") {
    this.state = "closed";
    this.queue = [];
    this._timer("retry");
    this._listen("removeEventListener");
    this._end(code, reason, true);
  }

  /**
   * Send an application message ({"t":"msg","data":data}). While not open it
   * is queued (at most options.queue messages, sent in order after the next
   * open); returns false when the queue is full and data is dropped.
   */
  send(data) {
    // Not after the server's close frame (CLOSING): a browser would drop it.
    if (this.state == "open" && this._ws.readyState == 1) this._send({ t: "msg", data });
    else if (this.queue.length < this.options.queue) this.queue.push(data);
    else return false;
    return true;
  }

  /**
   * Receive the messages of `room`: handler(data, {room, data, offset, epoch}).
   * position ({offset, epoch}, e.g. stored by the app) resumes from there.
   */
  subscribe(room, handler, position) {
    let r = this.rooms.get(room);
    if (!r) {
      r = { offset: null, epoch: null, ...position, subs: new Set() };
      this.rooms.set(room, r);
      if (this.state == "open") this._sub(room, r);
    }
    const sub = {
      room,
      handler,
      get position() {
        return { offset: r.offset, epoch: r.epoch };
      },
      unsubscribe: () => {
        if (r.subs.delete(sub) && !r.subs.size && this.rooms.get(room) == r) {
          this.rooms.delete(room);
          if (this.state == "open") this._send({ t: "unsub", room });
        }
      },
    };
    r.subs.add(sub);
    return sub;
  }

  /** Listen to an event with fn(detail); returns the function that stops it. */
  on(type, fn) {
    const listener = (event) => fn(event.detail);
    this.addEventListener(type, listener);
    return () => this.removeEventListener(type, listener);
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _timer(name, ms, fn) {
    clearTimeout(this._timers[name]);
    // Longer than setTimeout's 32 bits (24.8 days) would fire at once.
    if (ms != null) this._timers[name] = setTimeout(fn, Math.min(ms, 2 ** 31 - 1));
  }

  // The browser's "online" (also in workers) and the page's "visibilitychange"; none in node.
  _listen(method) {
    g[method]?.("online", this._wake);
    g.document?.[method]("visibilitychange", this._wake);
  }

  _retry(delay) {
    this._due = Date.now() + delay;
    this._timer("retry", delay, () => this._connect());
  }

  _connect() {
    const o = this.options;
    this._timer("retry");
    this.state = "connecting";
    this.ping = 25; // seconds, until the server's hello says
    let ws;
    try {
      let url = typeof this.url == "function" ? this.url() : this.url;
      if (typeof location != "undefined") {
        url = new URL(url, location.href);
        url.protocol = url.protocol.replace("http", "ws");
      }
      ws = new o.WebSocket(String(url), o.protocols);
    } catch (error) {
      // The URL function or the WebSocket constructor threw: a failed attempt.
      this._emit("error", { error });
      if (!this._ws) this._closed(1006, String(error));
      return;
    }
    this._ws = ws;
    ws.onopen = () => this._open();
    ws.onmessage = (event) => this._frame(event.data);
    ws.onerror = (event) => this._emit("error", { event });
    ws.onclose = (event) => this._end(event.code, event.reason);
    this._alive();
  }

  // Ms of silence after which the link is dead (0: never).
  _window() {
    const o = this.options;
    return o.heartbeat && this.ping ? this.ping * 1000 + o.grace : 0;
  }

  // Nothing received for the window: the link is dead (also a hung handshake).
  _alive() {
    this._heard = Date.now();
    this._timer("alive", this._window() || null, () => this._dead());
  }

  _dead() {
    this._end(1006, "heartbeat timeout", true);
  }

  _open() {
    this.state = "open";
    this._timer("stable", this.options.stable, () => (this.attempt = 0));
    for (const [room, r] of this.rooms) this._sub(room, r);
    const queue = this.queue;
    this.queue = [];
    for (const data of queue) this._send({ t: "msg", data });
    this._emit("open", {});
  }

  _send(frame) {
    this._ws.send(JSON.stringify(frame));
  }

  _sub(room, r) {
    const frame = { t: "sub", room };
    if (r.offset != null && r.epoch != null) {
      frame.offset = r.offset;
      frame.epoch = r.epoch;
    }
    // Not recovered is news when a position was sent or messages may have been missed.
    r.ask = r.seen || "offset" in frame;
    this._send(frame);
  }

  _frame(text) {
    this._alive();
    let f;
    try {
      f = JSON.parse(text);
    } catch {}
    if (!f || typeof f.t != "string") return this._emit("message", { data: text });
    const room = f.room;
    const r = this.rooms.get(room);
    if (f.t == "hello") {
      this.ping = f.ping;
      this._alive();
    } else if (f.t == "ping") this._send({ t: "pong" });
    else if (f.t == "error") {
      if (r) this.rooms.delete(room);
      this._emit("error", { room, reason: f.reason });
    } else if (f.t == "msg" && room == null) this._emit("message", { data: f.data });
    else if (!r) return;
    else if (f.t == "sub") {
      const p = { room, recovered: !!f.recovered, offset: f.offset, epoch: f.epoch };
      // Recovered: the replay follows and moves the position; else start from the room's.
      if (!f.recovered) Object.assign(r, { offset: f.offset, epoch: f.epoch });
      this._emit("subscribed", p);
      if (f.recovered) this._emit("recovered", p);
      else if (r.ask) this._emit("unrecovered", p);
      r.seen = true;
    } else if (f.t == "msg") {
      const { offset, epoch } = f;
      if (offset != null) {
        if (epoch === r.epoch && r.offset != null && offset <= r.offset) return; // duplicate
        Object.assign(r, { offset, epoch });
      }
      const m = { room, data: f.data, offset, epoch };
      for (const sub of [...r.subs]) {
        try {
          sub.handler?.(f.data, m);
        } catch (error) {
          setTimeout(() => {
            throw error;
          }, 0);
        }
      }
      this._emit("roommessage", m);
    }
  }

  // The socket is gone (or given up: close it): reconnect unless told not to.
  _end(code, reason, close) {
    const ws = this._ws;
    if (!ws) return;
    this._ws = null;
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    if (close) {
      // Browsers send 1000 and 3000-4999 only, and reasons of 123 bytes at most.
      const c = code == 1000 || (code >= 3000 && code < 5000) ? code : 4000;
      try {
        ws.close(c, reason);
      } catch {
        ws.close(c);
      }
    }
    this._closed(code, reason);
  }

  // A connection (or an attempt) ended: retry after the backoff delay, or stay closed.
  _closed(code, reason) {
    this._timer("alive");
    this._timer("stable");
    const asked = this.state == "closed";
    const willRetry = !asked && !terminal(code);
    let delay;
    if (willRetry) {
      const b = this.options.backoff;
      delay = Math.random() * Math.min(b.max, b.min * 2 ** this.attempt++);
      this.state = "waiting";
      this._retry(delay);
    } else {
      this.state = "closed";
      this._listen("removeEventListener");
    }
    this._emit("close", { code, reason, willRetry, delay });
    if (code == 4401 && !asked) this._emit("unauthorized", { reason });
  }
}
