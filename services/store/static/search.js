// Finding a record (POST /api/search, docs/console.md "Finding a record"): a panel opened from
// the header's "Find" button. The criteria travel only in the request body: never in the URL,
// localStorage or sessionStorage, so what was searched for stays out of logs and history.
// Every text from the network goes into the page with textContent.
(function () {
  "use strict";

  var I18N = {
    en: {
      find: "Find", find_title: "Find a record", number: "Number (thread, consultation or case)",
      words: "Words", from: "From", to: "To", line: "Line", any_line: "— any line —",
      answers: "Case-form answers", search: "Search", close: "Close", results: "Results",
      nothing_found: "Nothing found.", truncated: "More records may match: narrow the search.",
      thread: "Thread", consultation: "Consultation", case: "Case", searching: "Searching…",
      s_waiting: "waiting", s_active: "active", s_closed: "closed", outcome: "outcome"
    },
    ru: {
      find: "Найти", find_title: "Поиск записи", number: "Номер (обращения, консультации или кейса)",
      words: "Слова", from: "С", to: "По", line: "Линия", any_line: "— любая линия —",
      answers: "Ответы анкеты", search: "Искать", close: "Закрыть", results: "Найдено",
      nothing_found: "Ничего не найдено.", truncated: "Подходящих записей может быть больше: уточните поиск.",
      thread: "Обращение", consultation: "Консультация", case: "Кейс", searching: "Ищем…",
      s_waiting: "ждёт", s_active: "в работе", s_closed: "закрыто", outcome: "итог"
    },
    be: {
      find: "Знайсці", find_title: "Пошук запісу", number: "Нумар (размовы, кансультацыі або справы)",
      words: "Словы", from: "З", to: "Па", line: "Лінія", any_line: "— любая лінія —",
      answers: "Адказы анкеты", search: "Шукаць", close: "Закрыць", results: "Знойдзена",
      nothing_found: "Нічога не знойдзена.", truncated: "Падыходных запісаў можа быць больш: удакладніце пошук.",
      thread: "Размова", consultation: "Кансультацыя", case: "Справа", searching: "Шукаем…",
      s_waiting: "чакае", s_active: "у рабоце", s_closed: "закрыта", outcome: "вынік"
    }
  };

  var kit = null, started = false;
  var $ = function (id) { return document.getElementById(id); };
  function t(key) { var l = kit ? kit.lang() : "en"; return (I18N[l] && I18N[l][key]) || I18N.en[key] || key; }
  function el(tag, attrs, text) { return kit.el(tag, attrs, text); }

  function labelled(text, control) {
    var l = el("label", { "class": "search-field" });
    l.appendChild(el("span", {}, text));
    l.appendChild(control);
    return l;
  }

  function day(iso) { return iso ? String(iso).slice(0, 10) : ""; }

  // --- the panel -----------------------------------------------------------------------------

  function panel() { return $("search"); }

  function open() {
    var p = panel();
    p.hidden = false;
    $("search-open").setAttribute("aria-expanded", "true");
    if (!p.firstChild) { draw(); }
    $("search-number").focus();
  }

  function close() {
    panel().hidden = true;
    $("search-open").setAttribute("aria-expanded", "false");
    $("search-open").focus();
  }

  function lines() {
    var c = kit.config() || {}, seen = {}, out = [];
    (kit.me().lines || []).concat(Object.keys(c.case_form || {})).forEach(function (l) {
      if (!seen[l]) { seen[l] = true; out.push(l); }
    });
    return out;
  }

  function draw() {
    var p = panel(), keep = p.querySelector("form") ? values() : null;
    p.textContent = "";
    p.appendChild(el("h2", { "id": "search-title" }, t("find_title")));
    var form = el("form", { "id": "search-form", "role": "search", "aria-labelledby": "search-title" });
    var row = el("div", { "class": "search-row" });
    row.appendChild(labelled(t("number"), el("input", { "id": "search-number", "name": "number", "autocomplete": "off" })));
    row.appendChild(labelled(t("words"), el("input", { "id": "search-text", "name": "text", "type": "search", "autocomplete": "off" })));
    row.appendChild(labelled(t("from"), el("input", { "id": "search-from", "name": "from", "type": "date" })));
    row.appendChild(labelled(t("to"), el("input", { "id": "search-to", "name": "to", "type": "date" })));
    var line = el("select", { "id": "search-line", "name": "line" });
    line.appendChild(el("option", { "value": "" }, t("any_line")));
    lines().forEach(function (l) { line.appendChild(el("option", { "value": l }, l)); });
    row.appendChild(labelled(t("line"), line));
    form.appendChild(row);
    var answers = el("details", { "id": "search-answers" });
    answers.appendChild(el("summary", {}, t("answers")));
    form.appendChild(answers);
    line.addEventListener("change", function () { drawAnswers(answers, line.value); });
    var buttons = el("div", { "class": "search-row" });
    buttons.appendChild(el("button", { "type": "submit", "id": "search-go" }, t("search")));
    var shut = el("button", { "type": "button", "id": "search-close" }, t("close"));
    shut.addEventListener("click", close);
    buttons.appendChild(shut);
    form.appendChild(buttons);
    form.addEventListener("submit", function (ev) { ev.preventDefault(); run(); });
    p.appendChild(form);
    p.appendChild(el("p", { "id": "search-status", "role": "status" }));
    p.appendChild(el("ul", { "id": "search-results", "aria-label": t("results") }));
    if (keep) { restore(keep); }
  }

  // The case form's questions of the chosen line, none answered: each answer given narrows the
  // search to consultations that gave it.
  function drawAnswers(box, line) {
    box.querySelectorAll("fieldset").forEach(function (f) { f.remove(); });
    box.hidden = !line;
    if (!line) { return; }
    kit.caseFields(box, fieldsOf(line), {});
  }

  function fieldsOf(line) { var c = kit.config() || {}; return (c.case_form || {})[line] || {}; }

  // By id, not by form name: a case-form question may share a name with a criterion.
  var CRITERIA = ["number", "text", "from", "to", "line"];

  function values() {
    var v = {};
    CRITERIA.forEach(function (k) { v[k] = $("search-" + k).value; });
    return v;
  }

  function restore(v) {
    CRITERIA.forEach(function (k) { $("search-" + k).value = v[k] || ""; });
    drawAnswers($("search-answers"), v.line);
  }

  function criteria() {
    var v = values(), body = {};
    if (v.number.trim()) { body.number = v.number.trim(); }
    if (v.text.trim()) { body.text = v.text.trim(); }
    if (v.from) { body.from = v.from; }
    if (v.to) { body.to = v.to; }
    if (v.line) {
      body.line = v.line;
      var answers = kit.caseValues($("search-answers"), fieldsOf(v.line));
      Object.keys(answers).forEach(function (k) { if (!Array.isArray(answers[k])) { answers[k] = [answers[k]]; } });
      if (Object.keys(answers).length) { body.answers = answers; }
    }
    return body;
  }

  function run() {
    var status = $("search-status"), list = $("search-results");
    var body = criteria();
    if (!Object.keys(body).length) { $("search-number").focus(); return; }
    status.textContent = t("searching"); list.textContent = "";
    kit.api("POST", "/api/search", body).then(function (found) {
      show(found);
    }).catch(function (e) {
      var p = e.problem || {};
      status.textContent = p.detail || p.title || e.message;
    });
  }

  // --- results -------------------------------------------------------------------------------

  function status(s) { return s ? t("s_" + s) : ""; }

  function item(text, onOpen, attrs) {
    var b = el("button", Object.assign({ "type": "button" }, attrs), text);
    b.addEventListener("click", onOpen);
    var li = el("li"); li.appendChild(b);
    return li;
  }

  function openThread(id) { close(); kit.openThread(id); }

  function show(found) {
    var list = $("search-results"), st = $("search-status");
    list.textContent = "";
    (found.records || []).forEach(function (r) {
      var th = r.thread, c = r.consultation;
      var text = c
        ? t("consultation") + " " + c.id + " · " + day(c.started_at) + " · " + [c.channel, c.line].filter(Boolean).join(", ")
          + " · " + t("outcome") + ": " + (c.outcome || "") + (c.reason ? " (" + c.reason + ")" : "")
        : t("thread") + " · " + [th.channel, th.line].filter(Boolean).join(", ") + " · " + day(th.created_at)
          + " · " + status(th.status) + (th.subject ? " · " + th.subject : "");
      list.appendChild(item(text, function () { openThread(th.id); }, { "data-thread": th.id }));
    });
    (found.cases || []).forEach(function (c) {
      var text = t("case") + " " + c.reference + " · " + (c.kind || "") + " · " + (c.status || "") + " · " + day(c.opened_at);
      list.appendChild(item(text, function () {
        close();
        if (window.HotlineCases && window.HotlineCases.openCase) { window.HotlineCases.openCase(c.id); }
      }, { "data-case": c.id }));
    });
    var n = list.children.length;
    st.textContent = n ? t("results") + ": " + n + (found.truncated ? ". " + t("truncated") : "") : t("nothing_found");
    if (n) { list.querySelector("button").focus(); }
  }

  // --- wiring --------------------------------------------------------------------------------

  function start(k) {
    kit = k;
    var opener = $("search-open");
    opener.hidden = false;
    opener.textContent = t("find");
    if (started) { return; }
    started = true;
    opener.addEventListener("click", function () { if (panel().hidden) { open(); } else { close(); } });
    panel().addEventListener("keydown", function (ev) {
      if (ev.key === "Escape") { ev.preventDefault(); close(); }
    });
  }

  function language() {
    if (!kit) { return; }
    $("search-open").textContent = t("find");
    if (panel().firstChild) { draw(); }
  }

  window.HotlineSearch = { start: start, language: language };
}());
