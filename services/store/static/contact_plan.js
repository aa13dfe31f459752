// The client's safe-contact plan beside the open thread (GET/PUT /api/threads/{id}/contact-plan,
// conversations/contact_plan.py), and a held reply's reason with its Cancel control
// (POST /api/threads/{id}/messages/{message}/cancel). Same safety rule as console.js: every text
// from the network goes in with textContent.
(function () {
  "use strict";

  var I18N = {
    en: {
      plan: "Safe contact", scope_client: "For this person, in all their conversations.",
      scope_thread: "For this conversation (who this is is not known).", channels: "Reply only by",
      quiet: "Quiet hours (line's time)", from: "from", to: "to", write_first: "Only answer when they write first",
      sender_name: "Neutral sender name (e-mail)", subject: "Neutral subject (e-mail)", save: "Save plan",
      set_by: "Recorded by", none: "No plan recorded: replies go at once.", held: "Held", cancel: "Cancel reply",
      email: "e-mail", chat: "web chat", telegram: "Telegram"
    },
    ru: {
      plan: "Безопасный контакт", scope_client: "Для этого человека, во всех его обращениях.",
      scope_thread: "Для этого обращения (кто это, неизвестно).", channels: "Отвечать только через",
      quiet: "Тихие часы (время линии)", from: "с", to: "до", write_first: "Отвечать, только когда клиент напишет сам",
      sender_name: "Нейтральное имя отправителя (почта)", subject: "Нейтральная тема (почта)", save: "Сохранить план",
      set_by: "Записал(а)", none: "План не записан: ответы уходят сразу.", held: "Задержан", cancel: "Отменить ответ",
      email: "почта", chat: "веб-чат", telegram: "Telegram"
    },
    be: {
      plan: "Бяспечны кантакт", scope_client: "Для гэтага чалавека, ва ўсіх яго размовах.",
      scope_thread: "Для гэтай размовы (хто гэта, невядома).", channels: "Адказваць толькі праз",
      quiet: "Ціхія гадзіны (час лініі)", from: "з", to: "да", write_first: "Адказваць, толькі калі кліент напіша сам",
      sender_name: "Нейтральнае імя адпраўніка (пошта)", subject: "Нейтральная тэма (пошта)", save: "Захаваць план",
      set_by: "Запісаў(-ла)", none: "План не запісаны: адказы адыходзяць адразу.", held: "Затрыманы", cancel: "Адмяніць адказ",
      email: "пошта", chat: "вэб-чат", telegram: "Telegram"
    }
  };
  var CHANNELS = ["email", "chat", "telegram"];
  var drafts = {}; // thread id -> the plan as being edited, kept across re-draws by live events

  function tr(kit) {
    var lang = kit.lang();
    return function (key) { return (I18N[lang] && I18N[lang][key]) || I18N.en[key]; };
  }

  function hhmm(value) { return value ? String(value).slice(0, 5) : ""; }

  function panel(th, kit) {
    var t = tr(kit), el = kit.el, path = "/api/threads/" + encodeURIComponent(th.id) + "/contact-plan";
    var box = el("details", { "id": "contact-plan" });
    box.appendChild(el("summary", {}, t("plan")));
    var about = el("p", { "class": "meta", "id": "contact-plan-about" }, "…");
    box.appendChild(about);
    var form = el("form", { "id": "contact-plan-form" });
    box.appendChild(form);
    kit.api("GET", path).then(function (view) {
      var plan = view.plan;
      if (plan) { box.setAttribute("open", ""); }
      about.textContent = t(view.scope === "client" ? "scope_client" : "scope_thread") + " " +
        (plan ? t("set_by") + " " + view.set_by + " · " + new Date(view.set_at).toLocaleString(kit.lang()) : t("none"));
      fill(form, th, drafts[th.id] || plan || {}, kit, t, path);
    }).catch(function () { about.textContent = ""; });
    return box;
  }

  function fill(form, th, plan, kit, t, path) {
    var el = kit.el;
    var remember = function () { drafts[th.id] = read(form); };
    var fs = el("fieldset", {});
    fs.appendChild(el("legend", {}, t("channels")));
    CHANNELS.forEach(function (ch) {
      var box = el("input", { "type": "checkbox", "name": "channel", "value": ch });
      box.checked = !plan.channels || plan.channels.indexOf(ch) >= 0;
      var l = el("label", {}); l.appendChild(box); l.appendChild(el("span", {}, " " + t(ch)));
      fs.appendChild(l);
    });
    form.appendChild(fs);
    var quiet = plan.quiet_hours || {};
    var q = el("fieldset", {});
    q.appendChild(el("legend", {}, t("quiet")));
    [["from", quiet.from], ["to", quiet.to]].forEach(function (pair) {
      var input = el("input", { "type": "time", "name": "quiet_" + pair[0], "aria-label": t("quiet") + " " + t(pair[0]) });
      input.value = hhmm(pair[1]);
      var l = el("label", {}); l.appendChild(el("span", {}, t(pair[0]) + " ")); l.appendChild(input);
      q.appendChild(l);
    });
    form.appendChild(q);
    var wf = el("input", { "type": "checkbox", "name": "write_first" });
    wf.checked = !!plan.write_first;
    var wl = el("label", {}); wl.appendChild(wf); wl.appendChild(el("span", {}, " " + t("write_first")));
    form.appendChild(wl);
    ["sender_name", "subject"].forEach(function (name) {
      var input = el("input", { "name": name, "maxlength": name === "subject" ? "120" : "80" });
      input.value = plan[name] || "";
      var l = el("label", {}); l.appendChild(el("span", {}, t(name) + " ")); l.appendChild(input);
      form.appendChild(l);
    });
    form.appendChild(el("button", { "type": "submit" }, t("save")));
    form.addEventListener("input", remember);
    form.addEventListener("change", remember);
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      kit.api("PUT", path, read(form)).then(function () { delete drafts[th.id]; kit.reopen(); }).catch(kit.showError);
    });
  }

  // The form as the API takes it: every channel ticked is "any channel" (null).
  function read(form) {
    var ticked = Array.prototype.filter.call(form.querySelectorAll("input[name=channel]"), function (c) { return c.checked; })
      .map(function (c) { return c.value; });
    var from = form.querySelector("input[name=quiet_from]").value, to = form.querySelector("input[name=quiet_to]").value;
    var text = function (name) { var v = form.querySelector("input[name=" + name + "]").value.trim(); return v || null; };
    return {
      channels: ticked.length === CHANNELS.length ? null : ticked,
      quiet_hours: from && to ? { from: from, to: to } : null,
      write_first: form.querySelector("input[name=write_first]").checked,
      sender_name: text("sender_name"),
      subject: text("subject")
    };
  }

  // A reply the plan holds: why, and the control that cancels it.
  function held(m, threadId, kit) {
    var t = tr(kit), el = kit.el;
    var p = el("p", { "class": "held-reason", "role": "status" }, t("held") + ": " + (m.delivery.detail || ""));
    var cancel = el("button", { "type": "button", "class": "cancel-held" }, t("cancel"));
    cancel.addEventListener("click", function () {
      kit.api("POST", "/api/threads/" + encodeURIComponent(threadId) + "/messages/" + encodeURIComponent(m.id) + "/cancel")
        .then(kit.reopen).catch(kit.showError);
    });
    p.appendChild(el("span", {}, " "));
    p.appendChild(cancel);
    return p;
  }

  window.HotlineContactPlan = { panel: panel, held: held };
}());
