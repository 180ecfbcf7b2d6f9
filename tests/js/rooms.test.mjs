// Rooms: subscribe, positions, resubscribe after a reconnect, duplicates at
// the seam, recovered/unrecovered, unsubscribe, refused subscribes.
import assert from "node:assert/strict";
import { test } from "node:test";
import { FakeWebSocket, SocketClient, fakeClock, record } from "./fake.mjs";

function connected(t, options = {}) {
  const clock = fakeClock(t, 0);
  const c = new SocketClient("ws://example.test/feed", { WebSocket: FakeWebSocket, ...options });
  const events = record(c);
  c.connect();
  FakeWebSocket.last.open();
  FakeWebSocket.last.receive({ t: "hello", ping: 25 });
  return { c, clock, events };
}

/** Drop the connection; random() = 0: the reconnect is due at once. */
function reconnect(clock) {
  FakeWebSocket.last.drop(1006);
  clock.tick(0);
  FakeWebSocket.last.open();
  return FakeWebSocket.last;
}

const msg = (room, offset, data, epoch = "e1") => ({ t: "msg", room, offset, epoch, data });
const of = (events, type) => events.filter(([kind]) => kind == type).map(([, detail]) => detail);

test("subscribe before connecting: sent on open, before the queued sends; a first subscribe is not 'unrecovered'", (t) => {
  fakeClock(t);
  const c = new SocketClient("ws://example.test/feed", { WebSocket: FakeWebSocket });
  const events = record(c);
  c.subscribe("news", () => {});
  c.send("hi");
  c.connect();
  FakeWebSocket.last.open();
  assert.deepEqual(FakeWebSocket.last.take(), [{ t: "sub", room: "news" }, { t: "msg", data: "hi" }]);
  FakeWebSocket.last.receive({ t: "sub", room: "news", recovered: false, offset: 7, epoch: "e1" });
  assert.deepEqual(of(events, "subscribed"), [{ room: "news", recovered: false, offset: 7, epoch: "e1" }]);
  assert.deepEqual(of(events, "unrecovered"), []);
  assert.deepEqual(of(events, "recovered"), []);
});

test("subscribe while open sends at once; messages reach the handler with their position, in order", (t) => {
  const { c, events } = connected(t);
  const got = [];
  const sub = c.subscribe("news", (data, m) => got.push([data, m.offset, m.epoch, m.room]));
  const ws = FakeWebSocket.last;
  assert.deepEqual(ws.take(), [{ t: "sub", room: "news" }]);
  ws.receive({ t: "sub", room: "news", recovered: false, offset: 7, epoch: "e1" });
  assert.deepEqual(sub.position, { offset: 7, epoch: "e1" });
  ws.receive(msg("news", 8, { a: 1 }));
  ws.receive(msg("news", 9, "two"));
  ws.receive(msg("other", 3, "not ours"));
  assert.deepEqual(got, [
    [{ a: 1 }, 8, "e1", "news"],
    ["two", 9, "e1", "news"],
  ]);
  assert.deepEqual(sub.position, { offset: 9, epoch: "e1" });
  assert.deepEqual(of(events, "roommessage"), [
    { room: "news", data: { a: 1 }, offset: 8, epoch: "e1" },
    { room: "news", data: "two", offset: 9, epoch: "e1" },
  ]);
});

test("after a reconnect every room is resubscribed from its last position", (t) => {
  const { c, clock } = connected(t);
  c.subscribe("a", () => {});
  c.subscribe("b", () => {});
  c.subscribe("no history", () => {});
  c.subscribe("stored", () => {}, { offset: 40, epoch: "x" });
  let ws = FakeWebSocket.last;
  assert.deepEqual(ws.take(), [
    { t: "sub", room: "a" },
    { t: "sub", room: "b" },
    { t: "sub", room: "no history" },
    { t: "sub", room: "stored", offset: 40, epoch: "x" },
  ]);
  ws.receive({ t: "sub", room: "a", recovered: false, offset: 0, epoch: "e1" });
  ws.receive({ t: "sub", room: "b", recovered: false, offset: 10, epoch: "e2" });
  ws.receive({ t: "sub", room: "no history", recovered: false, offset: null, epoch: null });
  ws.receive({ t: "sub", room: "stored", recovered: true, offset: 40, epoch: "x" });
  ws.receive(msg("a", 1, "x"));
  ws.receive(msg("a", 2, "y"));
  ws.receive(msg("b", 11, "z", "e2"));
  ws.receive({ t: "msg", room: "no history", offset: null, epoch: null, data: "w" });
  ws = reconnect(clock);
  assert.deepEqual(ws.take(), [
    { t: "sub", room: "a", offset: 2, epoch: "e1" },
    { t: "sub", room: "b", offset: 11, epoch: "e2" },
    { t: "sub", room: "no history" },
    { t: "sub", room: "stored", offset: 40, epoch: "x" },
  ]);
});

test("recovered: the replay after the reply moves the position; a duplicate at the seam is dropped", (t) => {
  const { c, clock, events } = connected(t);
  const got = [];
  c.subscribe("news", (data) => got.push(data));
  let ws = FakeWebSocket.last;
  ws.receive({ t: "sub", room: "news", recovered: false, offset: 0, epoch: "e1" });
  ws.receive(msg("news", 1, "m1"));
  ws.receive(msg("news", 2, "m2"));
  ws = reconnect(clock);
  assert.deepEqual(ws.take(), [{ t: "sub", room: "news", offset: 2, epoch: "e1" }]);
  // The reply names the position after the replay; the replay follows.
  ws.receive({ t: "sub", room: "news", recovered: true, offset: 4, epoch: "e1" });
  ws.receive(msg("news", 2, "m2")); // seen before the drop: a duplicate
  ws.receive(msg("news", 3, "m3"));
  ws.receive(msg("news", 4, "m4"));
  ws.receive(msg("news", 4, "m4")); // live copy of the last replayed one
  ws.receive(msg("news", 3, "m3")); // and an older one
  ws.receive(msg("news", 5, "m5"));
  assert.deepEqual(got, ["m1", "m2", "m3", "m4", "m5"]);
  assert.deepEqual(of(events, "recovered"), [{ room: "news", recovered: true, offset: 4, epoch: "e1" }]);
  assert.deepEqual(of(events, "unrecovered"), []);
});

test("unrecovered: the position becomes the room's; the same offset in a new epoch is not a duplicate", (t) => {
  const { c, clock, events } = connected(t);
  const got = [];
  const sub = c.subscribe("news", (data, m) => got.push([data, m.offset, m.epoch]));
  let ws = FakeWebSocket.last;
  ws.receive({ t: "sub", room: "news", recovered: false, offset: 0, epoch: "e1" });
  ws.receive(msg("news", 1, "m1"));
  ws.receive(msg("news", 2, "m2"));
  ws = reconnect(clock);
  // Redis was flushed: a new epoch, starting again.
  ws.receive({ t: "sub", room: "news", recovered: false, offset: 0, epoch: "e2" });
  assert.deepEqual(of(events, "unrecovered"), [{ room: "news", recovered: false, offset: 0, epoch: "e2" }]);
  assert.deepEqual(sub.position, { offset: 0, epoch: "e2" });
  ws.receive(msg("news", 1, "n1", "e2"));
  ws.receive(msg("news", 2, "n2", "e2"));
  ws.receive(msg("news", 2, "n2", "e2"));
  assert.deepEqual(got, [
    ["m1", 1, "e1"],
    ["m2", 2, "e1"],
    ["n1", 1, "e2"],
    ["n2", 2, "e2"],
  ]);
  // The next reconnect asks from the new position.
  ws = reconnect(clock);
  assert.deepEqual(ws.take(), [{ t: "sub", room: "news", offset: 2, epoch: "e2" }]);
});

test("history off: every message is delivered, and a reconnect reports 'unrecovered' (messages may be lost)", (t) => {
  const { c, clock, events } = connected(t);
  const got = [];
  c.subscribe("chat", (data) => got.push(data));
  let ws = FakeWebSocket.last;
  const plain = (data) => ({ t: "msg", room: "chat", offset: null, epoch: null, data });
  ws.receive({ t: "sub", room: "chat", recovered: false, offset: null, epoch: null });
  ws.receive(plain("same"));
  ws.receive(plain("same"));
  assert.deepEqual(got, ["same", "same"]);
  assert.deepEqual(of(events, "unrecovered"), []);
  ws = reconnect(clock);
  assert.deepEqual(ws.take(), [{ t: "sub", room: "chat" }]);
  ws.receive({ t: "sub", room: "chat", recovered: false, offset: null, epoch: null });
  assert.deepEqual(of(events, "unrecovered"), [{ room: "chat", recovered: false, offset: null, epoch: null }]);
});

test("a subscribe with a stored position that the server cannot honour is 'unrecovered'", (t) => {
  const { c, events } = connected(t);
  c.subscribe("news", () => {}, { offset: 5, epoch: "old" });
  FakeWebSocket.last.receive({ t: "sub", room: "news", recovered: false, offset: 9, epoch: "e1" });
  assert.deepEqual(of(events, "unrecovered"), [{ room: "news", recovered: false, offset: 9, epoch: "e1" }]);
});

test("unsubscribe sends unsub once, for the last subscription of a room; the room is not resubscribed", (t) => {
  const { c, clock } = connected(t);
  const got = [];
  const one = c.subscribe("news", (data) => got.push(["one", data]));
  const two = c.subscribe("news", (data) => got.push(["two", data]));
  const ws = FakeWebSocket.last;
  assert.deepEqual(ws.take(), [{ t: "sub", room: "news" }], "one sub for two subscriptions");
  ws.receive(msg("news", 1, "m1"));
  one.unsubscribe();
  one.unsubscribe();
  assert.deepEqual(ws.take(), []);
  ws.receive(msg("news", 2, "m2"));
  two.unsubscribe();
  assert.deepEqual(ws.take(), [{ t: "unsub", room: "news" }]);
  ws.receive(msg("news", 3, "m3"));
  assert.deepEqual(got, [
    ["one", "m1"],
    ["two", "m1"],
    ["two", "m2"],
  ]);
  assert.deepEqual(reconnect(clock).take(), []);
});

test("unsubscribe while disconnected sends nothing, and the room is not resubscribed", (t) => {
  const { c, clock } = connected(t);
  const sub = c.subscribe("news");
  FakeWebSocket.last.drop(1006);
  sub.unsubscribe();
  clock.tick(0);
  FakeWebSocket.last.open();
  assert.deepEqual(FakeWebSocket.last.take(), []);
});

test("a refused subscribe is an error event and the room is dropped", (t) => {
  const { c, clock, events } = connected(t);
  const sub = c.subscribe("secret", () => assert.fail("no message for a refused room"));
  FakeWebSocket.last.take();
  FakeWebSocket.last.receive({ t: "error", room: "secret", reason: "forbidden" });
  FakeWebSocket.last.receive(msg("secret", 1, "x"));
  assert.deepEqual(of(events, "error"), [{ room: "secret", reason: "forbidden" }]);
  sub.unsubscribe();
  assert.deepEqual(FakeWebSocket.last.take(), [], "no unsub for a refused room");
  assert.deepEqual(reconnect(clock).take(), []);
});

test("a throwing handler does not stop the others or the client", (t) => {
  const { c, clock } = connected(t);
  const got = [];
  c.subscribe("news", () => {
    throw new Error("app bug");
  });
  c.subscribe("news", (data) => got.push(data));
  FakeWebSocket.last.receive(msg("news", 1, "m1"));
  assert.deepEqual(got, ["m1"]);
  // The error is thrown again on its own (an uncaught error, in the console), not lost.
  assert.throws(() => clock.tick(1), /app bug/);
  FakeWebSocket.last.receive({ t: "ping" });
  assert.deepEqual(FakeWebSocket.last.take().at(-1), { t: "pong" }, "the client goes on");
});

test("app messages: a msg without a room, and a frame that is no envelope, are message events", (t) => {
  const { events } = connected(t);
  const ws = FakeWebSocket.last;
  ws.receive({ t: "msg", data: { text: "hi" } });
  ws.receive("plain text");
  ws.receive("[1, 2]");
  ws.receive({ t: "future", x: 1 }); // unknown types are ignored
  assert.deepEqual(of(events, "message"), [{ data: { text: "hi" } }, { data: "plain text" }, { data: "[1, 2]" }]);
});
