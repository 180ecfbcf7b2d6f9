// Liveness: a link that brings nothing for ping + grace is dead: closed, and
// reconnected. The server's hello sets ping; any frame counts as life.
import assert from "node:assert/strict";
import { test } from "node:test";
import { FakeWebSocket, SocketClient, fakeClock, record } from "./fake.mjs";

function open(t, options = {}) {
  const clock = fakeClock(t, 0.5);
  const c = new SocketClient("ws://example.test/feed", { WebSocket: FakeWebSocket, ...options });
  const events = record(c);
  c.connect();
  FakeWebSocket.last.open();
  return { c, clock, events, ws: FakeWebSocket.last };
}

test("silence for the hello's ping + 5 s: the socket is closed and the client reconnects", (t) => {
  const { c, clock, events, ws } = open(t);
  ws.receive({ t: "hello", ping: 10 });
  clock.tick(14999);
  assert.equal(ws.closedWith, null, "closed before ping + grace");
  clock.tick(1);
  assert.deepEqual(ws.closedWith, { code: 4000, reason: "heartbeat timeout" });
  assert.deepEqual(events.at(-1), ["close", { code: 1006, reason: "heartbeat timeout", willRetry: true, delay: 250 }]);
  assert.equal(c.state, "waiting");
  ws.drop(4000); // the browser's close event, whenever it comes: ignored
  assert.equal(events.filter(([type]) => type == "close").length, 1);
  clock.tick(250);
  assert.equal(FakeWebSocket.instances.length, 2);
});

test("every frame, pings above all, keeps the link alive; the client answers pings with pong", (t) => {
  const { clock, ws } = open(t);
  ws.receive({ t: "hello", ping: 25 });
  ws.take();
  for (let n = 0; n < 10; n++) {
    clock.tick(25000);
    ws.receive({ t: "ping" });
  }
  clock.tick(29999);
  ws.receive("anything");
  clock.tick(29999);
  assert.equal(ws.closedWith, null);
  assert.equal(FakeWebSocket.instances.length, 1);
  assert.deepEqual(ws.take(), Array(10).fill({ t: "pong" }));
  clock.tick(1);
  assert.notEqual(ws.closedWith, null);
});

test("before the hello, 25 s + grace; a hung handshake counts too", (t) => {
  const clock = fakeClock(t, 0);
  const c = new SocketClient("ws://example.test/feed", { WebSocket: FakeWebSocket, grace: 2000 });
  const events = record(c);
  c.connect(); // never opens
  clock.tick(26999);
  assert.equal(FakeWebSocket.instances.length, 1);
  clock.tick(1);
  assert.deepEqual(events.at(-1), ["close", { code: 1006, reason: "heartbeat timeout", willRetry: true, delay: 0 }]);
  // A connecting socket is closed too (a browser allows close() then).
  assert.deepEqual(FakeWebSocket.instances[0].closedWith, { code: 4000, reason: "heartbeat timeout" });
  clock.tick(0);
  assert.equal(FakeWebSocket.instances.length, 2);
});

test("heartbeat: false, or a hello with ping 0, never declares the link dead", (t) => {
  const { clock, ws } = open(t, { heartbeat: false });
  clock.tick(3600000);
  assert.equal(ws.closedWith, null);
  const other = new SocketClient("ws://example.test/feed", { WebSocket: FakeWebSocket });
  other.connect();
  FakeWebSocket.last.open();
  FakeWebSocket.last.receive({ t: "hello", ping: 0 });
  clock.tick(3600000);
  assert.equal(FakeWebSocket.last.closedWith, null);
});

test("after the timeout the rooms are resubscribed from their positions on the new socket", (t) => {
  const { c, clock, ws } = open(t);
  c.subscribe("news", () => {});
  ws.receive({ t: "sub", room: "news", recovered: false, offset: 3, epoch: "e" });
  ws.receive({ t: "msg", room: "news", offset: 4, epoch: "e", data: 1 });
  clock.tick(30000);
  clock.tick(250);
  FakeWebSocket.last.open();
  assert.deepEqual(FakeWebSocket.last.take(), [{ t: "sub", room: "news", offset: 4, epoch: "e" }]);
});

test("a hello with a ping past setTimeout's range (24.8 days) does not fire at once (browsers take it as 0)", (t) => {
  const { clock, ws, events } = open(t);
  ws.receive({ t: "hello", ping: 1e7 }); // 116 days: a server that meant "never"
  clock.tick(3600000);
  assert.equal(ws.closedWith, null);
  assert.deepEqual(events, [["open", {}]]);
});
