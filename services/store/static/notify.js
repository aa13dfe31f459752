// Notifications for a consultant who is not looking at the console (docs/console.md,
// "Notifications"): opt-in, per browser. A sound and a desktop notification (the browser's
// Notification API) when a chat starts in one of my queues, when a crisis arrives or waits too
// long, and when a client answers in a thread I hold; and the counts in the tab's title: people
// waiting in my queues and my threads with an answer I have not opened.
//
// A notification says what happened and where, never who or what they wrote: it may show on a
// locked screen or a shared desktop. The console (console.js) calls HotlineNotify.event with each
// live event, .queues after each load of the queues, .opened when a thread is opened.
(function () {
  "use strict";
  var KEY = "hl_notify";
  var I18N = {
    en: {
      notify: "Notifications", on: "on", off: "off",
      new_chat: "A chat is waiting", crisis: "A crisis is waiting", answered: "The client answered",
      blocked: "The browser blocks notifications for this console: allow them in its site settings."
    },
    ru: {
      notify: "Уведомления", on: "вкл.", off: "выкл.",
      new_chat: "Ждёт чат", crisis: "Ждёт кризисное обращение", answered: "Клиент ответил",
      blocked: "Браузер запрещает уведомления для этой консоли: разрешите их в настройках сайта."
    },
    be: {
      notify: "Апавяшчэнні", on: "укл.", off: "выкл.",
      new_chat: "Чакае чат", crisis: "Чакае крызісная размова", answered: "Кліент адказаў",
      blocked: "Браўзер забараняе апавяшчэнні для гэтай кансолі: дазвольце іх у наладах сайта."
    }
  };
  var enabled = localStorage.getItem(KEY) === "on";
  var lang = "en", me = null, waiting = 0, baseTitle = document.title;
  var unread = {};  // ids of threads I hold with a client's answer I have not opened
  var audio = null;

  function t(key) { return (I18N[lang] && I18N[lang][key]) || I18N.en[key]; }
  function button() { return document.getElementById("notify-toggle"); }

  function render() {
    var b = button();
    if (b) {
      b.textContent = t("notify") + ": " + t(enabled ? "on" : "off");
      b.setAttribute("aria-pressed", String(enabled));
    }
    var count = waiting + Object.keys(unread).length;
    document.title = (count ? "(" + count + ") " : "") + baseTitle;
  }

  // A short tone made on the spot: no file to fetch. The audio context is made in the click
  // that turns notifications on (browsers let a page play sound only after a gesture).
  function beep() {
    if (!audio) { return; }
    var osc = audio.createOscillator(), gain = audio.createGain();
    osc.frequency.value = 880;
    gain.gain.value = 0.1;
    osc.connect(gain); gain.connect(audio.destination);
    osc.start(); osc.stop(audio.currentTime + 0.2);
  }

  function tell(kind, ev, where) {
    if (!enabled) { return; }
    beep();
    if (!("Notification" in window) || Notification.permission !== "granted") { return; }
    // One notification per thread and kind: a repeated event replaces it, never stacks.
    var n = new Notification(t(kind), { body: where, tag: kind + ":" + ev.thread_id, lang: lang });
    n.onclick = function () {
      window.focus();
      if (window.HotlineNotify.open) { window.HotlineNotify.open(ev.thread_id); }
      n.close();
    };
  }

  window.HotlineNotify = {
    open: null,  // set by the console: opens a thread
    language: function (l) { lang = I18N[l] ? l : "en"; render(); },
    user: function (u) { me = u; unread = {}; render(); },
    // Titles of queues, by name, for the body of a notification (set by the console).
    where: function (ev) { return ev.queue || ""; },
    queues: function (list) {
      waiting = 0;
      (list || []).forEach(function (q) { waiting += q.waiting || 0; });
      render();
    },
    opened: function (threadId) {
      if (unread[threadId]) { delete unread[threadId]; render(); }
    },
    event: function (ev) {
      if (!me || !ev) { return; }
      var where = window.HotlineNotify.where(ev);
      if (ev.name === "ThreadQueued" && ev.urgent) {
        tell("crisis", ev, where);
      } else if (ev.name === "ThreadQueued" && (ev.channel === "chat" || ev.channel === "telegram")) {
        tell("new_chat", ev, where);
      } else if (ev.name === "CrisisEscalated") {
        tell("crisis", ev, where);
      } else if (ev.name === "MessageReceived" && ev.assignee === me.login) {
        unread[ev.thread_id] = true;
        render();
        tell("answered", ev, where);
      }
    },
    init: function () {
      var b = button();
      if (!b || b.getAttribute("data-ready")) { return; }
      b.setAttribute("data-ready", "1");
      b.hidden = false;
      function sound() {
        var Ctx = window.AudioContext || window.webkitAudioContext;
        if (enabled && Ctx && !audio) { audio = new Ctx(); }
      }
      // Turned on in an earlier visit: the sound needs this visit's first click.
      document.addEventListener("click", sound, { once: true, capture: true });
      b.addEventListener("click", function () {
        enabled = !enabled;
        localStorage.setItem(KEY, enabled ? "on" : "off");
        if (enabled) {
          sound();
          if ("Notification" in window && Notification.permission === "default") {
            Notification.requestPermission().then(render);
          } else if ("Notification" in window && Notification.permission === "denied") {
            var alerts = document.getElementById("alerts");
            if (alerts) { alerts.hidden = false; alerts.textContent = t("blocked"); }
          }
        }
        render();
      });
      render();
    }
  };
}());
