// Hotline chat widget: one script tag on any page.
//
//   <script src="https://chat.example.org/chat/widget.js" data-line="dv"
//           data-exit-url="https://www.google.com/search?q=weather" data-language="ru"></script>
//
// Safety (the client may be on a watched device): the session token is held in memory only,
// nothing is written to cookies, localStorage, sessionStorage or IndexedDB; Quick exit (or
// Escape twice) ends the chat, forgets everything and replaces the page with a neutral one
// with location.replace, so Back does not return to it. "Not safe now" does the same and
// tells the consultants not to write until the client does (the end frame carries
// reason "not_safe"). Texts from the network are shown with textContent only.
(function () {
  "use strict";
  var me = document.currentScript;
  var data = (me && me.dataset) || {};
  var base = new URL(me ? me.src : location.href);
  var exitUrl = data.exitUrl || "https://www.google.com/search?q=weather";
  var fixedLine = data.line || null;
  var wsUrl = new URL("/chat/ws", base);
  wsUrl.protocol = wsUrl.protocol === "https:" ? "wss:" : "ws:";

  var TEXT = {
    en: {
      title: "Chat with a consultant", exit: "Quick exit", exitHint: "Leave this page at once (or press Esc twice)",
      notSafe: "Not safe now", notSafeHint: "Hide this chat at once and ask the consultants not to write to you until you write again",
      intro: "You can write without giving your name. You may answer these questions or skip them.",
      line: "Line", language: "Language", region: "Region", topic: "Topic", any: "Prefer not to say",
      start: "Start chat", skip: "Skip and start", send: "Send", yourMessage: "Your message",
      messages: "Conversation", connecting: "Connecting…", onDuty: "Consultants are on duty now.",
      offDuty: "Nobody is on duty now (hours {open}-{close}). Leave a message: we answer when we open.",
      hours: "Hours: {open}-{close} daily.", position: "You are number {n} in the queue.",
      withConsultant: "A consultant is with you.", closed: "The consultant has closed the conversation. You can write again.",
      ended: "The chat has ended.", reconnecting: "Connection lost. Reconnecting…", notSent: "not sent yet",
      unavailable: "The chat cannot be reached right now. Trying again…",
      unreadable: "Part of your message could not be read; a consultant sees the rest.",
      you: "You", consultant: "Consultant", bot: "Automatic answer", emergency: "In danger now? Call 102 (police) or 103 (ambulance).",
      help: "Find help in my region", helpRegion: "Your region", noEntries: "No services listed for this region yet; these serve the whole country:"
    },
    ru: {
      title: "Чат с консультантом", exit: "Быстрый выход", exitHint: "Сразу уйти с этой страницы (или дважды нажмите Esc)",
      notSafe: "Сейчас небезопасно", notSafeHint: "Сразу скрыть чат и попросить консультантов не писать вам, пока вы не напишете сами",
      intro: "Можно писать, не называя имени. На вопросы ниже можно ответить или пропустить их.",
      line: "Линия", language: "Язык", region: "Регион", topic: "Тема", any: "Не хочу указывать",
      start: "Начать чат", skip: "Пропустить и начать", send: "Отправить", yourMessage: "Ваше сообщение",
      messages: "Переписка", connecting: "Подключение…", onDuty: "Консультанты сейчас на связи.",
      offDuty: "Сейчас никого нет на связи (часы работы {open}-{close}). Оставьте сообщение — мы ответим, когда начнём работу.",
      hours: "Часы работы: {open}-{close} ежедневно.", position: "Ваш номер в очереди: {n}.",
      withConsultant: "С вами консультант.", closed: "Консультант завершил разговор. Вы можете написать снова.",
      ended: "Чат завершён.", reconnecting: "Связь потеряна. Подключаемся снова…", notSent: "ещё не отправлено",
      unavailable: "Чат сейчас недоступен. Пробуем снова…",
      unreadable: "Часть вашего сообщения не удалось прочитать; остальное консультант видит.",
      you: "Вы", consultant: "Консультант", bot: "Автоматический ответ", emergency: "Вам угрожает опасность? Звоните 102 (милиция) или 103 (скорая).",
      help: "Помощь в моём регионе", helpRegion: "Ваш регион", noEntries: "Для этого региона пока ничего нет; эти службы работают по всей стране:"
    },
    be: {
      title: "Чат з кансультантам", exit: "Хуткі выхад", exitHint: "Адразу пакінуць гэту старонку (або двойчы націсніце Esc)",
      notSafe: "Зараз небяспечна", notSafeHint: "Адразу схаваць чат і папрасіць кансультантаў не пісаць вам, пакуль вы не напішаце самі",
      intro: "Можна пісаць, не называючы імя. На пытанні ніжэй можна адказаць або прапусціць іх.",
      line: "Лінія", language: "Мова", region: "Рэгіён", topic: "Тэма", any: "Не хачу пазначаць",
      start: "Пачаць чат", skip: "Прапусціць і пачаць", send: "Адправіць", yourMessage: "Ваша паведамленне",
      messages: "Перапіска", connecting: "Падключэнне…", onDuty: "Кансультанты зараз на сувязі.",
      offDuty: "Зараз нікога няма на сувязі (гадзіны працы {open}-{close}). Пакіньце паведамленне — мы адкажам, калі пачнём працу.",
      hours: "Гадзіны працы: {open}-{close} штодня.", position: "Ваш нумар у чарзе: {n}.",
      withConsultant: "З вамі кансультант.", closed: "Кансультант завяршыў размову. Вы можаце напісаць зноў.",
      ended: "Чат завершаны.", reconnecting: "Сувязь страчана. Падключаемся зноў…", notSent: "яшчэ не адпраўлена",
      unavailable: "Чат зараз недаступны. Спрабуем зноў…",
      unreadable: "Частку вашага паведамлення не ўдалося прачытаць; астатняе кансультант бачыць.",
      you: "Вы", consultant: "Кансультант", bot: "Аўтаматычны адказ", emergency: "Вам пагражае небяспека? Тэлефануйце 102 (міліцыя) або 103 (хуткая).",
      help: "Дапамога ў маім рэгіёне", helpRegion: "Ваш рэгіён", noEntries: "Для гэтага рэгіёна пакуль нічога няма; гэтыя службы працуюць па ўсёй краіне:"
    }
  };
  var LANGS = ["ru", "be", "en"];
  function pickLang(value) {
    value = String(value || "").toLowerCase().slice(0, 2);
    return LANGS.indexOf(value) >= 0 ? value : null;
  }
  var lang = pickLang(data.language) || pickLang(document.documentElement.lang) || "ru";
  function t(key, vars) {
    var s = (TEXT[lang] && TEXT[lang][key]) || TEXT.en[key] || key;
    Object.keys(vars || {}).forEach(function (k) { s = s.split("{" + k + "}").join(String(vars[k])); });
    return s;
  }

  // --- state: in memory only ---------------------------------------------------------------
  var info = null, token = null, socket = null, pending = {}, shown = {}, counter = 0;
  var line = fixedLine, position = null, onDuty = null, retry = 0, reconnectTimer = null, gone = false;
  // hasSession: the current socket answered start/resume with a session; until then only
  // start/resume is sent on it. startTries/startTimer: start (or resume) retried with backoff.
  var hasSession = false, startTries = 0, startTimer = null;
  // Frames waiting for the current socket, sent through a token bucket that stays inside the
  // server's per-socket budget (5 frames a second, bursts of 20: beyond it the server answers
  // rate_limited, drops the frame, and closes a socket that goes on), so resending many
  // messages after an outage never gets the chat cut off.
  var SEND_RATE = 3, SEND_BURST = 10, MAX_BACKOFF = 30000;
  var sendQ = [], bucket = SEND_BURST, bucketAt = Date.now(), pumpTimer = null;

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text) { e.textContent = text; }  // textContent only: no HTML from the network
    return e;
  }

  var css = el("link", { rel: "stylesheet", href: new URL("/chat/widget.css", base).href });
  document.head.appendChild(css);
  var box = el("section", { "class": "hl-chat", "aria-labelledby": "hl-chat-title" });
  var head = el("header");
  var title = el("h2", { id: "hl-chat-title" });
  var exit = el("button", { type: "button", "class": "hl-exit" });
  var notSafe = el("button", { type: "button", "class": "hl-notsafe" });
  var leave = el("div", { "class": "hl-leave" });
  leave.appendChild(notSafe); leave.appendChild(exit);
  head.appendChild(title); head.appendChild(leave);
  var status = el("p", { "class": "hl-status", role: "status", "aria-live": "polite" });
  var hours = el("p", { "class": "hl-hours" });
  var emergency = el("p", { "class": "hl-emergency" });
  // The help directory (as the gateway's database keeps it): emergency and national services,
  // and those of a region the visitor picks; shown without starting a chat.
  var help = el("details", { "class": "hl-help" });
  var pre = el("form", { "class": "hl-pre" });
  var list = el("ol", { "class": "hl-log", role: "log", "aria-live": "polite" });
  var form = el("form", { "class": "hl-compose", hidden: "" });
  var input = el("textarea", { rows: "2", maxlength: "4000", id: "hl-chat-input" });
  var inputLabel = el("label", { "for": "hl-chat-input", "class": "hl-sr" });
  var send = el("button", { type: "submit" });
  form.appendChild(inputLabel); form.appendChild(input); form.appendChild(send);
  [head, status, hours, emergency, help, pre, list, form].forEach(function (n) { box.appendChild(n); });
  document.body.appendChild(box);

  function select(id, label, options, value) {
    var wrap = el("div", { "class": "hl-field" });
    var l = el("label", { "for": id }, label);
    var s = el("select", { id: id });
    options.forEach(function (o) {
      var opt = el("option", { value: o[0] }, o[1]);
      if (o[0] === value) { opt.selected = true; }
      s.appendChild(opt);
    });
    wrap.appendChild(l); wrap.appendChild(s);
    return wrap;
  }

  function named(names) { return (names && (names[lang] || names.en || names.ru)) || ""; }

  function renderTexts() {
    box.setAttribute("lang", lang);
    title.textContent = t("title");
    exit.textContent = t("exit");
    exit.setAttribute("title", t("exitHint"));
    exit.setAttribute("aria-label", t("exit") + ". " + t("exitHint"));
    notSafe.textContent = t("notSafe");
    notSafe.setAttribute("title", t("notSafeHint"));
    notSafe.setAttribute("aria-label", t("notSafe") + ". " + t("notSafeHint"));
    inputLabel.textContent = t("yourMessage");
    send.textContent = t("send");
    list.setAttribute("aria-label", t("messages"));
    emergency.textContent = t("emergency");
    renderStatus();
  }

  function entryText(e) {
    return [named(e.name) + (e.phone ? ": " + e.phone : ""), named(e.address), named(e.note), e.url || ""]
      .filter(Boolean).join(" · ");
  }

  function renderHelp() {
    var open = help.open, chosen = help.querySelector("#hl-help-region");
    var region = chosen ? chosen.value : "";
    help.textContent = "";
    if (!info || !info.directory) { return; }
    help.appendChild(el("summary", {}, t("help")));
    var d = info.directory, regions = d.regions || {};
    help.appendChild(select("hl-help-region", t("helpRegion"), [["", "—"]].concat(Object.keys(info.regions).map(function (k) {
      return [k, named(info.regions[k])];
    })), region));
    var ul = el("ul", { "class": "hl-directory" });
    var entries = (d.emergency || []).concat(region ? (regions[region] || []) : []);
    if (region && !(regions[region] || []).length) { ul.appendChild(el("li", { "class": "hl-none" }, t("noEntries"))); }
    entries.concat(d.national || []).forEach(function (e) {
      ul.appendChild(el("li", { "data-entry": e.id || "" }, entryText(e)));
    });
    help.appendChild(ul);
    help.open = open;
    help.querySelector("#hl-help-region").addEventListener("change", function () {
      renderHelp(); help.querySelector("#hl-help-region").focus();
    });
  }

  function renderPre() {
    renderHelp();
    pre.textContent = "";
    if (!info) { return; }
    pre.appendChild(el("p", {}, t("intro")));
    var none = ["", t("any")];
    if (!fixedLine) {
      pre.appendChild(select("hl-line", t("line"), Object.keys(info.lines).map(function (k) {
        return [k, info.lines[k].name];
      }), line || Object.keys(info.lines)[0]));
    }
    pre.appendChild(select("hl-language", t("language"), LANGS.filter(function (l) {
      return info.languages.indexOf(l) >= 0;
    }).map(function (l) { return [l, { ru: "Русский", be: "Беларуская", en: "English" }[l]]; }), lang));
    pre.appendChild(select("hl-region", t("region"), [none].concat(Object.keys(info.regions).map(function (k) {
      return [k, named(info.regions[k])];
    })), ""));
    var lineInfo = info.lines[currentLine()] || {};
    var topics = lineInfo.topics || {};
    pre.appendChild(select("hl-topic", t("topic"), [none].concat(Object.keys(topics).map(function (k) {
      return [k, named(topics[k])];
    })), ""));
    var buttons = el("div", { "class": "hl-buttons" });
    buttons.appendChild(el("button", { type: "submit", value: "start" }, t("start")));
    buttons.appendChild(el("button", { type: "button", "class": "hl-skip" }, t("skip")));
    pre.appendChild(buttons);
    pre.querySelector(".hl-skip").addEventListener("click", function () { begin(true); });
    var langSelect = pre.querySelector("#hl-language");
    langSelect.addEventListener("change", function () {
      lang = langSelect.value; renderTexts(); renderPre();
      pre.querySelector("#hl-language").focus();
    });
    var lineSelect = pre.querySelector("#hl-line");
    if (lineSelect) {
      lineSelect.addEventListener("change", function () {
        line = lineSelect.value; renderPre(); renderStatus();
        pre.querySelector("#hl-line").focus();
      });
    }
  }

  function currentLine() {
    return line || (info ? Object.keys(info.lines)[0] : null);
  }

  function renderStatus() {
    var li = info && info.lines[currentLine()];
    hours.textContent = li ? t("hours", li.hours) : "";
    var duty = onDuty === null ? (li ? li.on_duty : null) : onDuty;
    var parts = [];
    if (gone) { parts.push(t("ended")); }
    else if (socket === null && token) { parts.push(t("reconnecting")); }
    else if (duty === true) { parts.push(t("onDuty")); }
    else if (duty === false && li) { parts.push(t("offDuty", li.hours)); }
    if (!gone && position === 0) { parts.push(t("withConsultant")); }
    else if (!gone && typeof position === "number" && position > 0) { parts.push(t("position", { n: position })); }
    status.textContent = parts.join(" ");
  }

  function show(id, who, text) {
    if (id && shown[id]) { return null; }  // a resent or replayed message is shown once
    if (id) { shown[id] = true; }
    var item = el("li", { "class": "hl-" + who });
    item.appendChild(el("span", { "class": "hl-sr" }, t(who) + ": "));
    item.appendChild(el("span", { "class": "hl-text" }, text));
    list.appendChild(item);
    list.scrollTop = list.scrollHeight;
    return item;
  }

  // --- Quick exit -------------------------------------------------------------------------
  function forget() {
    token = null; pending = {}; shown = {}; info = null;
    // The widget stores nothing, but leaves nothing either should an older version have.
    try {
      [window.sessionStorage, window.localStorage].forEach(function (store) {
        for (var i = store.length - 1; i >= 0; i--) {
          var k = store.key(i);
          if (k && k.indexOf("hl-chat") === 0) { store.removeItem(k); }
        }
      });
    } catch (e) { /* storage may be blocked: then nothing was stored */ }
  }

  // reason: "not_safe" for "Not safe now" (the thread is marked "do not reply until they
  // write" and the supervisors are told), none for Quick exit. Either way the conversation
  // leaves the page at once.
  function quickExit(reason) {
    gone = true;
    clearTimeout(reconnectTimer); clearTimeout(startTimer); clearTimeout(pumpTimer);
    Object.keys(pending).forEach(function (id) { clearTimeout(pending[id].timer); });
    try {
      var end = reason ? { type: "end", reason: reason } : { type: "end" };
      if (socket) { socket.send(JSON.stringify(end)); socket.close(); }
    } catch (e) { /* leaving anyway */ }
    socket = null;
    forget();
    list.textContent = ""; input.value = "";
    box.remove();
    document.title = "";
    location.replace(exitUrl);  // replace: the page with the chat does not stay in history
  }
  exit.addEventListener("click", function () { quickExit(null); });
  notSafe.addEventListener("click", function () { quickExit("not_safe"); });
  var lastEsc = 0;
  document.addEventListener("keydown", function (ev) {
    if (ev.key !== "Escape") { return; }
    var now = Date.now();
    if (now - lastEsc < 1000) { quickExit(null); }
    lastEsc = now;
  }, true);

  // --- socket -----------------------------------------------------------------------------
  var startFrame = null;
  // Errors after which the same frame is worth sending again: the server could not take it
  // now (broker or database away, too many new chats at once or from this network), not
  // that it is wrong.
  var RESEND = { unavailable: true, not_accepted: true, busy: true, too_many_starts: true };

  function begin(skip) {
    var frame = { type: "start", line: currentLine() };
    if (!skip) {
      var v = function (id) { var n = pre.querySelector(id); return n && n.value ? n.value : null; };
      if (v("#hl-language")) { frame.language = v("#hl-language"); }
      if (v("#hl-region")) { frame.region = v("#hl-region"); }
      if (v("#hl-topic")) { frame.topic = v("#hl-topic"); }
    } else {
      frame.language = lang;
    }
    startFrame = frame;
    pre.hidden = true;
    form.hidden = false;
    input.focus();
    connect();
  }
  pre.addEventListener("submit", function (ev) { ev.preventDefault(); begin(false); });

  // Backoff with jitter, doubling from 1 s up to 30 s: many widgets do not all come back at
  // the same moment after an outage, and none gives up while the page is open.
  function backoff(tries) {
    return Math.min(MAX_BACKOFF, 1000 * Math.pow(2, Math.max(0, tries - 1))) * (0.5 + Math.random());
  }

  function enqueue(frame) {
    if (frame.type === "message" && sendQ.some(function (f) { return f.id === frame.id; })) { return; }
    sendQ.push(frame);
    pump();
  }

  function pump() {
    clearTimeout(pumpTimer);
    pumpTimer = null;
    if (!socket || socket.readyState !== 1) { return; }
    var now = Date.now();
    bucket = Math.min(SEND_BURST, bucket + (now - bucketAt) / 1000 * SEND_RATE);
    bucketAt = now;
    while (sendQ.length && bucket >= 1) {
      var frame = sendQ.shift();
      if (frame.type === "message" && !pending[frame.id]) { continue; }  // acked meanwhile
      socket.send(JSON.stringify(frame));
      bucket -= 1;
    }
    if (sendQ.length) { pumpTimer = setTimeout(pump, Math.ceil((1 - bucket) / SEND_RATE * 1000) + 10); }
  }

  function flush() {
    // Every message without an ack, oldest first, on the new session.
    Object.keys(pending).forEach(function (id) {
      clearTimeout(pending[id].timer); pending[id].timer = null;
      enqueue(pending[id].frame);
    });
  }

  function resendLater(id) {
    // The server could not accept this message now (broker or database away): send it again
    // after a backoff; one timer per message at a time, so a burst of errors costs one resend.
    var p = pending[id];
    if (!p || p.timer) { return; }
    p.tries += 1;
    p.timer = setTimeout(function () {
      p.timer = null;
      if (pending[id] && hasSession) { enqueue(p.frame); }
    }, backoff(p.tries));
  }

  function hello() {
    return token ? { type: "resume", token: token } : startFrame;
  }

  function startLater(ws) {
    // No session yet (the database is away, or the server is busy): ask again with backoff
    // on the same socket until one is given; no reload needed.
    clearTimeout(startTimer);
    startTries += 1;
    startTimer = setTimeout(function () {
      if (socket === ws && !hasSession) { enqueue(hello()); }
    }, backoff(startTries));
  }

  function connect() {
    if (gone) { return; }
    var ws = new WebSocket(wsUrl.href);
    socket = ws;
    hasSession = false;
    sendQ = [];
    status.textContent = t("connecting");
    ws.onopen = function () {
      if (socket !== ws) { return; }
      enqueue(hello());
    };
    ws.onmessage = function (ev) {
      var f;
      try { f = JSON.parse(ev.data); } catch (e) { return; }
      if (f.type === "session") {
        token = f.token; retry = 0; startTries = 0; hasSession = true; onDuty = f.on_duty; position = f.position;
        clearTimeout(startTimer);
        renderStatus();
        flush();
      } else if (f.type === "ack") {
        var p = pending[f.id];
        if (p) {
          clearTimeout(p.timer);
          p.item.classList.remove("hl-pending"); p.item.removeAttribute("data-state"); delete pending[f.id];
          // Some characters were broken (the server replaced them): say so under the message,
          // in the conversation, without alarm. The consultant got the rest.
          if (f.repaired) {
            var note = el("li", { "class": "hl-notice" }, t("unreadable"));
            p.item.after(note);
            list.scrollTop = list.scrollHeight;
          }
        }
      } else if (f.type === "message") {
        show(f.message_id, f.from === "bot" ? "bot" : "consultant", f.text);
      } else if (f.type === "position") {
        position = f.position; renderStatus();
      } else if (f.type === "closed") {
        position = null; renderStatus();
        status.textContent = t("closed");
      } else if (f.type === "error") {
        if (f.id && pending[f.id] && RESEND[f.code]) {
          resendLater(f.id);
          status.textContent = t("unavailable");
        } else if (f.code === "unknown_session") {
          // The server no longer knows this chat (ended or expired): begin a new one rather
          // than lose the text; the messages without an ack go to the new chat.
          token = null; hasSession = false;
          enqueue(startFrame);
        } else if (!hasSession && RESEND[f.code]) {
          startLater(ws);
          status.textContent = t("unavailable");
        } else if (f.code !== "rate_limited") {
          status.textContent = f.detail;
        }
      }
    };
    ws.onclose = function () {
      if (socket !== ws) { return; }
      socket = null;
      hasSession = false;
      sendQ = [];
      clearTimeout(startTimer);
      if (gone) { return; }
      renderStatus();
      retry = Math.min(retry + 1, 6);
      // Back off with jitter so many widgets do not return all at once after a restart.
      reconnectTimer = setTimeout(connect, 300 * Math.pow(2, retry - 1) * (0.5 + Math.random()));
    };
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var text = input.value.trim();
    if (!text) { return; }
    counter += 1;
    var id = (window.crypto && crypto.randomUUID) ? crypto.randomUUID() : Date.now() + "-" + counter;
    var frame = { type: "message", id: id, text: text };
    var item = show("me-" + id, "you", text);
    item.classList.add("hl-pending");
    item.setAttribute("data-state", t("notSent"));
    pending[id] = { frame: frame, item: item, tries: 0, timer: null };
    input.value = "";
    if (hasSession) { enqueue(frame); }  // else sent when the session is (re)established
  });
  input.addEventListener("keydown", function (ev) {
    if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); form.requestSubmit(); }
  });

  function load() {
    fetch(new URL("/chat/info", base).href, { credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer" })
      .then(function (r) { return r.json(); })
      .then(function (i) {
        if (gone) { return; }
        info = i;
        if (fixedLine && !info.lines[fixedLine]) { fixedLine = null; line = null; }
        renderPre(); renderStatus();
      })
      .catch(function () { status.textContent = t("reconnecting"); setTimeout(load, 3000); });
  }
  renderTexts();
  load();
}());
