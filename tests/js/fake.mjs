// Test doubles for the node tests of flask-sockets.js: a WebSocket the test
// drives by hand, and the client with node's mock timers and Math.random.
import assert from "node:assert/strict";
import { mock } from "node:test";

export { SocketClient } from "../../packages/flask-sockets-core/src/flask_sockets/static/flask-sockets.js";

/** A WebSocket whose server side is the test: open(), receive(), drop(). */
export class FakeWebSocket {
  static instances = [];

  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = 0;
    this.sent = [];
    this.closedWith = null;
    FakeWebSocket.instances.push(this);
  }

  static get last() {
    return FakeWebSocket.instances.at(-1);
  }

  static reset() {
    FakeWebSocket.instances = [];
  }

  send(text) {
    assert.equal(this.readyState, 1, "send() on a socket that is not open");
    this.sent.push(JSON.parse(text));
  }

  close(code, reason) {
    // As a browser: only 1000 and 3000-4999 may be sent, with a reason of at most 123 bytes.
    if (code !== undefined && code !== 1000 && (code < 3000 || code > 4999)) throw new Error(`InvalidAccessError ${code}`);
    if (new TextEncoder().encode(reason ?? "").length > 123) throw new Error("SyntaxError: reason too long");
    this.closedWith = { code, reason };
    this.readyState = 2;
  }

  // The server side.
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }

  receive(frame) {
    this.onmessage?.({ data: typeof frame == "string" ? frame : JSON.stringify(frame) });
  }

  /** The server's close frame arrived: CLOSING, the close event comes later (drop()). */
  closing() {
    this.readyState = 2;
  }

  drop(code = 1006, reason = "") {
    this.readyState = 3;
    this.onclose?.({ code, reason, wasClean: code != 1006 });
  }

  /** The frames sent so far, then forgotten. */
  take() {
    const sent = this.sent;
    this.sent = [];
    return sent;
  }
}

/**
 * Fake time and randomness for one test: setTimeout under node's mock timers,
 * Date.now() moving with them (to the end of each tick), Math.random
 * returning `random` (a number or a function). sleep(ms) moves the wall clock
 * alone, as a laptop's sleep does (browsers' timers count time awake).
 */
export function fakeClock(t, random = 0.5) {
  mock.timers.enable({ apis: ["setTimeout"] });
  const randomMock = mock.method(Math, "random", typeof random == "function" ? random : () => random);
  let now = 1_700_000_000_000;
  const dateMock = mock.method(Date, "now", () => now);
  FakeWebSocket.reset();
  t.after(() => {
    mock.timers.reset();
    randomMock.mock.restore();
    dateMock.mock.restore();
  });
  return {
    tick(ms) {
      now += ms;
      mock.timers.tick(ms);
    },
    sleep(ms) {
      now += ms;
    },
  };
}

/**
 * A browser's globals for one test: addEventListener on the global object
 * (for "online") and a document with `hidden` and "visibilitychange":
 * online(), hide(), show(); listening() counts the listeners added and not
 * removed.
 */
export function fakeBrowser(t) {
  const window = new EventTarget();
  const document = new EventTarget();
  const added = new Map(); // "type" -> Set of listeners
  const methods = (target) => ({
    addEventListener(type, fn) {
      if (!added.has(type)) added.set(type, new Set());
      added.get(type).add(fn);
      EventTarget.prototype.addEventListener.call(target, type, fn);
    },
    removeEventListener(type, fn) {
      added.get(type)?.delete(fn);
      EventTarget.prototype.removeEventListener.call(target, type, fn);
    },
  });
  Object.assign(globalThis, methods(window));
  globalThis.document = Object.assign(document, methods(document), { hidden: false });
  t.after(() => {
    delete globalThis.addEventListener;
    delete globalThis.removeEventListener;
    delete globalThis.document;
  });
  const visibility = (hidden) => {
    document.hidden = hidden;
    document.dispatchEvent(new Event("visibilitychange"));
  };
  return {
    online: () => window.dispatchEvent(new Event("online")),
    hide: () => visibility(true),
    show: () => visibility(false),
    listening: () => [...added.values()].reduce((n, set) => n + set.size, 0),
  };
}

/** Every event of the client, in order, as [type, detail]. */
export function record(client) {
  const events = [];
  for (const type of ["open", "close", "message", "roommessage", "subscribed", "recovered", "unrecovered", "unauthorized", "error"]) {
    client.on(type, (detail) => events.push([type, detail]));
  }
  return events;
}
