// send(): at once while open, queued (bounded) while not, flushed in order on open.
import assert from "node:assert/strict";
import { test } from "node:test";
import { FakeWebSocket, SocketClient, fakeClock } from "./fake.mjs";

const make = (options = {}) => new SocketClient("ws://example.test/feed", { WebSocket: FakeWebSocket, ...options });

test("while open, send() sends {t: msg, data} at once", (t) => {
  fakeClock(t);
  const c = make().connect();
  FakeWebSocket.last.open();
  assert.equal(c.send({ text: "hi" }), true);
  assert.equal(c.send("two"), true);
  assert.deepEqual(FakeWebSocket.last.take(), [
    { t: "msg", data: { text: "hi" } },
    { t: "msg", data: "two" },
  ]);
});

test("while disconnected, sends are queued up to `queue`, then dropped (false); sent in order after the resubscribes", (t) => {
  const clock = fakeClock(t, 0);
  const c = make({ queue: 3 });
  c.connect();
  FakeWebSocket.last.open();
  c.subscribe("news");
  FakeWebSocket.last.drop(1006);
  assert.deepEqual(
    [1, 2, 3, 4, 5].map((n) => c.send(n)),
    [true, true, true, false, false],
  );
  clock.tick(0);
  FakeWebSocket.last.open();
  assert.deepEqual(FakeWebSocket.last.take(), [
    { t: "sub", room: "news" },
    { t: "msg", data: 1 },
    { t: "msg", data: 2 },
    { t: "msg", data: 3 },
  ]);
  assert.equal(c.send(6), true);
  assert.deepEqual(FakeWebSocket.last.take(), [{ t: "msg", data: 6 }]);
});

test("queue: 0 drops every send while not open", (t) => {
  fakeClock(t);
  const c = make({ queue: 0 });
  assert.equal(c.send("early"), false);
  c.connect();
  assert.equal(c.send("connecting"), false);
  FakeWebSocket.last.open();
  assert.deepEqual(FakeWebSocket.last.take(), []);
});

test("the queue is kept across a terminal close and 4401, and emptied by close()", (t) => {
  fakeClock(t);
  const c = make();
  c.connect();
  FakeWebSocket.last.drop(4401);
  c.send("after 4401");
  c.connect();
  FakeWebSocket.last.open();
  assert.deepEqual(FakeWebSocket.last.take(), [{ t: "msg", data: "after 4401" }]);
  FakeWebSocket.last.drop(1006);
  c.send("dropped by close");
  c.close();
  c.send("after close: for the next connect");
  c.connect();
  FakeWebSocket.last.open();
  assert.deepEqual(FakeWebSocket.last.take(), [{ t: "msg", data: "after close: for the next connect" }]);
});

test("send() after the server's close frame (CLOSING, before the close event) is queued, not lost", (t) => {
  const clock = fakeClock(t, 0);
  const c = make();
  c.connect();
  FakeWebSocket.last.open();
  FakeWebSocket.last.closing();
  assert.equal(c.send("in between"), true);
  FakeWebSocket.last.drop(1001);
  clock.tick(0);
  FakeWebSocket.last.open();
  assert.deepEqual(FakeWebSocket.last.take(), [{ t: "msg", data: "in between" }]);
});
