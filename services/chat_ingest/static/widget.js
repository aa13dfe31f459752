// Hotline chat widget: one script tag. Keeps the session token in memory only, so
// nothing stays in the browser once the page is closed or Quick exit is pressed.
(function () {
  "use strict";
  var me = document.currentScript;
  var line = (me && me.dataset.line) || null;
  var exitUrl = (me && me.dataset.exitUrl) || "https://www.wikipedia.org/";
  var wsUrl = new URL("/chat/ws", me ? me.src : location.href);
  wsUrl.protocol = wsUrl.protocol === "https:" ? "wss:" : "ws:";

  var token = null, socket = null, pending = {}, shown = {}, counter = 0;

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text) { e.textContent = text; }  // textContent only: no HTML from the network
    return e;
  }

  var box = el("section", { "class": "hl-chat", "aria-label": "Chat with a consultant" });
  var head = el("header");
  head.appendChild(el("strong", {}, "Chat"));
  var exit = el("button", { "type": "button", "class": "hl-exit", "title": "Leave at once (Esc Esc)" }, "Quick exit");
  head.appendChild(exit);
  var status = el("div", { "class": "hl-status", "role": "status", "aria-live": "polite" }, "Connecting…");
  var list = el("ol", { "aria-live": "polite", "aria-label": "Messages" });
  var form = el("form");
  var input = el("textarea", { "rows": "2", "aria-label": "Your message", "maxlength": "4000" });
  var send = el("button", { "type": "submit" }, "Send");
  form.appendChild(input); form.appendChild(send);
  box.appendChild(head); box.appendChild(status); box.appendChild(list); box.appendChild(form);
  document.body.appendChild(box);

  function show(id, who, text) {
    if (id && shown[id]) { return; }  // a resent or replayed message is shown once
    if (id) { shown[id] = true; }
    list.appendChild(el("li", { "class": who }, text));
    list.scrollTop = list.scrollHeight;
  }

  function quickExit() {
    try { if (socket) { socket.send(JSON.stringify({ type: "end" })); socket.close(); } } catch (e) { /* leaving anyway */ }
    token = null; pending = {}; shown = {};
    try { sessionStorage.clear(); } catch (e) { /* storage may be blocked */ }
    document.body.textContent = "";
    location.replace(exitUrl);  // replace: the chat page does not stay in history
  }
  exit.addEventListener("click", quickExit);
  var lastEsc = 0;
  document.addEventListener("keydown", function (ev) {
    if (ev.key !== "Escape") { return; }
    var now = Date.now();
    if (now - lastEsc < 800) { quickExit(); }
    lastEsc = now;
  });

  function connect() {
    socket = new WebSocket(wsUrl);
    socket.onopen = function () {
      socket.send(JSON.stringify(token ? { type: "resume", token: token } : { type: "start", line: line }));
    };
    socket.onmessage = function (ev) {
      var f = JSON.parse(ev.data);
      if (f.type === "session") {
        token = f.token;
        status.textContent = f.on_duty ? "A consultant will answer you here." :
          "Nobody is on duty now. Leave a message; we answer from 08:00.";
        Object.keys(pending).forEach(function (id) { socket.send(JSON.stringify(pending[id])); });
      } else if (f.type === "ack") {
        delete pending[f.id];
      } else if (f.type === "message") {
        show(f.message_id, "them", f.text);
      } else if (f.type === "closed") {
        status.textContent = "The conversation has ended.";
      } else if (f.type === "error") {
        status.textContent = f.detail;
      }
    };
    socket.onclose = function () {
      if (token) { setTimeout(connect, 1000 + Math.random() * 2000); }
    };
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var text = input.value.trim();
    if (!text) { return; }
    counter += 1;
    var id = (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + "-" + counter);
    var frame = { type: "message", id: id, text: text };
    pending[id] = frame;
    show("me-" + id, "me", text);
    input.value = "";
    if (socket && socket.readyState === 1) { socket.send(JSON.stringify(frame)); }
  });

  connect();
}());
