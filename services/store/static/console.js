// Hotline consultant console: plain DOM, no build step. All text from the network is
// inserted with textContent, never as HTML.
(function () {
  "use strict";
  var csrf = sessionStorage.getItem("hl_csrf");
  var state = { queue: null, thread: null, me: null };
  var $ = function (id) { return document.getElementById(id); };

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }

  function api(method, path, body, headers) {
    var h = Object.assign({ "Accept": "application/json" }, headers || {});
    if (method !== "GET") { h["X-CSRF-Token"] = csrf || ""; }
    if (body !== undefined) { h["Content-Type"] = "application/json"; }
    return fetch(path, { method: method, headers: h, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body) }).then(function (r) {
      if (r.status === 401) { showLogin(); throw new Error("not logged in"); }
      if (r.status === 204) { return null; }
      return r.json().then(function (j) { if (!r.ok) { throw new Error(j.title || r.statusText); } return j; });
    });
  }

  function showLogin() { $("app").hidden = true; $("login").hidden = false; }

  function showApp(me) {
    state.me = me;
    $("login").hidden = true; $("app").hidden = false;
    $("who").textContent = me.name + " (" + me.role + ")";
    loadQueues(); connectEvents();
  }

  $("login-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var f = ev.target;
    fetch("/api/session", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ login: f.login.value, password: f.password.value }) })
      .then(function (r) { return r.json().then(function (j) { return { ok: r.ok, j: j }; }); })
      .then(function (res) {
        if (!res.ok) { $("login-error").textContent = res.j.title; return; }
        csrf = res.j.csrf_token; sessionStorage.setItem("hl_csrf", csrf);
        showApp(res.j.consultant);
      });
  });

  $("logout").addEventListener("click", function () {
    api("DELETE", "/api/session").finally(function () { sessionStorage.clear(); location.reload(); });
  });

  function loadQueues() {
    return api("GET", "/api/queues").then(function (queues) {
      var ul = $("queues"); ul.textContent = "";
      queues.forEach(function (q) {
        var b = el("button", { "type": "button", "data-queue": q.name, "aria-current": String(q.name === state.queue) });
        b.appendChild(el("span", {}, (q.title && (q.title.en || q.title.ru)) || q.name));
        b.appendChild(el("span", { "class": "badge", "data-waiting": q.name }, q.waiting));
        b.addEventListener("click", function () { state.queue = q.name; loadQueues(); loadThreads(); });
        var li = el("li"); li.appendChild(b); ul.appendChild(li);
      });
    });
  }

  function loadThreads() {
    if (!state.queue) { return Promise.resolve(); }
    $("next").disabled = false;
    $("threads-title").textContent = "Threads: " + state.queue;
    return api("GET", "/api/threads?queue=" + encodeURIComponent(state.queue)).then(function (threads) {
      var ul = $("threads"); ul.textContent = "";
      threads.filter(function (t) { return t.status !== "closed"; }).forEach(function (t) {
        var b = el("button", { "type": "button", "data-thread": t.id, "aria-current": String(t.id === state.thread) });
        b.appendChild(el("span", {}, "[" + t.channel + "] " + (t.subject || "chat") + " · " + t.status +
          (t.assignee ? " · " + t.assignee : "")));
        b.addEventListener("click", function () { openThread(t.id); });
        var li = el("li"); li.appendChild(b); ul.appendChild(li);
      });
    });
  }

  $("next").addEventListener("click", function () {
    api("POST", "/api/queues/" + encodeURIComponent(state.queue) + "/next").then(function (t) {
      if (!t) { $("thread").textContent = "Nobody is waiting in this queue."; return; }
      openThread(t.id); loadQueues(); loadThreads();
    });
  });

  function openThread(id) {
    state.thread = id;
    return api("GET", "/api/threads/" + encodeURIComponent(id)).then(function (t) {
      var art = $("thread"); art.textContent = "";
      art.appendChild(el("h2", {}, (t.subject || "Chat") + " [" + t.channel + "]"));
      art.appendChild(el("p", { "class": "meta" }, "Status: " + t.status + (t.assignee ? ", held by " + t.assignee : "")));
      t.messages.forEach(function (m) {
        var d = el("div", { "class": "msg " + (m.direction === "in" ? "in" : "out"), "data-message": m.id });
        d.appendChild(el("div", { "class": "meta" }, (m.direction === "in" ? "Client" : m.author) + " · " +
          new Date(m.created_at).toLocaleString() + (m.delivery ? " · " + m.delivery.status : "")));
        d.appendChild(el("div", { "class": "text" }, m.text));
        art.appendChild(d);
      });
      if (t.status === "waiting") {
        var claim = el("button", { "type": "button" }, "Take this conversation");
        claim.addEventListener("click", function () {
          api("POST", "/api/threads/" + encodeURIComponent(id) + "/claim").then(function () { openThread(id); loadThreads(); });
        });
        art.appendChild(claim);
      } else if (t.status === "active" && t.assignee === state.me.login) {
        var form = el("form", { "id": "reply-form" });
        var ta = el("textarea", { "name": "text", "aria-label": "Reply", "required": "required" });
        form.appendChild(ta); form.appendChild(el("button", { "type": "submit" }, "Send reply"));
        form.addEventListener("submit", function (ev) {
          ev.preventDefault();
          var key = crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random();
          api("POST", "/api/threads/" + encodeURIComponent(id) + "/messages", { text: ta.value },
            { "Idempotency-Key": key }).then(function () { openThread(id); });
        });
        art.appendChild(form);
      }
    });
  }

  var events = null;
  function connectEvents() {
    if (events) { return; }
    var url = new URL("/api/events", location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    events = new WebSocket(url);
    events.onopen = function () { $("live").classList.add("on"); };
    events.onmessage = function (ev) {
      var f = JSON.parse(ev.data);
      if (f.type !== "event") { return; }
      loadQueues();
      if (f.queue === state.queue) { loadThreads(); }
      if (f.thread_id === state.thread) { openThread(state.thread); }
    };
    events.onclose = function () {
      $("live").classList.remove("on"); events = null;
      if (state.me) { setTimeout(connectEvents, 2000); }
    };
  }

  api("GET", "/api/me").then(function (r) { showApp(r.consultant); }).catch(function () { showLogin(); });
}());
