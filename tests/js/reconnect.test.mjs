// Reconnecting: exponential backoff with full jitter, its reset, the close
// codes that stop it, 4401, and close() by the app.
import assert from "node:assert/strict";
import { test } from "node:test";
import { FakeWebSocket, SocketClient, fakeClock, record } from "./fake.mjs";

const URL = "ws://example.test/feed";

function client(options = {}) {
  return new SocketClient(URL, { WebSocket: FakeWebSocket, ...options });
}

test("connect() opens one socket at the URL with the protocols; a second connect() does nothing", (t) => {
  fakeClock(t);
  const c = client({ protocols: ["v1.envelope"] });
  const events = record(c);
  assert.equal(c.state, "closed");
  assert.equal(FakeWebSocket.instances.length, 0, "the constructor does not connect");
  c.connect();
  c.connect();
  assert.equal(FakeWebSocket.instances.length, 1);
  assert.equal(FakeWebSocket.last.url, URL);
  assert.deepEqual(FakeWebSocket.last.protocols, ["v1.envelope"]);
  assert.equal(c.state, "connecting");
  FakeWebSocket.last.open();
  assert.equal(c.state, "open");
  assert.deepEqual(events, [["open", {}]]);
});

test("the delay grows as min * 2^attempt up to max, times Math.random() (full jitter)", (t) => {
  const clock = fakeClock(t, 0.999);
  const c = client({ backoff: { min: 500, max: 20000 } });
  const closes = [];
  c.on("close", (detail) => closes.push(detail));
  c.connect();
  const expected = [500, 1000, 2000, 4000, 8000, 16000, 20000, 20000, 20000];
  for (const [attempt, cap] of expected.entries()) {
    const ws = FakeWebSocket.last;
    ws.drop(1006);
    const { delay, willRetry, code } = closes.at(-1);
    assert.equal(code, 1006);
    assert.equal(willRetry, true);
    assert.equal(delay, 0.999 * cap, `attempt ${attempt}`);
    assert.equal(c.state, "waiting");
    clock.tick(delay - 1);
    assert.equal(FakeWebSocket.last, ws, `reconnected before the delay of attempt ${attempt}`);
    clock.tick(1);
    assert.notEqual(FakeWebSocket.last, ws, `no reconnect after the delay of attempt ${attempt}`);
    assert.equal(c.state, "connecting");
  }
});

test("full jitter: every delay is in [0, cap), spread over it", (t) => {
  const draws = [0, 0.25, 0.5, 0.75, 0.9999];
  let i = 0;
  const clock = fakeClock(t, () => draws[i++ % draws.length]);
  const c = client({ backoff: { min: 1000, max: 4000 } });
  const delays = [];
  c.on("close", ({ delay }) => delays.push(delay));
  c.connect();
  for (let n = 0; n < 10; n++) {
    FakeWebSocket.last.drop();
    clock.tick(delays.at(-1));
  }
  const caps = [1000, 2000, 4000, 4000, 4000, 4000, 4000, 4000, 4000, 4000];
  delays.forEach((delay, n) => {
    assert.ok(delay >= 0 && delay < caps[n], `delay ${delay} of attempt ${n} not in [0, ${caps[n]})`);
    assert.equal(delay, draws[n % draws.length] * caps[n]);
  });
  assert.equal(delays[0], 0, "random() = 0 reconnects at once");
  assert.equal(FakeWebSocket.instances.length, 11);
});

test("the attempt count resets once a connection stayed open `stable` ms, not before", (t) => {
  const clock = fakeClock(t, 0.5);
  const c = client({ backoff: { min: 100, max: 100000 }, stable: 10000 });
  const delays = [];
  c.on("close", ({ delay }) => delays.push(delay));
  c.connect();
  for (let n = 0; n < 4; n++) {
    FakeWebSocket.last.drop();
    clock.tick(delays.at(-1));
  }
  assert.deepEqual(delays, [50, 100, 200, 400]);
  // Open for just under 10 s: still growing.
  FakeWebSocket.last.open();
  clock.tick(9999);
  FakeWebSocket.last.drop();
  assert.equal(delays.at(-1), 800);
  clock.tick(800);
  // Open for 10 s: back to the first delay.
  FakeWebSocket.last.open();
  clock.tick(10000);
  assert.equal(c.attempt, 0);
  FakeWebSocket.last.drop(1001);
  assert.equal(delays.at(-1), 50);
});

for (const code of [1003, 1007, 1010, 4400, 4403, 4499]) {
  test(`close code ${code} is terminal: no retry until connect()`, (t) => {
    const clock = fakeClock(t);
    const c = client();
    const events = record(c);
    c.connect();
    FakeWebSocket.last.open();
    FakeWebSocket.last.drop(code, "refused");
    assert.deepEqual(events.at(-1), ["close", { code, reason: "refused", willRetry: false, delay: undefined }]);
    assert.equal(c.state, "closed");
    clock.tick(600000);
    assert.equal(FakeWebSocket.instances.length, 1);
    assert.ok(!events.some(([type]) => type == "unauthorized"));
    c.connect();
    assert.equal(FakeWebSocket.instances.length, 2);
  });
}

for (const code of [1000, 1001, 1006, 1008, 1011, 1012, 1013, 4000, 4399, 4500, 4999]) {
  test(`close code ${code} is retried`, (t) => {
    const clock = fakeClock(t, 0.5);
    const c = client();
    const events = record(c);
    c.connect();
    FakeWebSocket.last.open();
    FakeWebSocket.last.drop(code);
    assert.deepEqual(events.at(-1), ["close", { code, reason: "", willRetry: true, delay: 250 }]);
    clock.tick(250);
    assert.equal(FakeWebSocket.instances.length, 2);
  });
}

test("4401: an unauthorized event, no retry until the app calls connect() (with a fresh URL)", (t) => {
  const clock = fakeClock(t);
  let token = "old";
  const c = new SocketClient(() => `${URL}?token=${token}`, { WebSocket: FakeWebSocket });
  const events = record(c);
  c.connect();
  assert.equal(FakeWebSocket.last.url, `${URL}?token=old`);
  FakeWebSocket.last.open();
  FakeWebSocket.last.drop(4401, "token expired");
  assert.deepEqual(events.slice(-2), [
    ["close", { code: 4401, reason: "token expired", willRetry: false, delay: undefined }],
    ["unauthorized", { reason: "token expired" }],
  ]);
  clock.tick(600000);
  assert.equal(FakeWebSocket.instances.length, 1);
  token = "new";
  c.connect();
  assert.equal(FakeWebSocket.instances.length, 2);
  assert.equal(FakeWebSocket.last.url, `${URL}?token=new`);
});

test("close() by the app: the socket is closed with its code, no retry, one close event", (t) => {
  const clock = fakeClock(t);
  const c = client();
  const events = record(c);
  c.connect();
  const ws = FakeWebSocket.last;
  ws.open();
  c.close(4000, "bye");
  assert.deepEqual(ws.closedWith, { code: 4000, reason: "bye" });
  assert.deepEqual(events.at(-1), ["close", { code: 4000, reason: "bye", willRetry: false, delay: undefined }]);
  assert.equal(c.state, "closed");
  ws.drop(4000, "bye"); // the browser's own close event, later: ignored
  clock.tick(600000);
  assert.equal(FakeWebSocket.instances.length, 1);
  assert.equal(events.filter(([type]) => type == "close").length, 1);
  c.close(); // again: nothing
  assert.equal(events.filter(([type]) => type == "close").length, 1);
});

test("close() while waiting to reconnect cancels the reconnect", (t) => {
  const clock = fakeClock(t);
  const c = client();
  c.connect();
  FakeWebSocket.last.drop(1006);
  assert.equal(c.state, "waiting");
  c.close();
  assert.equal(c.state, "closed");
  clock.tick(600000);
  assert.equal(FakeWebSocket.instances.length, 1);
});

test("a relative or http(s) URL is resolved against the page's location, as ws(s)", (t) => {
  fakeClock(t);
  globalThis.location = { href: "https://example.test/app/page" };
  t.after(() => delete globalThis.location);
  new SocketClient("/feed?room=1", { WebSocket: FakeWebSocket }).connect();
  assert.equal(FakeWebSocket.last.url, "wss://example.test/feed?room=1");
  new SocketClient("feed", { WebSocket: FakeWebSocket }).connect();
  assert.equal(FakeWebSocket.last.url, "wss://example.test/app/feed");
  new SocketClient("ws://other.test:8000/x", { WebSocket: FakeWebSocket }).connect();
  assert.equal(FakeWebSocket.last.url, "ws://other.test:8000/x");
});

test("WebSocket errors are error events", (t) => {
  fakeClock(t);
  const c = client();
  const events = record(c);
  c.connect();
  const event = { type: "error" };
  FakeWebSocket.last.onerror(event);
  assert.deepEqual(events, [["error", { event }]]);
});

test("a URL function that throws during a retry is a failed attempt: error, close, backoff, the next attempt", (t) => {
  const clock = fakeClock(t, 0.5);
  let failure = null;
  const c = new SocketClient(
    () => {
      if (failure) throw failure;
      return URL;
    },
    { WebSocket: FakeWebSocket },
  );
  const events = record(c);
  c.connect();
  FakeWebSocket.last.open();
  failure = new Error("no token");
  FakeWebSocket.last.drop(1006);
  clock.tick(250);
  assert.equal(FakeWebSocket.instances.length, 1);
  assert.deepEqual(events.slice(-2), [
    ["error", { error: failure }],
    ["close", { code: 1006, reason: "Error: no token", willRetry: true, delay: 500 }],
  ]);
  assert.equal(c.state, "waiting");
  clock.tick(500); // throws again: backs off further
  assert.deepEqual(events.at(-1), ["close", { code: 1006, reason: "Error: no token", willRetry: true, delay: 1000 }]);
  failure = null;
  clock.tick(1000);
  assert.equal(FakeWebSocket.instances.length, 2);
  assert.equal(c.state, "connecting");
  FakeWebSocket.last.open();
  assert.equal(c.state, "open");
});

test("connect() with a URL function that throws does not throw: the same failed attempt", (t) => {
  const clock = fakeClock(t, 0);
  let calls = 0;
  const c = new SocketClient(
    () => {
      if (calls++ == 0) throw new TypeError("not yet");
      return URL;
    },
    { WebSocket: FakeWebSocket },
  );
  const events = record(c);
  assert.equal(c.connect(), c);
  assert.equal(c.state, "waiting");
  assert.deepEqual(events.map(([type]) => type), ["error", "close"]);
  assert.ok(events[0][1].error instanceof TypeError);
  clock.tick(0);
  assert.equal(FakeWebSocket.last.url, URL);
  // close() in the error listener: no retry.
  const d = new SocketClient(() => {
    throw new Error("never");
  }, { WebSocket: FakeWebSocket });
  const closes = [];
  d.on("error", () => d.close());
  d.on("close", (detail) => closes.push(detail));
  d.connect();
  assert.equal(d.state, "closed");
  assert.deepEqual(closes, [{ code: 1006, reason: "Error: never", willRetry: false, delay: undefined }]);
  clock.tick(60000);
});

test("a WebSocket constructor that throws (a bad URL) is a failed attempt too", (t) => {
  const clock = fakeClock(t, 0);
  class Refusing extends FakeWebSocket {
    constructor(url) {
      super(url);
      if (url.startsWith("ftp:")) throw new SyntaxError("bad scheme");
    }
  }
  let url = "ftp://example.test/";
  const c = new SocketClient(() => url, { WebSocket: Refusing });
  const events = record(c);
  c.connect();
  assert.equal(events[0][0], "error");
  assert.ok(events[0][1].error instanceof SyntaxError);
  assert.equal(c.state, "waiting");
  url = URL;
  clock.tick(0);
  assert.equal(c.state, "connecting");
  assert.equal(FakeWebSocket.last.url, URL);
});

test("close() with a code or reason the browser refuses still closes the socket", (t) => {
  fakeClock(t);
  const reason = "é".repeat(62); // 124 bytes: over the 123 a close frame may carry
  for (const [code, sent] of [
    [1000, 1000],
    [5000, 4000],
    [1001, 4000],
  ]) {
    const c = client();
    const events = record(c);
    c.connect();
    const ws = FakeWebSocket.last;
    ws.open();
    c.close(code, reason);
    assert.equal(ws.closedWith?.code, sent, `close(${code}) left the socket open`);
    assert.deepEqual(events.at(-1), ["close", { code, reason, willRetry: false, delay: undefined }]);
  }
});
