// Keyboard shortcuts of the console (docs/console.md, "Keyboard shortcuts"), and the list of
// them, opened by "?" or the header's button.
//
// Chosen not to fight the browser or a screen reader: every action is Alt + a letter that no
// browser menu uses (Alt+F/E/D/V/S/B/T/H are Chromium's and Firefox's), read by its physical key
// (KeyboardEvent.code), so it works in a Cyrillic layout too; Ctrl+Alt (AltGr) is left to the
// keyboard. The one single-character shortcut, "?", acts only when the focus is not in a field,
// so a "?" typed in a reply is a "?". While a dialog (the phone-call form) is open, none acts.
(function () {
  "use strict";

  var I18N = {
    en: {
      open: "Keyboard shortcuts", title: "Keyboard shortcuts", keys: "Keys", action: "What it does",
      close: "Close", next: "Next: take the next waiting conversation of the queue",
      reply: "Go to the reply box of the open conversation", send: "Send the reply (in the reply box)",
      release: "Release: give the open conversation back to its queue", queues: "Go to the list of queues",
      find: "Find a record (open or close the panel)", notify: "Notifications on or off",
      help: "This list (when not typing in a field)",
      escape: "Close this list, the search panel or the phone-call form",
      layout: "The letters are those of a Latin keyboard: the shortcuts work in any keyboard layout."
    },
    ru: {
      open: "Сочетания клавиш", title: "Сочетания клавиш", keys: "Клавиши", action: "Что делает",
      close: "Закрыть", next: "Следующий: взять следующее ожидающее обращение очереди",
      reply: "Перейти к полю ответа открытого обращения", send: "Отправить ответ (в поле ответа)",
      release: "Вернуть открытое обращение в очередь", queues: "Перейти к списку очередей",
      find: "Поиск записи (открыть или закрыть панель)", notify: "Включить или выключить уведомления",
      help: "Этот список (когда курсор не в поле ввода)",
      escape: "Закрыть этот список, панель поиска или форму звонка",
      layout: "Буквы указаны по латинской раскладке: сочетания работают при любой раскладке."
    },
    be: {
      open: "Спалучэнні клавіш", title: "Спалучэнні клавіш", keys: "Клавішы", action: "Што робіць",
      close: "Закрыць", next: "Наступная: узяць наступную размову, якая чакае ў чарзе",
      reply: "Перайсці да поля адказу адкрытай размовы", send: "Адправіць адказ (у полі адказу)",
      release: "Вярнуць адкрытую размову ў чаргу", queues: "Перайсці да спісу чэргаў",
      find: "Пошук запісу (адкрыць або закрыць панэль)", notify: "Уключыць або выключыць апавяшчэнні",
      help: "Гэты спіс (калі курсор не ў полі ўводу)",
      escape: "Закрыць гэты спіс, панэль пошуку або форму званка",
      layout: "Літары пазначаны па лацінскай раскладцы: спалучэнні працуюць пры любой раскладцы."
    }
  };

  var $ = function (id) { return document.getElementById(id); };

  // A control of the console, pressed only when a person could press it now.
  function press(id) {
    var b = $(id);
    if (b && !b.hidden && !b.disabled && b.offsetParent !== null) { b.click(); }
  }
  function focusFirst(selectors) {
    for (var i = 0; i < selectors.length; i++) {
      var c = document.querySelector(selectors[i]);
      if (c && c.offsetParent !== null) { c.focus(); return; }
    }
  }

  // code: KeyboardEvent.code with Alt; null: handled elsewhere (listed only).
  var SHORTCUTS = [
    { keys: "Alt+N", code: "KeyN", what: "next", act: function () { press("next"); } },
    { keys: "Alt+R", code: "KeyR", what: "reply", act: function () { focusFirst(["#reply-form textarea", "#note-form textarea"]); } },
    { keys: "Ctrl+Enter", code: null, what: "send" },  // console.js: the reply box's own key
    { keys: "Alt+L", code: "KeyL", what: "release", act: function () { press("release"); } },
    { keys: "Alt+Q", code: "KeyQ", what: "queues", act: function () { focusFirst(["#queues button[aria-current=\"true\"]", "#queues button"]); } },
    { keys: "Alt+K", code: "KeyK", what: "find", act: function () { press("search-open"); } },
    { keys: "Alt+O", code: "KeyO", what: "notify", act: function () { press("notify-toggle"); } },
    { keys: "?", code: null, what: "help" },
    { keys: "Esc", code: null, what: "escape" }
  ];

  var lang = "en", dialog = null, back = null;
  function t(key) { return (I18N[lang] && I18N[lang][key]) || I18N.en[key]; }

  function loggedIn() { var app = $("app"); return !!app && !app.hidden; }

  function typing(target) {
    if (!target || !target.tagName) { return false; }
    var tag = target.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || target.isContentEditable;
  }

  function draw() {
    dialog.textContent = "";
    var h = document.createElement("h2");
    h.id = "shortcuts-title";
    h.textContent = t("title");
    dialog.appendChild(h);
    var table = document.createElement("table");
    table.id = "shortcuts-list";
    var head = table.createTHead().insertRow();
    [t("keys"), t("action")].forEach(function (text) {
      var th = document.createElement("th"); th.scope = "col"; th.textContent = text; head.appendChild(th);
    });
    var body = table.createTBody();
    SHORTCUTS.forEach(function (s) {
      var row = body.insertRow();
      row.setAttribute("data-keys", s.keys);
      var keys = row.insertCell(), kbd = document.createElement("kbd");
      kbd.textContent = s.keys; keys.appendChild(kbd);
      row.insertCell().textContent = t(s.what);
    });
    dialog.appendChild(table);
    var note = document.createElement("p");
    note.className = "meta";
    note.textContent = t("layout");
    dialog.appendChild(note);
    var close = document.createElement("button");
    close.type = "button"; close.id = "shortcuts-close"; close.textContent = t("close");
    close.addEventListener("click", function () { dialog.close(); });
    dialog.appendChild(close);
  }

  function open() {
    if (!dialog) {
      dialog = document.createElement("dialog");
      dialog.id = "shortcuts";
      dialog.setAttribute("aria-labelledby", "shortcuts-title");
      // Escape closes a modal dialog by itself; the focus goes back where it was either way.
      dialog.addEventListener("close", function () { if (back && back.focus) { back.focus(); } back = null; });
      document.body.appendChild(dialog);
    }
    if (dialog.open) { return; }
    back = document.activeElement;
    draw();
    dialog.showModal();
    $("shortcuts-close").focus();
  }

  document.addEventListener("keydown", function (ev) {
    if (!loggedIn() || ev.isComposing || document.querySelector("dialog[open]")) { return; }
    if (ev.key === "?" && !ev.altKey && !ev.ctrlKey && !ev.metaKey && !typing(ev.target)) {
      ev.preventDefault(); open(); return;
    }
    if (!ev.altKey || ev.ctrlKey || ev.metaKey || ev.shiftKey) { return; }
    var s = SHORTCUTS.filter(function (x) { return x.code && x.code === ev.code; })[0];
    if (s) { ev.preventDefault(); s.act(); }
  });

  function language(l) {
    lang = I18N[l] ? l : "en";
    var b = $("shortcuts-open");
    if (b) { b.textContent = t("open"); }
    if (dialog && dialog.open) { draw(); }
  }

  var opener = $("shortcuts-open");
  if (opener) { opener.addEventListener("click", open); }

  window.HotlineShortcuts = { language: language, open: open };
}());
