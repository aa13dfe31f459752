// A shift in the console (services/store/shift.py, docs/console.md "A shift"): the urgent mark
// and the hand-off of a thread to a colleague beside the open thread; offers made to me, live,
// above the work area; my availability as the server says it (a log-in makes one available, a
// console back from being gone too). Same safety rule as console.js: every text from the
// network goes in with textContent.
(function () {
  "use strict";

  var I18N = {
    en: {
      shift: "Urgency and hand-off", mark_urgent: "Mark urgent", unmark_urgent: "Not urgent",
      urgent_by: "Marked urgent by", hand_to: "Hand to a colleague", offer: "Offer",
      nobody: "No colleague on this line", offered_to: "Offered to", until: "until", withdraw: "Withdraw offer",
      offered_by: "Offered to you by", accept: "Accept", decline: "Decline", open: "Open",
      offers: "Offered to you", available: "available", away: "away", offline: "offline"
    },
    ru: {
      shift: "Срочность и передача", mark_urgent: "Отметить как срочное", unmark_urgent: "Не срочное",
      urgent_by: "Срочным отметил(а)", hand_to: "Передать коллеге", offer: "Предложить",
      nobody: "На этой линии нет коллег", offered_to: "Предложено", until: "до", withdraw: "Отозвать предложение",
      offered_by: "Вам предлагает", accept: "Принять", decline: "Отказаться", open: "Открыть",
      offers: "Предложено вам", available: "на связи", away: "отошла(ёл)", offline: "не в сети"
    },
    be: {
      shift: "Тэрміновасць і перадача", mark_urgent: "Пазначыць як тэрміновае", unmark_urgent: "Не тэрміновае",
      urgent_by: "Тэрміновым пазначыў(ла)", hand_to: "Перадаць калегу", offer: "Прапанаваць",
      nobody: "На гэтай лініі няма калег", offered_to: "Прапанавана", until: "да", withdraw: "Адклікаць прапанову",
      offered_by: "Вам прапануе", accept: "Прыняць", decline: "Адмовіцца", open: "Адкрыць",
      offers: "Прапанавана вам", available: "на сувязі", away: "адышла(ёў)", offline: "не ў сетцы"
    }
  };
  var kit = null;
  var choice = {}; // thread id -> the colleague chosen, kept across re-draws by live events

  function t(key) {
    var lang = kit ? kit.lang() : "en";
    return (I18N[lang] && I18N[lang][key]) || I18N.en[key] || key;
  }

  function time(iso) {
    return new Date(iso).toLocaleTimeString(kit.lang(), { hour: "2-digit", minute: "2-digit" });
  }

  function after() { kit.reopen(); loadOffers(); }

  // Beside the open thread: the urgent mark, and the hand-off as it stands for me.
  function panel(th) {
    var el = kit.el, me = kit.me() || {};
    var path = "/api/threads/" + encodeURIComponent(th.id);
    var box = el("section", { "id": "shift-panel", "aria-label": t("shift") });
    if (th.status === "closed") { return box; }
    var urgent = el("button", { "type": "button", "id": "urgent-toggle" }, t(th.urgent_mark ? "unmark_urgent" : "mark_urgent"));
    urgent.addEventListener("click", function () {
      kit.api("POST", path + "/urgent", { urgent: !th.urgent_mark }).then(after).catch(kit.showError);
    });
    var cfg = kit.config();
    var urgentNow = cfg && th.priority >= cfg.urgent_priority;
    if (th.urgent_mark || !urgentNow) { box.appendChild(urgent); }
    if (th.urgent_mark) {
      box.appendChild(el("span", { "class": "meta", "id": "urgent-by" }, " " + t("urgent_by") + " " + th.urgent_mark.by));
    }
    var offer = th.status === "active" ? th.handoff : null;
    if (offer && offer.to === me.login) {
      box.appendChild(offerControls(th.id, offer));
    } else if (offer && th.assignee === me.login) {
      var p = el("p", { "id": "handoff-pending", "role": "status" },
        t("offered_to") + " " + offer.to + " " + t("until") + " " + time(offer.until) + " ");
      var withdraw = el("button", { "type": "button" }, t("withdraw"));
      withdraw.addEventListener("click", function () { kit.api("POST", path + "/handoff/decline").then(after).catch(kit.showError); });
      p.appendChild(withdraw);
      box.appendChild(p);
    } else if (th.status === "active" && th.assignee === me.login && me.organisation) {
      box.appendChild(handoffForm(th, path));
    }
    return box;
  }

  function handoffForm(th, path) {
    var el = kit.el;
    var form = el("form", { "id": "handoff-form" });
    var sel = el("select", { "name": "to", "id": "handoff-to" });
    var label = el("label", {}); label.appendChild(el("span", {}, t("hand_to") + " ")); label.appendChild(sel);
    form.appendChild(label);
    var go = el("button", { "type": "submit", "disabled": "" }, t("offer"));
    form.appendChild(go);
    kit.api("GET", path + "/colleagues").then(function (people) {
      if (!people.length) { sel.appendChild(el("option", { "value": "" }, t("nobody"))); return; }
      people.forEach(function (c) {
        sel.appendChild(el("option", { "value": c.login }, c.name + " (" + t(c.status) + ")"));
      });
      if (choice[th.id]) { sel.value = choice[th.id]; }
      go.removeAttribute("disabled");
    }).catch(function () {});
    sel.addEventListener("change", function () { choice[th.id] = sel.value; });
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      kit.api("POST", path + "/handoff", { to: sel.value }).then(function () { delete choice[th.id]; after(); }).catch(kit.showError);
    });
    return form;
  }

  function offerControls(id, offer) {
    var el = kit.el, path = "/api/threads/" + encodeURIComponent(id) + "/handoff";
    var p = el("p", { "class": "handoff-offer", "data-thread": id, "role": "status" },
      t("offered_by") + " " + offer.from + " (" + t("until") + " " + time(offer.until) + ") ");
    var yes = el("button", { "type": "button", "class": "handoff-accept" }, t("accept"));
    yes.addEventListener("click", function () {
      kit.api("POST", path + "/accept").then(function () { kit.openThread(id); loadOffers(); }).catch(kit.showError);
    });
    var no = el("button", { "type": "button", "class": "handoff-decline" }, t("decline"));
    no.addEventListener("click", function () { kit.api("POST", path + "/decline").then(after).catch(kit.showError); });
    p.appendChild(yes); p.appendChild(el("span", {}, " ")); p.appendChild(no);
    return p;
  }

  // Offers made to me, above the work area, whichever thread is open.
  function loadOffers() {
    if (!kit || !kit.me()) { return; }
    kit.api("GET", "/api/handoffs").then(function (threads) {
      var box = document.getElementById("handoffs");
      if (!box) { return; }
      box.textContent = "";
      box.hidden = !threads.length;
      if (!threads.length) { return; }
      box.appendChild(kit.el("h2", {}, t("offers")));
      threads.forEach(function (th) {
        var row = offerControls(th.id, th.handoff);
        var open = kit.el("button", { "type": "button" }, t("open"));
        open.addEventListener("click", function () { kit.openThread(th.id); });
        row.insertBefore(kit.el("span", {}, "[" + th.channel + "] " + (th.subject || "chat") + " · "), row.firstChild);
        row.appendChild(kit.el("span", {}, " ")); row.appendChild(open);
        box.appendChild(row);
      });
    }).catch(function () {});
  }

  function showStatus() {
    kit.api("GET", "/api/me").then(function (r) {
      var sel = document.getElementById("availability");
      if (sel && r.consultant.status) { sel.value = r.consultant.status; }
    }).catch(function () {});
  }

  function start(k) {
    kit = k;
    if (!document.getElementById("handoffs")) {
      var box = kit.el("section", { "id": "handoffs", "aria-live": "polite" });
      box.hidden = true;
      var work = document.getElementById("work");
      work.parentNode.insertBefore(box, work);
    }
    loadOffers(); showStatus();
  }

  // Live events: an offer made, taken, declined or lapsed redraws the offers; a socket that
  // (re)opens may have brought me back from being away.
  function event(f) {
    if (!kit) { return; }
    if (f === null) { showStatus(); loadOffers(); return; }
    if (/^Handoff/.test(f.name)) { loadOffers(); }
  }

  window.HotlineShift = { start: start, panel: panel, event: event };
}());
