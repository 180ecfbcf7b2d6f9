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
  const members = new Map(); // connection id -> name
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
    const entries = [...members.entries()].sort((a, b) => a[1].localeCompare(b[1]));
    for (const [id, name] of entries) {
      const item = document.createElement("li");
      item.textContent = id === myId ? name + " (you)" : name;
      membersList.appendChild(item);
    }
    memberCount.textContent = String(members.size);
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
        members.set(message.id, message.name);
        input.disabled = send.disabled = false;
        input.focus();
        line("system", null, "You joined #" + message.room + " as " + message.name + ".");
        break;
      case "join":
        members.set(message.id, message.name);
        if (message.id !== myId) {
          line("system", null, message.name + " joined.");
          socket.send(JSON.stringify({ type: "here" })); // so the newcomer sees us
        }
        break;
      case "here":
        members.set(message.id, message.name);
        break;
      case "leave":
        members.delete(message.id);
        line("system", null, message.name + " left.");
        break;
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
