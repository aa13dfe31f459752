// A phone call logged from the console (docs/console.md, "Phone calls"): the line, when the call
// took place and the line's case form, the same questions as the close dialog, drawn by the
// console's own caseFields. Sent to POST /api/consultations with an Idempotency-Key made when
// the form is opened or cleared and kept until the call is stored, so a double Enter or a retry
// after a lost answer stores the call once.
// Fully usable from the keyboard: the form is a modal dialog; focus goes to its first control
// when it opens and back to the button when it closes; Enter sends it, Escape closes it.
// Same safety rule as console.js: every text from the network goes in with textContent.
(function () {
  "use strict";

  var I18N = {
    en: {
      open: "Log a phone call", title: "Phone call", line: "Line", when: "Date and time of the call",
      save: "Save the call", close: "Close", saved: "Call saved on line {line}, {when}.",
      missing: "Missing", invalid: "Not valid", future: "The call cannot be in the future.",
      no_lines: "You answer no line."
    },
    ru: {
      open: "Записать звонок", title: "Телефонный звонок", line: "Линия", when: "Дата и время звонка",
      save: "Сохранить звонок", close: "Закрыть", saved: "Звонок на линию {line} сохранён, {when}.",
      missing: "Не заполнено", invalid: "Неверно", future: "Звонок не может быть в будущем.",
      no_lines: "Вы не работаете ни на одной линии."
    },
    be: {
      open: "Запісаць званок", title: "Тэлефонны званок", line: "Лінія", when: "Дата і час званка",
      save: "Захаваць званок", close: "Закрыць", saved: "Званок на лінію {line} захаваны, {when}.",
      missing: "Не запоўнена", invalid: "Няправільна", future: "Званок не можа быць у будучыні.",
      no_lines: "Вы не працуеце ні на адной лініі."
    }
  };
  var kit = null, button = null, dialog = null;
  var key = null;  // the Idempotency-Key of the call being filled in
  var busy = false;

  function t(name) {
    var lang = kit ? kit.lang() : "en";
    return (I18N[lang] && I18N[lang][name]) || I18N.en[name];
  }

  function freshKey() {
    var b = new Uint8Array(16);
    crypto.getRandomValues(b);
    return "phone-" + Array.prototype.map.call(b, function (x) { return (x + 256).toString(16).slice(1); }).join("");
  }

  function two(n) { return (n < 10 ? "0" : "") + n; }

  // datetime-local holds the browser's local time without an offset; the API wants one.
  function localNow() {
    var d = new Date();
    return d.getFullYear() + "-" + two(d.getMonth() + 1) + "-" + two(d.getDate()) + "T" + two(d.getHours()) + ":" + two(d.getMinutes());
  }

  function withOffset(value) {
    var d = new Date(value);  // a date-time without offset is read as local time
    if (isNaN(d.getTime())) { return null; }
    var off = -d.getTimezoneOffset(), sign = off < 0 ? "-" : "+";
    off = Math.abs(off);
    return value + (value.length === 16 ? ":00" : "") + sign + two(Math.floor(off / 60)) + ":" + two(off % 60);
  }

  function lines() { return Object.keys((kit.config() && kit.config().lines) || {}); }

  function fieldsOf(line) { return (kit.config() && kit.config().case_form[line]) || {}; }

  function start(k) {
    kit = k;
    var role = kit.me().role;
    if (!button) {
      button = document.getElementById("phone-open");
      button.addEventListener("click", open);
    }
    button.hidden = !(role === "consultant" || role === "supervisor" || role === "national_admin");
    language();
  }

  function language() {
    if (!button) { return; }
    button.textContent = t("open");
    if (dialog && dialog.open) { draw(current()); }
  }

  function current() {
    var f = dialog && dialog.querySelector("form");
    return f ? { line: f.elements.line.value, when: f.elements.when.value } : null;
  }

  function open() {
    if (!dialog) {
      dialog = kit.el("dialog", { "id": "phone", "aria-labelledby": "phone-title" });
      // Escape closes a modal dialog by itself; the focus goes back to the button either way.
      dialog.addEventListener("close", function () { dialog.textContent = ""; button.focus(); });
      document.body.appendChild(dialog);
    }
    key = freshKey();
    draw(null);
    dialog.showModal();
    dialog.querySelector("select, input").focus();
  }

  function draw(kept) {
    var el = kit.el, ls = lines();
    dialog.textContent = "";
    dialog.appendChild(el("h2", { "id": "phone-title" }, t("title")));
    var form = el("form", { "id": "phone-form", "novalidate": "" });
    var line = el("select", { "name": "line", "id": "phone-line" });
    ls.forEach(function (ln) { line.appendChild(el("option", { "value": ln }, kit.pick(kit.config().lines[ln].name, ln))); });
    if (kit && kit.me().lines && kit.me().lines.length && ls.indexOf(kit.me().lines[0]) >= 0) { line.value = kit.me().lines[0]; }
    if (kept && ls.indexOf(kept.line) >= 0) { line.value = kept.line; }
    var l1 = el("label", { "for": "phone-line" }, t("line"));
    var when = el("input", { "type": "datetime-local", "name": "when", "id": "phone-when", "required": "" });
    when.value = kept ? kept.when : localNow();
    var l2 = el("label", { "for": "phone-when" }, t("when"));
    var head = el("div", { "class": "phone-head" });
    head.appendChild(l1); head.appendChild(line); head.appendChild(l2); head.appendChild(when);
    form.appendChild(head);
    var questions = el("div", { "id": "phone-case" });
    form.appendChild(questions);
    var msg = el("p", { "id": "phone-message", "role": "status", "tabindex": "-1" });
    var err = el("p", { "id": "phone-error", "role": "alert", "class": "error" });
    form.appendChild(err);
    form.appendChild(msg);
    var save = el("button", { "type": "submit", "id": "phone-save" }, t("save"));
    var close = el("button", { "type": "button", "id": "phone-close" }, t("close"));
    close.addEventListener("click", function () { dialog.close(); });
    form.appendChild(save); form.appendChild(close);
    if (!ls.length) { err.textContent = t("no_lines"); }

    function questionsOf(ln) { questions.textContent = ""; kit.caseFields(questions, fieldsOf(ln), {}); }
    questionsOf(line.value);
    line.addEventListener("change", function () { questionsOf(line.value); });

    // Enter sends the form from a list or a tick box too, not only from the date field (a
    // browser submits implicitly from text inputs only); on a button it stays a click.
    form.addEventListener("keydown", function (ev) {
      if (ev.key !== "Enter" || ev.isComposing) { return; }
      var tag = ev.target.tagName;
      if (tag === "SELECT" || (tag === "INPUT" && ev.target.type === "checkbox")) {
        ev.preventDefault(); form.requestSubmit();
      }
    });
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      if (busy) { return; }  // the first press is on its way; its key would store it once anyway
      var fields = fieldsOf(line.value);
      var at = withOffset(when.value);
      err.textContent = ""; msg.textContent = "";
      when.removeAttribute("aria-invalid");
      if (!at) {
        err.textContent = t("missing") + ": " + t("when"); when.setAttribute("aria-invalid", "true"); when.focus();
        return;
      }
      if (new Date(at).getTime() > Date.now() + 60000) {
        err.textContent = t("future"); when.setAttribute("aria-invalid", "true"); when.focus();
        return;
      }
      busy = true;
      kit.api("POST", "/api/consultations", { line: line.value, at: at, case: kit.caseValues(questions, fields) },
        { "Idempotency-Key": key }).then(function () {
        key = freshKey();
        var said = t("saved").replace("{line}", line.options[line.selectedIndex].textContent)
          .replace("{when}", when.value.replace("T", " "));
        draw({ line: line.value, when: localNow() });
        // The focus rests on the confirmation, not in the cleared form, so a second Enter
        // pressed on the way sends nothing; Tab goes on to the line.
        var shown = dialog.querySelector("#phone-message");
        shown.textContent = said; shown.focus();
      }).catch(function (e) {
        var p = e.problem || {};
        if (p.status === 422 && (p.missing || p.invalid)) {
          err.textContent = kit.caseProblem(questions, fields, e);
          var bad = questions.querySelector("fieldset.bad select, fieldset.bad input");
          if (bad) { bad.focus(); }
        } else {
          err.textContent = p.detail || p.title || e.message;
        }
      }).finally(function () { busy = false; });
    });
    dialog.appendChild(form);
  }

  window.HotlinePhone = { start: start, language: language };
}());
