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
    // As a browser: only 1000 and 3000-4999 may be sent.
    if (code !== undefined && code !== 1000 && (code < 3000 || code > 4999)) throw new Error(`InvalidAccessError ${code}`);
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
 * Math.random returning `random` (a number or a function).
 */
export function fakeClock(t, random = 0.5) {
  mock.timers.enable({ apis: ["setTimeout"] });
  const randomMock = mock.method(Math, "random", typeof random == "function" ? random : () => random);
  FakeWebSocket.reset();
  t.after(() => {
    mock.timers.reset();
    randomMock.mock.restore();
  });
  return { tick: (ms) => mock.timers.tick(ms) };
}

/** Every event of the client, in order, as [type, detail]. */
export function record(client) {
  const events = [];
  for (const type of ["open", "close", "message", "roommessage", "subscribed", "recovered", "unrecovered", "unauthorized", "error"]) {
    client.on(type, (detail) => events.push([type, detail]));
  }
  return events;
}
