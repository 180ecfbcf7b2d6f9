// The chat room page: one WebSocket to the room, a message list and a member list.
(function () {
  "use strict";
  const { socketUrl } = window.CHAT;
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
  const people = new Map();
  let myId = null;

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

  const socket = new WebSocket(socketUrl);
  socket.onopen = () => setStatus("connected", "online");
  socket.onclose = (event) => {
    setStatus("disconnected (" + event.code + ")", "offline");
    input.disabled = send.disabled = true;
    line("system", null, "Disconnected. Reload the page to come back.");
  };
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    switch (message.type) {
      case "welcome":
        myId = message.id;
        servedBy.textContent = "Served by process " + message.worker + ".";
        input.disabled = send.disabled = false;
        input.focus();
        line("system", null, "You joined #" + message.room + " as " + message.name + ".");
        break;
      case "presence": {
        const { kind, id, name } = message.change;
        for (const member of message.members) {
          if (!people.has(member.id)) people.set(member.id, { name: member.name, here: true });
        }
        people.set(id, { name, here: kind === "join" });
        if (id !== myId) line("system", null, name + (kind === "join" ? " joined." : " left."));
        break;
      }
      case "say":
        line("said", message.name, message.text);
        break;
      case "error":
        line("problem", null, message.text);
        break;
    }
    renderMembers();
  };

  // Leaving the page leaves the room at once (a page kept in the back/forward
  // cache would otherwise keep its socket); coming back reconnects.
  window.addEventListener("pagehide", () => socket.close(1000, "left the page"));
  window.addEventListener("pageshow", (event) => { if (event.persisted) location.reload(); });

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text || socket.readyState !== WebSocket.OPEN) return;
    socket.send(JSON.stringify({ type: "say", text }));
    input.value = "";
  });
})();
