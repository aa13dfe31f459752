// Cases in the console (docs/cases.md, "In the console"):
// - beside a conversation, "Open a case": a kind of the thread's line, its intake questionnaire,
//   and the receipt (reference, role referred to, time to take it);
// - for specialists and supervisors, the Cases view: alerts (referrals nobody took in time,
//   follow-ups due), "my cases" overdue first, and one case to work on: take, refer, assistance
//   log, external referrals, follow-ups, notes, status.
// console.js hands over a small kit (api, el, pick, lang, me) and tells this file about log-in,
// the language switch and live events. Same safety rule as console.js: every text from the
// network goes into the page with textContent, never as HTML.
(function () {
  "use strict";

  var I18N = {
    en: {
      cases: "Cases", conversations: "Conversations", my_cases: "My cases", all_cases: "Cases of my lines",
      show: "Show", open_cases: "open cases", closed_cases: "closed cases", refresh: "Refresh",
      alerts: "Alerts", late_referrals: "Referrals nobody took in time", due_followups: "Follow-ups due",
      no_alerts: "No alerts.", no_cases: "No cases.", reference: "Case", kind: "Kind", status: "Status",
      referred_to: "Referred to", due: "Due", overdue: "overdue", take_by: "take by",
      followup_on: "follow-up", pick_case: "Pick a case from the list.",
      s_open: "open", s_active: "active", s_monitoring: "monitoring", s_closed: "closed",
      opened: "Opened", by: "by", held_by: "Held by", nobody: "nobody yet", taken_by: "taken by",
      take: "Take this case", intake: "Intake", referral: "Referral", refer_to: "Refer to",
      refer_due: "To be taken by (empty: the kind's time)", refer: "Refer", assistance: "Assistance given",
      service_kind: "Service", date: "Date", amount: "Amount", note: "Note", log_service: "Log service",
      none_yet: "None yet.", external: "Referrals to other services", directory_entry: "Referred to service",
      result: "Result", no_result: "no result yet", add_referral: "Log referral",
      result_of: "Referral", save_result: "Save result", followups: "Follow-ups", due_at: "Due on",
      add_followup: "Add follow-up", done: "Done", done_by: "done by", notes: "Notes", add_note: "Add note",
      change_status: "Change status", new_status: "New status", reason: "Close reason", history: "History",
      choose: "— choose —", missing: "Missing", invalid: "Not valid", open_case: "Open a case…",
      open_submit: "Open and refer", cancel: "Cancel", case_kind: "Kind of case", closed_reason: "closed",
      receipt: "Case {ref} opened: {kind}. Referred to {role}, to be taken by {due}.", alerts_n: "alerts",
      e_CaseOpened: "opened", e_CaseReferred: "referred", e_CaseTaken: "taken", e_CaseServiceLogged: "service logged",
      e_CaseExternalReferralMade: "referral to a service", e_CaseExternalReferralUpdated: "referral result",
      e_CaseFollowUpScheduled: "follow-up set", e_CaseFollowUpDone: "follow-up done", e_CaseNoteAdded: "note",
      e_CaseStatusChanged: "status changed", e_CaseReferralOverdue: "referral not taken in time",
      e_CaseFollowUpDue: "follow-up due"
    },
    ru: {
      cases: "Случаи", conversations: "Обращения", my_cases: "Мои случаи", all_cases: "Случаи моих линий",
      show: "Показать", open_cases: "открытые случаи", closed_cases: "закрытые случаи", refresh: "Обновить",
      alerts: "Сигналы", late_referrals: "Никто не принял вовремя", due_followups: "Пора проверить",
      no_alerts: "Сигналов нет.", no_cases: "Случаев нет.", reference: "Случай", kind: "Вид", status: "Статус",
      referred_to: "Передан", due: "Срок", overdue: "просрочено", take_by: "принять до",
      followup_on: "проверка", pick_case: "Выберите случай в списке.",
      s_open: "открыт", s_active: "в работе", s_monitoring: "мониторинг", s_closed: "закрыт",
      opened: "Открыт", by: "—", held_by: "Ведёт", nobody: "пока никто", taken_by: "принял(а)",
      take: "Принять случай", intake: "Первичная анкета", referral: "Передача", refer_to: "Передать",
      refer_due: "Принять до (пусто: срок для вида случая)", refer: "Передать", assistance: "Оказанная помощь",
      service_kind: "Услуга", date: "Дата", amount: "Сумма", note: "Примечание", log_service: "Записать услугу",
      none_yet: "Пока нет.", external: "Перенаправления в другие службы", directory_entry: "Служба",
      result: "Результат", no_result: "результата пока нет", add_referral: "Записать перенаправление",
      result_of: "Перенаправление", save_result: "Сохранить результат", followups: "Проверки", due_at: "Когда",
      add_followup: "Добавить проверку", done: "Выполнено", done_by: "выполнил(а)", notes: "Заметки",
      add_note: "Добавить заметку", change_status: "Изменить статус", new_status: "Новый статус",
      reason: "Причина закрытия", history: "История", choose: "— выберите —", missing: "Не заполнено",
      invalid: "Неверно", open_case: "Открыть случай…", open_submit: "Открыть и передать", cancel: "Отмена",
      case_kind: "Вид случая", closed_reason: "закрыт",
      receipt: "Открыт случай {ref}: {kind}. Передан: {role}, принять до {due}.", alerts_n: "сигналы",
      e_CaseOpened: "открыт", e_CaseReferred: "передан", e_CaseTaken: "принят", e_CaseServiceLogged: "услуга",
      e_CaseExternalReferralMade: "перенаправление", e_CaseExternalReferralUpdated: "результат перенаправления",
      e_CaseFollowUpScheduled: "назначена проверка", e_CaseFollowUpDone: "проверка выполнена",
      e_CaseNoteAdded: "заметка", e_CaseStatusChanged: "статус изменён",
      e_CaseReferralOverdue: "никто не принял вовремя", e_CaseFollowUpDue: "пора проверить"
    },
    be: {
      cases: "Справы", conversations: "Размовы", my_cases: "Мае справы", all_cases: "Справы маіх ліній",
      show: "Паказаць", open_cases: "адкрытыя справы", closed_cases: "закрытыя справы", refresh: "Абнавіць",
      alerts: "Сігналы", late_referrals: "Ніхто не прыняў своечасова", due_followups: "Пара праверыць",
      no_alerts: "Сігналаў няма.", no_cases: "Спраў няма.", reference: "Справа", kind: "Від", status: "Статус",
      referred_to: "Перададзена", due: "Тэрмін", overdue: "пратэрмінавана", take_by: "прыняць да",
      followup_on: "праверка", pick_case: "Выберыце справу ў спісе.",
      s_open: "адкрыта", s_active: "у рабоце", s_monitoring: "маніторынг", s_closed: "закрыта",
      opened: "Адкрыта", by: "—", held_by: "Вядзе", nobody: "пакуль ніхто", taken_by: "прыняў(-ла)",
      take: "Прыняць справу", intake: "Першасная анкета", referral: "Перадача", refer_to: "Перадаць",
      refer_due: "Прыняць да (пуста: тэрмін для віду справы)", refer: "Перадаць", assistance: "Аказаная дапамога",
      service_kind: "Паслуга", date: "Дата", amount: "Сума", note: "Заўвага", log_service: "Запісаць паслугу",
      none_yet: "Пакуль няма.", external: "Перанакіраванні ў іншыя службы", directory_entry: "Служба",
      result: "Вынік", no_result: "выніку пакуль няма", add_referral: "Запісаць перанакіраванне",
      result_of: "Перанакіраванне", save_result: "Захаваць вынік", followups: "Праверкі", due_at: "Калі",
      add_followup: "Дадаць праверку", done: "Выканана", done_by: "выканаў(-ла)", notes: "Нататкі",
      add_note: "Дадаць нататку", change_status: "Змяніць статус", new_status: "Новы статус",
      reason: "Прычына закрыцця", history: "Гісторыя", choose: "— выберыце —", missing: "Не запоўнена",
      invalid: "Няправільна", open_case: "Адкрыць справу…", open_submit: "Адкрыць і перадаць", cancel: "Скасаваць",
      case_kind: "Від справы", closed_reason: "закрыта",
      receipt: "Адкрыта справа {ref}: {kind}. Перададзена: {role}, прыняць да {due}.", alerts_n: "сігналы",
      e_CaseOpened: "адкрыта", e_CaseReferred: "перададзена", e_CaseTaken: "прынята", e_CaseServiceLogged: "паслуга",
      e_CaseExternalReferralMade: "перанакіраванне", e_CaseExternalReferralUpdated: "вынік перанакіравання",
      e_CaseFollowUpScheduled: "прызначана праверка", e_CaseFollowUpDone: "праверка выканана",
      e_CaseNoteAdded: "нататка", e_CaseStatusChanged: "статус зменены",
      e_CaseReferralOverdue: "ніхто не прыняў своечасова", e_CaseFollowUpDue: "пара праверыць"
    }
  };
  var SEES_CASES = ["specialist", "supervisor", "admin", "national_admin"];
  var SUPERVISING = ["supervisor", "admin", "national_admin"];
  // Where a case may go by "Change status" from each status (conversations/cases.py STATUS_MOVES).
  var MOVES = { open: ["closed"], active: ["monitoring", "closed"], monitoring: ["active", "closed"], closed: [] };

  var kit = null, settings = null, ready = null, started = false;
  var drafts = {};    // scope -> "form id|control name" -> value: kept while live updates redraw
  var receipts = {};  // thread id -> the receipts of cases opened from it in this session
  var opening = {};   // thread id -> true while its intake form is shown
  var view = { on: false, status: "open", caseId: null, list: [], alerts: null, kase: null, history: false };
  var $ = function (id) { return document.getElementById(id); };

  function t(key) {
    var lang = kit ? kit.lang() : "en";
    return (I18N[lang] && I18N[lang][key]) || I18N.en[key] || key;
  }
  function pick(labels, fallback) { return kit.pick(labels, fallback); }
  function el(tag, attrs, text) { return kit.el(tag, attrs, text); }
  function is(role, roles) { return roles.indexOf(role) >= 0; }
  function when(iso) {
    return iso ? new Date(iso).toLocaleString(kit.lang(), { dateStyle: "short", timeStyle: "short" }) : "";
  }
  function day(isoDate) {  // "2026-12-03": a calendar day, shown without moving it across time zones
    var p = String(isoDate || "").split("-").map(Number);
    return p.length === 3 ? new Date(p[0], p[1] - 1, p[2]).toLocaleDateString(kit.lang()) : String(isoDate || "");
  }
  function today() {
    var d = new Date(), two = function (n) { return (n < 10 ? "0" : "") + n; };
    return d.getFullYear() + "-" + two(d.getMonth() + 1) + "-" + two(d.getDate());
  }
  function moment(local) {  // a datetime-local or date value, read in the browser's time zone, as ISO 8601
    if (!local) { return null; }
    var p = local.split(/[-T:]/).map(Number);
    return new Date(p[0], p[1] - 1, p[2], p[3] || 0, p[4] || 0).toISOString();
  }
  function fill(template, values) {  // split and join: a "$" in a value is not a replacement pattern
    return Object.keys(values).reduce(function (out, k) { return out.split("{" + k + "}").join(values[k]); }, template);
  }
  function roleName(role) { return pick(settings && settings.referral_roles[role], role); }
  function kindName(kind) { var k = settings && settings.kinds[kind]; return pick(k && k.title, kind); }

  function labelled(text, control, required) {
    var l = el("label", {});
    l.appendChild(el("span", {}, text + (required ? " *" : "")));
    if (required) { control.setAttribute("aria-required", "true"); }
    l.appendChild(control);
    return l;
  }
  function select(name, options, blank) {  // options: [[value, label], ...]
    var s = el("select", { "name": name });
    if (blank) { s.appendChild(el("option", { "value": "" }, t("choose"))); }
    options.forEach(function (o) { s.appendChild(el("option", { "value": o[0] }, o[1])); });
    return s;
  }
  // A form's control by name (not form[name]: a control named "role" would lose to Element.role).
  function val(form, name) { var c = form.elements.namedItem(name); return c ? c.value : ""; }
  function button(text, attrs) { return el("button", Object.assign({ "type": "button" }, attrs || {}), text); }

  // A refused request, in the console's language: the fields the server names (422), else its words.
  function problemText(e, labelOf) {
    var p = (e && e.problem) || {};
    var names = function (list) { return list.map(labelOf).join(", "); };
    var parts = [];
    if (p.missing && p.missing.length) { parts.push(t("missing") + ": " + names(p.missing)); }
    if (p.invalid && p.invalid.length) { parts.push(t("invalid") + ": " + names(p.invalid)); }
    return parts.join(". ") || p.detail || p.title || (e && e.message) || "";
  }

  // --- drafts and focus: a live update redraws, and nothing typed or focused is lost ----------

  function keep(scope, root) {
    var d = drafts[scope] = drafts[scope] || {};
    root.querySelectorAll("input, select, textarea").forEach(function (c) {
      var name = c.getAttribute("name");
      if (!c.form || !c.form.id || !name) { return; }
      var key = c.form.id + "|" + name;
      if (Object.prototype.hasOwnProperty.call(d, key)) {
        if (c.type === "checkbox") { c.checked = d[key]; } else { c.value = d[key]; }
      }
      var save = function () { d[key] = c.type === "checkbox" ? c.checked : c.value; };
      c.addEventListener("input", save);
      c.addEventListener("change", save);
    });
  }
  function forget(scope, formId) {
    var d = drafts[scope] || {};
    Object.keys(d).forEach(function (k) { if (k.indexOf(formId + "|") === 0) { delete d[k]; } });
  }
  function focused(root) {
    var a = document.activeElement;
    if (!root || !a || a === root || !root.contains(a)) { return null; }
    return {
      id: a.id, form: a.form ? a.form.id : "", name: a.getAttribute("name") || "",
      key: a.getAttribute("data-focus") || "",
      start: typeof a.selectionStart === "number" ? a.selectionStart : null,
      end: typeof a.selectionEnd === "number" ? a.selectionEnd : null
    };
  }
  function refocus(root, was) {
    if (!was) { return false; }
    var found = (was.id && $(was.id)) || (was.key && root.querySelector("[data-focus=\"" + CSS.escape(was.key) + "\"]")) ||
      (was.form && was.name && root.querySelector("#" + CSS.escape(was.form) + " [name=\"" + CSS.escape(was.name) + "\"]"));
    if (!found || !root.contains(found) || found.offsetParent === null) { return false; }
    found.focus();
    if (was.start !== null && typeof found.setSelectionRange === "function") {
      try { found.setSelectionRange(was.start, was.end === null ? was.start : was.end); } catch (e) { /* not a text field */ }
    }
    return true;
  }

  // --- opening a case beside a conversation --------------------------------------------------

  // The control under a thread's actions. Open threads: the one who holds it (or a supervisor)
  // opens a case from its current consultation; closed ones: from the consultation that ended,
  // when it was a consultation (a contact without one opens no case).
  function opener(th) {
    var box = el("div", { "id": "case-open" });
    if (!ready) { return box; }  // not logged in yet
    ready.then(function () { fillOpener(box, th); }).catch(function () { /* no settings: no control */ });
    return box;
  }

  function kindsOf(line) {
    var kinds = (settings && settings.kinds) || {};
    return Object.keys(kinds).filter(function (k) { return kinds[k].lines.indexOf(line) >= 0; });
  }

  function fillOpener(box, th) {
    var me = kit.me();
    box.textContent = "";
    (receipts[th.id] || []).forEach(function (r, i) {
      var p = el("p", { "class": "case-receipt", "role": "status", "id": i ? "case-receipt-" + i : "case-receipt" },
        fill(t("receipt"), { ref: r.reference, kind: kindName(r.kind), role: roleName(r.referral.role), due: when(r.referral.due_at) }));
      box.appendChild(p);
    });
    var kinds = kindsOf(th.line);
    var may = th.status === "active" ? (th.assignee === me.login || is(me.role, SUPERVISING))
      : th.status === "closed" && !th.no_consultation_reason;
    if (!kinds.length || !may) { return; }
    if (!opening[th.id]) {
      var b = button(t("open_case"), { "id": "case-open-button" });
      b.addEventListener("click", function () {
        opening[th.id] = true; fillOpener(box, th);
        var first = box.querySelector("select"); if (first) { first.focus(); }
      });
      box.appendChild(b);
      return;
    }
    box.appendChild(intakeForm(box, th, kinds));
  }

  function intakeForm(box, th, kinds) {
    var scope = "thread:" + th.id;
    var form = el("form", { "id": "case-intake-form" });
    form.appendChild(el("h3", {}, t("open_case").replace("…", "")));
    var kindSel = select("kind", kinds.map(function (k) { return [k, kindName(k)]; }), kinds.length > 1);
    form.appendChild(labelled(t("case_kind"), kindSel, true));
    var questions = el("div", { "class": "case-questions" });
    form.appendChild(questions);
    var err = el("p", { "id": "case-open-error", "class": "error", "role": "alert" });
    form.appendChild(err);
    form.appendChild(el("button", { "type": "submit" }, t("open_submit")));
    var cancel = button(t("cancel"), { "id": "case-open-cancel" });
    cancel.addEventListener("click", function () {
      delete opening[th.id]; forget(scope, form.id); fillOpener(box, th);
      var again = $("case-open-button"); if (again) { again.focus(); }
    });
    form.appendChild(cancel);

    function spec() { return settings.kinds[kindSel.value] || null; }
    function drawQuestions() {
      questions.textContent = "";
      var k = spec();
      if (!k) { return; }
      Object.keys(k.intake).forEach(function (name) {
        var f = k.intake[name], required = k.required.indexOf(name) >= 0, label = pick(f.label, name);
        if (f.type === "choice" && f.multiple) {
          var fs = el("fieldset", { "data-field": name });
          fs.appendChild(el("legend", {}, label + (required ? " *" : "")));
          Object.keys(f.options).forEach(function (opt) {
            var cb = el("input", { "type": "checkbox", "name": "intake." + name + ":" + opt, "value": opt, "data-field": name });
            var l = el("label", { "class": "check" }); l.appendChild(cb); l.appendChild(el("span", {}, pick(f.options[opt], opt)));
            fs.appendChild(l);
          });
          questions.appendChild(fs);
          return;
        }
        var control;
        if (f.type === "choice") {
          control = select("intake." + name, Object.keys(f.options).map(function (o) { return [o, pick(f.options[o], o)]; }), true);
        } else if (f.type === "date") {
          control = el("input", { "type": "date", "name": "intake." + name, "max": today() });
        } else {
          control = el("textarea", { "name": "intake." + name, "class": "short", "maxlength": String(f.max_length) });
        }
        var wrap = labelled(label, control, required);
        wrap.setAttribute("data-field", name);
        questions.appendChild(wrap);
      });
      keep(scope, questions);
    }
    keep(scope, form);
    drawQuestions();
    kindSel.addEventListener("change", drawQuestions);

    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var k = spec(), intake = {};
      if (!k) { err.textContent = t("missing") + ": " + t("case_kind"); kindSel.focus(); return; }
      Object.keys(k.intake).forEach(function (name) {
        var f = k.intake[name];
        if (f.type === "choice" && f.multiple) {
          var vals = Array.prototype.filter.call(form.querySelectorAll("input[data-field=\"" + name + "\"]"), function (c) { return c.checked; })
            .map(function (c) { return c.value; });
          if (vals.length) { intake[name] = vals; }
        } else {
          var v = form.querySelector("[name=\"intake." + name + "\"]").value.trim();
          if (v) { intake[name] = v; }
        }
      });
      var n = (th.consultation && th.consultation.n) || 1;
      var body = th.status === "closed" ? { consultation: th.id + ":" + n } : { thread: th.id };
      body.kind = kindSel.value; body.intake = intake;
      kit.api("POST", "/api/cases", body).then(function (r) {
        (receipts[th.id] = receipts[th.id] || []).push(r);
        delete opening[th.id]; forget(scope, form.id);
        fillOpener(box, th);
        var shown = box.querySelectorAll(".case-receipt");
        if (shown.length) { shown[shown.length - 1].setAttribute("tabindex", "-1"); shown[shown.length - 1].focus(); }
      }).catch(function (e) {
        var p = e.problem || {}, bad = (p.missing || []).concat(p.invalid || []);
        err.textContent = problemText(e, function (n) {
          var name = n.replace(/^intake\./, "");
          return name === "kind" ? t("case_kind") : pick(k.intake[name] && k.intake[name].label, name);
        });
        questions.querySelectorAll("[data-field]").forEach(function (q) {
          if (q.tagName === "INPUT") { return; }
          q.classList.toggle("bad", bad.indexOf("intake." + q.getAttribute("data-field")) >= 0);
        });
      });
    });
    return form;
  }

  // --- the Cases view ---------------------------------------------------------------------------

  function start(k) {
    kit = k;
    ready = kit.api("GET", "/api/cases/settings").then(function (s) { settings = s; return s; });
    var me = kit.me(), toggle = $("cases-toggle");
    toggle.hidden = !is(me.role, SEES_CASES);
    if (toggle.hidden) { return; }
    if (!started) {
      started = true;
      toggle.addEventListener("click", function () { show(!view.on); });
    }
    // A specialist's work is cases: their console opens on them.
    show(me.role === "specialist");
  }

  function show(on) {
    view.on = on;
    $("cases").hidden = !on;
    $("work").hidden = on;
    $("cases-toggle").setAttribute("aria-pressed", String(on));
    relabel();
    refresh();
  }

  function relabel() {
    var toggle = $("cases-toggle"), count = view.alerts ? view.alerts.overdue_referrals.length + view.alerts.due_followups.length : 0;
    toggle.textContent = "";
    toggle.appendChild(el("span", {}, t(view.on ? "conversations" : "cases")));
    if (count) { toggle.appendChild(el("span", { "class": "case-badge", "title": t("alerts_n") }, " " + count)); }
  }

  function language() {
    if (!kit || $("cases-toggle").hidden) { return; }
    relabel();
    if (view.on) { render(); }
  }

  // Live events: a case event (or a reconnect, when events may have been missed) refreshes the
  // alerts, the list, and the open case if the event is about it. Bursts come at most 5 times a second.
  var pending = null, reloadCase = false, loading = null, queued = null;
  function event(f) {
    if (!kit || $("cases-toggle").hidden) { return; }
    if (f && !(f.data && f.data.case_id)) { return; }
    if (!f || f.data.case_id === view.caseId) { reloadCase = true; }
    if (pending) { return; }
    pending = setTimeout(function () { pending = null; refresh(); }, 200);
  }

  // One load at a time: a refresh asked for while one is under way runs once after it, so the
  // last answer drawn was asked for after the last change (two loads at once could finish in
  // either order and draw a case as it was before the change).
  function refresh() {
    if (!loading) {
      loading = load().then(function () { loading = null; });
      return loading;
    }
    if (!queued) {
      queued = loading.then(function () { queued = null; return refresh(); });
    }
    return queued;
  }

  function load() {
    var caseId = view.caseId, withCase = reloadCase || (caseId && (!view.kase || view.kase.id !== caseId));
    reloadCase = false;
    var asks = [kit.api("GET", "/api/cases/alerts"), ready];
    if (view.on) {
      asks.push(kit.api("GET", "/api/cases" + (view.status === "closed" ? "?status=closed" : "")));
      asks.push(withCase ? kit.api("GET", "/api/cases/" + encodeURIComponent(caseId)).catch(function (e) {
        if (e.problem && e.problem.status === 404) { return null; }
        throw e;
      }) : Promise.resolve(view.kase));
    }
    return Promise.all(asks).then(function (got) {
      view.alerts = got[0];
      relabel();
      if (!view.on) { return; }
      view.list = got[2];
      if (caseId === view.caseId) {  // else another case was picked meanwhile: the next load reads it
        view.kase = got[3];
        if (!got[3]) { view.caseId = null; }
      }
      render();
    }).catch(function (e) { showError(e); });
  }

  // The request fields the case routes name in a 422, by the labels of the forms.
  var FIELDS = { kind: "service_kind", date: "date", amount: "amount", note: "note", to: "directory_entry",
    at: "date", result: "result", due: "due_at", role: "refer_to", due_at: "refer_due", status: "new_status",
    reason: "reason", text: "note" };
  function showError(e) {
    var box = $("case-error");
    if (box && e && e.message !== "not logged in") {
      box.textContent = problemText(e, function (n) { return FIELDS[n] ? t(FIELDS[n]) : n; });
    }
  }

  function render() {
    var root = $("cases"), was = focused(root), me = kit.me();
    var out = document.createDocumentFragment();
    var head = el("div", { "class": "case-bar" });
    head.appendChild(el("h2", { "id": "cases-title" }, t(is(me.role, SUPERVISING) ? "all_cases" : "my_cases")));
    var filter = select("case-status", [["open", t("open_cases")], ["closed", t("closed_cases")]]);
    filter.id = "case-status-filter";
    filter.value = view.status;
    filter.addEventListener("change", function () { view.status = filter.value; refresh(); });
    head.appendChild(labelled(t("show"), filter));
    var again = button(t("refresh"), { "id": "case-refresh" });
    again.addEventListener("click", function () { reloadCase = true; refresh(); });
    head.appendChild(again);
    out.appendChild(head);
    out.appendChild(alertsBox());
    var cols = el("div", { "class": "case-cols" });
    cols.appendChild(listTable());
    cols.appendChild(caseView());
    out.appendChild(cols);
    root.textContent = "";
    root.appendChild(out);
    if (!refocus(root, was) && was && $("case-title")) { $("case-title").focus(); }
  }

  function openCase(id) {
    view.caseId = id; view.kase = null; view.history = false;
    refresh().then(function () { if ($("case-title")) { $("case-title").focus(); } });
  }

  function caseButton(c, text, key) {
    var b = button(text, { "data-case": c.id, "data-focus": key + ":" + c.id, "aria-current": String(c.id === view.caseId) });
    b.addEventListener("click", function () { openCase(c.id); });
    return b;
  }

  function dueText(c) {
    if (c.status === "open" && c.referral && !c.referral.taken_by) { return t("take_by") + " " + when(c.referral.due_at); }
    if (c.next_followup_at) { return t("followup_on") + " " + when(c.next_followup_at); }
    return "";
  }

  function alertsBox() {
    var a = view.alerts || { overdue_referrals: [], due_followups: [] };
    var box = el("section", { "id": "case-alerts", "aria-labelledby": "case-alerts-title" });
    box.appendChild(el("h3", { "id": "case-alerts-title" }, t("alerts")));
    if (!a.overdue_referrals.length && !a.due_followups.length) {
      box.appendChild(el("p", { "class": "meta" }, t("no_alerts")));
      return box;
    }
    var groups = [["late_referrals", "alerts-late", a.overdue_referrals.map(function (c) {
      return caseButton(c, [c.reference, kindName(c.kind), roleName(c.referral.role), t("take_by") + " " + when(c.referral.due_at)].join(" · "), "late");
    })], ["due_followups", "alerts-followups", a.due_followups.map(function (d) {
      return caseButton(d.case, [d.case.reference, kindName(d.case.kind), t("due_at") + " " + when(d.followup.due)].join(" · "), "due-" + d.followup.id);
    })]];
    groups.forEach(function (g) {
      if (!g[2].length) { return; }
      box.appendChild(el("h4", {}, t(g[0])));
      var ul = el("ul", { "id": g[1] });
      g[2].forEach(function (b) { var li = el("li", {}); li.appendChild(b); ul.appendChild(li); });
      box.appendChild(ul);
    });
    return box;
  }

  function listTable() {
    var box = el("div", { "class": "case-list" });
    if (!view.list.length) { box.appendChild(el("p", { "class": "meta", "id": "case-list-empty" }, t("no_cases"))); return box; }
    var table = el("table", { "id": "case-list", "aria-labelledby": "cases-title" });
    var tr = el("tr", {});
    ["reference", "kind", "status", "referred_to", "due"].forEach(function (k) { tr.appendChild(el("th", { "scope": "col" }, t(k))); });
    var thead = el("thead", {}); thead.appendChild(tr); table.appendChild(thead);
    var tbody = el("tbody", {});
    view.list.forEach(function (c) {
      var row = el("tr", { "data-case": c.id, "class": c.overdue ? "overdue" : "" });
      var first = el("td", {}); first.appendChild(caseButton(c, c.reference, "row")); row.appendChild(first);
      row.appendChild(el("td", {}, kindName(c.kind)));
      row.appendChild(el("td", {}, t("s_" + c.status) + (c.assignee ? " (" + c.assignee + ")" : "")));
      row.appendChild(el("td", {}, c.referral ? roleName(c.referral.role) : ""));
      var due = el("td", {}, dueText(c));
      if (c.overdue) { due.appendChild(el("strong", { "class": "overdue-mark" }, " " + t("overdue"))); }
      row.appendChild(due);
      tbody.appendChild(row);
    });
    table.appendChild(tbody);
    box.appendChild(table);
    return box;
  }

  // --- one case ---------------------------------------------------------------------------------

  function caseView() {
    var art = el("article", { "id": "case-view", "aria-labelledby": "case-title" });
    var c = view.kase;
    if (!c) { art.appendChild(el("p", { "class": "hint" }, t("pick_case"))); return art; }
    var me = kit.me(), supervising = is(me.role, SUPERVISING), closed = c.status === "closed";
    var scope = "case:" + c.id, path = "/api/cases/" + encodeURIComponent(c.id);
    art.appendChild(el("h3", { "id": "case-title", "tabindex": "-1" }, c.reference + " · " + kindName(c.kind)));
    var facts = [t("status") + ": " + t("s_" + c.status) + (c.close_reason ? " (" + pick(settings.close_reasons[c.close_reason], c.close_reason) + ")" : ""),
      t("opened") + " " + when(c.opened_at) + " · " + c.opened_by,
      t("held_by") + ": " + (c.assignee || t("nobody"))];
    art.appendChild(el("p", { "class": "meta", "id": "case-facts" }, facts.join(" · ")));
    art.appendChild(el("p", { "class": "error", "id": "case-error", "role": "alert" }));
    var err = function (e) { showError(e); };
    var act = function (method, suffix, body, formId) {
      return kit.api(method, path + suffix, body).then(function () {
        if (formId) { forget(scope, formId); }
        reloadCase = true;
        return refresh();
      }).catch(err);
    };

    var r = c.referral || {};
    var mayTake = !closed && c.status === "open" && !r.taken_by &&
      (supervising || (me.specialist_roles || []).indexOf(r.role) >= 0);
    if (mayTake) {
      var take = button(t("take"), { "id": "case-take" });
      take.addEventListener("click", function () { act("POST", "/take"); });
      art.appendChild(take);
    }

    var sections = el("div", { "class": "case-sections" });
    art.appendChild(sections);
    var section = function (key, id) {
      var s = el("section", { "aria-labelledby": id + "-title", "id": id });
      s.appendChild(el("h4", { "id": id + "-title" }, t(key)));
      sections.appendChild(s);
      return s;
    };
    var list = function (id, items, draw) {
      var ul = el("ul", { "id": id, "class": "case-items" });
      if (!items.length) { ul.appendChild(el("li", { "class": "meta" }, t("none_yet"))); }
      items.forEach(function (i) { ul.appendChild(draw(i)); });
      return ul;
    };
    var submitOn = function (form, text, send) {
      form.appendChild(el("button", { "type": "submit" }, text));
      form.addEventListener("submit", function (ev) { ev.preventDefault(); send(); });
      return form;
    };

    // Intake: each answer by its question's label, in the questionnaire's order and the console's language.
    var spec = settings.kinds[c.kind] || { intake: {} };
    var intake = section("intake", "case-intake");
    var dl = el("dl", {});
    var answered = c.intake || {};
    Object.keys(spec.intake).concat(Object.keys(answered).filter(function (n) { return !spec.intake[n]; })).forEach(function (name) {
      var f = spec.intake[name] || {}, value = answered[name];
      if (value === null || value === undefined) { return; }
      dl.appendChild(el("dt", {}, pick(f.label, name)));
      var shown = f.type === "date" ? day(value)
        : [].concat(value).map(function (v) { return f.options ? pick(f.options[v], v) : v; }).join(", ");
      dl.appendChild(el("dd", { "class": f.type === "text" ? "text" : "" }, shown));
    });
    intake.appendChild(dl);

    // Referral: to whom, by when, who took it; refer again to another role.
    var ref = section("referral", "case-referral");
    ref.appendChild(el("p", {}, roleName(r.role) + " · " + t("take_by") + " " + when(r.due_at) +
      (r.taken_by ? " · " + t("taken_by") + " " + r.taken_by + " " + when(r.taken_at) : "")));
    if (!closed) {
      var rf = el("form", { "id": "case-refer-form" });
      var roles = Object.keys(settings.referral_roles).map(function (k) { return [k, roleName(k)]; });
      rf.appendChild(labelled(t("refer_to"), select("role", roles, true), true));
      rf.appendChild(labelled(t("refer_due"), el("input", { "type": "datetime-local", "name": "due_at" })));
      ref.appendChild(submitOn(rf, t("refer"), function () {
        act("POST", "/refer", { role: val(rf, "role"), due_at: moment(val(rf, "due_at")) || undefined }, rf.id);
      }));
    }

    // Assistance log: each service given, with its date and, where the kind has one, an amount.
    var kinds = settings.assistance_kinds;
    var svc = section("assistance", "case-services");
    svc.appendChild(list("case-service-list", c.services || [], function (s) {
      var k = kinds[s.kind] || {};
      var li = el("li", {}, [day(s.date), pick(k.title, s.kind)].concat(
        s.amount !== null && s.amount !== undefined ? [t("amount") + " " + Number(s.amount).toLocaleString(kit.lang())] : []).concat([s.by]).join(" · "));
      if (s.note) { li.appendChild(el("div", { "class": "text" }, s.note)); }
      return li;
    }));
    if (!closed) {
      var sf = el("form", { "id": "case-service-form" });
      var kindSel = select("kind", Object.keys(kinds).map(function (k) { return [k, pick(kinds[k].title, k)]; }), true);
      sf.appendChild(labelled(t("service_kind"), kindSel, true));
      var date = el("input", { "type": "date", "name": "date", "max": today() });
      date.value = today();
      sf.appendChild(labelled(t("date"), date, true));
      var amountLabel = labelled(t("amount"), el("input", { "type": "number", "name": "amount", "min": "0", "step": "0.01" }));
      sf.appendChild(amountLabel);
      sf.appendChild(labelled(t("note"), el("textarea", { "name": "note", "class": "short" })));
      var sync = function () { var k = kinds[kindSel.value]; amountLabel.hidden = !(k && k.amount); };
      kindSel.addEventListener("change", sync);
      svc.appendChild(submitOn(sf, t("log_service"), function () {
        var body = { kind: kindSel.value, date: val(sf, "date"), note: val(sf, "note") || undefined };
        if (!amountLabel.hidden && val(sf, "amount") !== "") { body.amount = Number(val(sf, "amount")); }
        act("POST", "/services", body, sf.id);
      }));
      keep(scope, sf);
      sync();
    }

    // External referrals to the directory's services, and what came of them.
    var directory = settings.directory || {};
    var ext = section("external", "case-external");
    ext.appendChild(list("case-external-list", c.external_referrals || [], function (x) {
      var li = el("li", {}, [when(x.at), pick(directory[x.to], x.to), x.by].join(" · "));
      li.appendChild(el("div", { "class": x.result ? "text" : "meta" }, x.result ? t("result") + ": " + x.result : t("no_result")));
      return li;
    }));
    if (!closed) {
      var xf = el("form", { "id": "case-external-form" });
      xf.appendChild(labelled(t("directory_entry"), select("to", Object.keys(directory).map(function (k) { return [k, pick(directory[k], k)]; }), true), true));
      var xdate = el("input", { "type": "date", "name": "at", "max": today() });
      xdate.value = today();
      xf.appendChild(labelled(t("date"), xdate));
      xf.appendChild(labelled(t("result"), el("textarea", { "name": "result", "class": "short" })));
      ext.appendChild(submitOn(xf, t("add_referral"), function () {
        // A day before today is that day's start; today is now (the API takes no time ahead).
        var at = val(xf, "at") && val(xf, "at") !== today() ? moment(val(xf, "at")) : undefined;
        act("POST", "/external-referrals", { to: val(xf, "to"), at: at, result: val(xf, "result") || undefined }, xf.id);
      }));
      var made = c.external_referrals || [];
      if (made.length) {
        var uf = el("form", { "id": "case-result-form" });
        uf.appendChild(labelled(t("result_of"), select("referral", made.map(function (x) {
          return [x.id, pick(directory[x.to], x.to) + " · " + when(x.at)];
        }), made.length > 1), true));
        uf.appendChild(labelled(t("result"), el("textarea", { "name": "result", "class": "short" }), true));
        ext.appendChild(submitOn(uf, t("save_result"), function () {
          act("PATCH", "/external-referrals/" + encodeURIComponent(val(uf, "referral")), { result: val(uf, "result") }, uf.id);
        }));
        keep(scope, uf);
      }
      keep(scope, xf);
    }

    // Follow-ups: dates to check on the person, each marked done when done.
    var fol = section("followups", "case-followups");
    var now = Date.now();
    fol.appendChild(list("case-followup-list", c.followups || [], function (f) {
      var due = !f.done_at && new Date(f.due).getTime() <= now;
      var li = el("li", { "class": due ? "overdue" : "" }, when(f.due) + (due ? " · " + t("overdue") : ""));
      if (f.note) { li.appendChild(el("div", { "class": "text" }, f.note)); }
      if (f.done_at) {
        li.appendChild(el("div", { "class": "meta" }, t("done_by") + " " + f.done_by + " " + when(f.done_at)));
      } else if (!closed) {
        var done = button(t("done"), { "data-focus": "done:" + f.id, "aria-label": t("done") + ": " + when(f.due) });
        done.addEventListener("click", function () { act("POST", "/followups/" + encodeURIComponent(f.id) + "/done"); });
        li.appendChild(done);
      }
      return li;
    }));
    if (!closed) {
      var ff = el("form", { "id": "case-followup-form" });
      ff.appendChild(labelled(t("due_at"), el("input", { "type": "datetime-local", "name": "due" }), true));
      ff.appendChild(labelled(t("note"), el("textarea", { "name": "note", "class": "short" })));
      fol.appendChild(submitOn(ff, t("add_followup"), function () {
        act("POST", "/followups", { due: moment(val(ff, "due")) || undefined, note: val(ff, "note") || undefined }, ff.id);
      }));
      keep(scope, ff);
    }

    // Notes.
    var notes = section("notes", "case-notes");
    notes.appendChild(list("case-note-list", c.notes || [], function (n) {
      var li = el("li", {});
      li.appendChild(el("div", { "class": "meta" }, when(n.at) + " · " + n.by));
      li.appendChild(el("div", { "class": "text" }, n.text === null ? "" : n.text));
      return li;
    }));
    if (!closed) {
      var nf = el("form", { "id": "case-note-form" });
      nf.appendChild(labelled(t("note"), el("textarea", { "name": "text" })));
      notes.appendChild(submitOn(nf, t("add_note"), function () {
        act("POST", "/notes", { text: val(nf, "text") }, nf.id);
      }));
      keep(scope, nf);
    }

    // Status: its assignee or a supervisor moves it on; a close names a reason.
    if (!closed && (supervising || c.assignee === me.login)) {
      var st = section("change_status", "case-status");
      var stf = el("form", { "id": "case-status-form" });
      var to = select("status", MOVES[c.status].map(function (s) { return [s, t("s_" + s)]; }), true);
      stf.appendChild(labelled(t("new_status"), to, true));
      var reasons = settings.close_reasons;
      var reasonLabel = labelled(t("reason"), select("reason", Object.keys(reasons).map(function (k) { return [k, pick(reasons[k], k)]; }), true), true);
      stf.appendChild(reasonLabel);
      var syncReason = function () { reasonLabel.hidden = to.value !== "closed"; };
      to.addEventListener("change", syncReason);
      st.appendChild(submitOn(stf, t("change_status"), function () {
        act("POST", "/status", { status: to.value, reason: to.value === "closed" ? val(stf, "reason") : undefined }, stf.id);
      }));
      keep(scope, stf);
      syncReason();
    }

    // History: every change, with who made it and when.
    var hist = el("details", { "id": "case-history" });
    if (view.history) { hist.open = true; }
    hist.addEventListener("toggle", function () { view.history = hist.open; });
    hist.appendChild(el("summary", {}, t("history")));
    var hl = el("ul", { "class": "case-items" });
    (c.history || []).forEach(function (e) {
      // Events keep ids and kinds only (never free text): named here by their labels.
      var what = e.status ? t("s_" + e.status) + (e.reason ? " (" + pick(settings.close_reasons[e.reason], e.reason) + ")" : "")
        : e.kind && kinds[e.kind] ? pick(kinds[e.kind].title, e.kind)
        : e.to ? pick(directory[e.to], e.to) : e.role && !e.kind ? roleName(e.role) : "";
      hl.appendChild(el("li", {}, [when(e.at), t("e_" + e.name) + (what ? ": " + what : ""), e.by || ""].filter(Boolean).join(" · ")));
    });
    hist.appendChild(hl);
    art.appendChild(hist);
    return art;
  }

  // A case found by the search panel: the Cases view, on that case.
  function showCase(id) {
    if (!kit || $("cases-toggle").hidden) { return; }
    if (!view.on) { show(true); }
    openCase(id);
  }

  window.HotlineCases = { start: start, opener: opener, event: event, language: language, openCase: showCase };
}());
