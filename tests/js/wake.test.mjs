// Waking up: the browser back online, or the page shown again after a sleep
// (timers stop while a laptop sleeps; the wall clock does not). While waiting
// for a retry the client tries within a short jittered window; while
// connected it checks the liveness window by the wall clock. Listeners are on
// the global object and the document, only where they exist.
import assert from "node:assert/strict";
import { test } from "node:test";
import { FakeWebSocket, SocketClient, fakeBrowser, fakeClock, record } from "./fake.mjs";

const URL = "ws://example.test/feed";
const client = (options = {}) => new SocketClient(URL, { WebSocket: FakeWebSocket, ...options });

/** Drop connections (never opened) until the next delay is the 20 s cap: 0.9 * 20000. */
function backedOff(c, clock) {
  const closes = [];
  c.on("close", (detail) => closes.push(detail));
  c.connect();
  while (!closes.length || closes.at(-1).delay < 18000) {
    if (closes.length) clock.tick(closes.at(-1).delay);
    FakeWebSocket.last.drop(1006);
  }
  assert.equal(c.state, "waiting");
  return closes;
}

test("while waiting, `online` tries again within min(max, 4 * min) ms (jittered), not after the backoff", (t) => {
  const clock = fakeClock(t, 0.9);
  const browser = fakeBrowser(t);
  const c = client();
  backedOff(c, clock);
  const sockets = FakeWebSocket.instances.length;
  clock.tick(1000); // 17 s left
  browser.online();
  clock.tick(0.9 * 2000 - 1);
  assert.equal(FakeWebSocket.instances.length, sockets, "before the window's random delay");
  clock.tick(1);
  assert.equal(FakeWebSocket.instances.length, sockets + 1, "no attempt after `online`");
  assert.equal(c.state, "connecting");
  // One attempt: the old timer is gone.
  clock.tick(20000);
  assert.equal(FakeWebSocket.instances.length, sockets + 1);
});

test("the window's delay is a random fraction of it (full jitter), and the backoff goes on growing", (t) => {
  const draws = [0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.25];
  let i = 0;
  const clock = fakeClock(t, () => draws[Math.min(i++, draws.length - 1)]);
  const browser = fakeBrowser(t);
  const c = client({ backoff: { min: 100, max: 20000 } });
  const closes = [];
  c.on("close", (detail) => closes.push(detail));
  c.connect();
  for (let n = 0; n < 8; n++) {
    FakeWebSocket.last.drop();
    clock.tick(closes.at(-1).delay);
  }
  FakeWebSocket.last.drop(); // the 9th delay, and `online`'s: 0.25 of their caps (5 s; 100 ms)
  assert.equal(closes.at(-1).delay, 0.25 * 20000);
  const sockets = FakeWebSocket.instances.length;
  browser.online();
  clock.tick(0.25 * 400);
  assert.equal(FakeWebSocket.instances.length, sockets + 1);
  FakeWebSocket.last.drop();
  assert.equal(c.attempt, 10, "online does not reset the attempt count");
});

test("`online` never makes a second attempt: nothing while connecting or open, nor when the retry is due sooner", (t) => {
  const clock = fakeClock(t, 0.1);
  const browser = fakeBrowser(t);
  const c = client();
  const events = record(c);
  c.connect();
  browser.online();
  assert.equal(FakeWebSocket.instances.length, 1);
  FakeWebSocket.last.open();
  FakeWebSocket.last.receive({ t: "hello", ping: 25 });
  browser.online();
  assert.equal(FakeWebSocket.last.closedWith, null);
  FakeWebSocket.last.drop(1006); // retry in 0.1 * 500 = 50 ms
  browser.online(); // the window's delay would be 0.1 * 2000 = 200 ms: kept at 50
  clock.tick(50);
  assert.equal(FakeWebSocket.instances.length, 2);
  clock.tick(5000);
  assert.equal(FakeWebSocket.instances.length, 2);
  assert.deepEqual(
    events.map(([type]) => type),
    ["open", "close"],
  );
});

test("shown again after a sleep longer than ping + grace: the link is declared dead at once", (t) => {
  const clock = fakeClock(t, 0.5);
  const browser = fakeBrowser(t);
  const c = client();
  const events = record(c);
  c.connect();
  const ws = FakeWebSocket.last;
  ws.open();
  ws.receive({ t: "hello", ping: 25 });
  clock.tick(10000);
  browser.hide();
  clock.sleep(3600000); // the laptop sleeps: the wall clock moves, the liveness timer does not
  assert.equal(ws.closedWith, null);
  browser.show();
  assert.deepEqual(ws.closedWith, { code: 4000, reason: "heartbeat timeout" });
  assert.deepEqual(events.at(-1), ["close", { code: 1006, reason: "heartbeat timeout", willRetry: true, delay: 250 }]);
  clock.tick(250);
  assert.equal(FakeWebSocket.instances.length, 2);
});

test("shown again within the window, or hidden: nothing", (t) => {
  const clock = fakeClock(t, 0.5);
  const browser = fakeBrowser(t);
  const c = client();
  c.connect();
  const ws = FakeWebSocket.last;
  ws.open();
  ws.receive({ t: "hello", ping: 25 });
  browser.hide();
  clock.sleep(29000);
  browser.show();
  browser.hide();
  clock.sleep(3600000);
  browser.hide(); // a visibilitychange to hidden
  assert.equal(ws.closedWith, null);
  assert.equal(c.state, "open");
  // heartbeat: false: never dead.
  const quiet = client({ heartbeat: false }).connect();
  FakeWebSocket.last.open();
  clock.sleep(3600000);
  browser.show();
  assert.equal(FakeWebSocket.last.closedWith, null);
  assert.equal(quiet.state, "open");
});

test("a handshake that hung through a sleep is given up when the page is shown", (t) => {
  const clock = fakeClock(t, 0.5);
  const browser = fakeBrowser(t);
  const c = client();
  c.connect();
  clock.sleep(60000);
  browser.online(); // online counts too
  assert.equal(c.state, "waiting");
  assert.deepEqual(FakeWebSocket.last.closedWith, { code: 4000, reason: "heartbeat timeout" });
  assert.equal(browser.listening(), 2);
});

test("shown again while waiting after a sleep: tries within the window", (t) => {
  const clock = fakeClock(t, 0.9);
  const browser = fakeBrowser(t);
  const c = client();
  backedOff(c, clock);
  const sockets = FakeWebSocket.instances.length;
  browser.hide();
  clock.sleep(3600000);
  browser.show();
  clock.tick(1800);
  assert.equal(FakeWebSocket.instances.length, sockets + 1);
});

test("listeners: added by connect(), removed by close() and by a terminal close; none after", (t) => {
  const clock = fakeClock(t, 0);
  const browser = fakeBrowser(t);
  const c = client();
  const other = client();
  assert.equal(browser.listening(), 0, "the constructor listens to nothing");
  c.connect();
  c.connect();
  assert.equal(browser.listening(), 2, "online on the global object, visibilitychange on the document");
  other.connect();
  assert.equal(browser.listening(), 4);
  other.close();
  assert.equal(browser.listening(), 2);
  FakeWebSocket.instances[0].drop(1006);
  assert.equal(browser.listening(), 2, "kept while waiting");
  c.close();
  assert.equal(browser.listening(), 0);
  browser.online();
  browser.show();
  clock.tick(60000);
  assert.equal(FakeWebSocket.instances.length, 2);
  for (const code of [4403, 4401]) {
    c.connect();
    assert.equal(browser.listening(), 2);
    FakeWebSocket.last.drop(code);
    assert.equal(browser.listening(), 0, `still listening after ${code}`);
  }
});

test("without a browser's globals (node, workers without a document) nothing is listened to", (t) => {
  const clock = fakeClock(t, 0);
  assert.equal(globalThis.addEventListener, undefined);
  assert.equal(globalThis.document, undefined);
  const c = client().connect();
  FakeWebSocket.last.drop(1006);
  clock.tick(0);
  FakeWebSocket.last.open();
  c.close();
  assert.equal(c.state, "closed");
  // A worker: online on the global object, no document.
  const added = [];
  globalThis.addEventListener = (type) => added.push(type);
  globalThis.removeEventListener = (type) => added.splice(added.indexOf(type), 1);
  t.after(() => {
    delete globalThis.addEventListener;
    delete globalThis.removeEventListener;
  });
  c.connect();
  assert.deepEqual(added, ["online"]);
  c.close();
  assert.deepEqual(added, []);
});
