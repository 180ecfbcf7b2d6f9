// The chat room page: one SocketClient of flask-sockets.js (an envelope
// socket to /live that reconnects and resumes by itself), the room's
// messages and who is there.
export function startChat(SocketClient, { socketUrl, room, since }) {
  const list = document.getElementById("messages");
  const membersList = document.getElementById("members");
  const memberCount = document.getElementById("member-count");
  const status = document.getElementById("status");
  const form = document.getElementById("say-form");
  const input = document.getElementById("text");
  const send = document.getElementById("send");
  const servedBy = document.getElementById("served-by");
  // Who is there: socket id -> {name, here}. Lists from different workers may
  // arrive out of order (a list can be older than a change already seen), so
  // a socket's own join or leave wins; a list only adds sockets not seen yet.
  let people = new Map();
  // This page's socket ids (a new one at each reconnect): its own joins and
  // leaves are not news, except the first join.
  const mine = new Set();
  let myId = null;
  let subscribed = 0;

  function line(cls, from, text) {
    const item = document.createElement("li");
    item.className = cls;
    if (from !== null) {
      const who = document.createElement("span");
      who.className = "from";
      who.textContent = from + ": ";
      item.appendChild(who);
    }
    item.appendChild(document.createTextNode(text));
    list.appendChild(item);
    list.scrollTop = list.scrollHeight;
  }

  function renderMembers() {
    membersList.replaceChildren();
    const members = [...people].filter(([, person]) => person.here);
    members.sort(([idA, a], [idB, b]) => a.name.localeCompare(b.name) || idA.localeCompare(idB));
    for (const [id, { name }] of members) {
      const item = document.createElement("li");
      item.textContent = id === myId ? name + " (you)" : name;
      membersList.appendChild(item);
    }
    memberCount.textContent = String(members.length);
  }

  function setStatus(text, cls) {
    status.textContent = text;
    status.className = "status " + cls;
  }

  function enable(on) {
    input.disabled = send.disabled = !on;
  }

  const client = new SocketClient(socketUrl);
  // For the tests and the curious: the client, and every room event shown.
  window.chat = { client, events: [] };

  client.on("open", () => {
    setStatus("connected", "online");
    enable(true);
  });
  client.on("close", ({ code, willRetry }) => {
    enable(false);
    setStatus(willRetry ? "reconnecting…" : "disconnected (" + code + ")", "offline");
  });
  // Messages for this socket alone.
  client.on("message", ({ data }) => {
    if (data.type === "welcome") {
      myId = data.id;
      mine.add(myId);
      servedBy.textContent = "Served by process " + data.worker + ".";
      renderMembers();
      input.focus();
    } else if (data.type === "error") {
      line("problem", null, data.text);
    }
  });
  // The history could not cover the time away (or the server lost it):
  // messages may be missing above; who is there comes with the next change.
  client.on("subscribed", (position) => {
    if (position.room === room) subscribed++;
  });
  client.on("unrecovered", (position) => {
    if (position.room !== room || subscribed < 2) return; // the first: only the backlog
    line("system", null, "Some messages may be missing while you were away.");
    people = new Map();
  });

  // The room: its last messages first (subscribed from `since`), then the
  // live ones; after a reconnect, what was missed, once.
  client.subscribe(
    room,
    (event, { offset }) => {
      window.chat.events.push([offset, event]);
      switch (event.type) {
        case "presence": {
          const { kind, id, name } = event.change;
          for (const member of event.members) {
            if (!people.has(member.id)) people.set(member.id, { name: member.name, here: true });
          }
          people.set(id, { name, here: kind === "join" });
          if (!mine.has(id)) line("system", null, name + (kind === "join" ? " joined." : " left."));
          else if (id === myId && kind === "join" && mine.size === 1) {
            line("system", null, "You joined #" + room + " as " + name + ".");
          }
          break;
        }
        case "say":
          line("said", event.name, event.text);
          break;
      }
      renderMembers();
    },
    since ?? undefined,
  );
  client.connect();

  // Leaving the page leaves the room at once (a page kept in the back/forward
  // cache would otherwise keep its socket); coming back reconnects.
  window.addEventListener("pagehide", () => client.close(1000, "left the page"));
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) location.reload();
  });

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text || client.state !== "open") return;
    client.send({ type: "say", room, text });
    input.value = "";
  });
}
