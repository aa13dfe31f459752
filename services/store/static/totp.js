// The second factor at log-in (docs/console.md, "A second factor"): after the password, either
// the code from the authenticator app (or a recovery code), or, for an account that must have
// a second factor and has none, its enrolment: the key and its otpauth:// address to add to an
// app, a code from it, then the recovery codes, shown this once. Until then the session reaches
// nothing else (the server answers 401 to every other route).
// Same safety rule as console.js: every text from the network goes in with textContent.
(function () {
  "use strict";

  var I18N = {
    en: {
      code_title: "Second factor", code_help: "Enter the 6-digit code your authenticator app shows for this console.",
      code: "Code", go_on: "Continue", recovery_title: "Lost your phone?",
      recovery_help: "Enter one of your recovery codes: each opens one log-in, once.",
      recovery: "Recovery code", use_recovery: "Use the recovery code",
      recovery_left: "Recovery codes left: {n}. Ask your administrator for a new second factor before they run out.",
      enrol_title: "Set up your second factor",
      enrol_help: "Your account needs a second factor. Add this key to an authenticator app on your phone (type it in, or open the link on the phone), then enter the code the app shows.",
      key: "Key", link: "Link for the authenticator app", confirm: "Confirm the code",
      codes_title: "Your recovery codes",
      codes_help: "Write these codes down and keep them away from your phone. Each opens one log-in if you lose the phone. They are shown only now.",
      saved: "I have saved them: continue", wrong: "Wrong code", start_over: "Log in again",
      open: "Set up a second factor", optional_title: "A second factor for your log-in"
    },
    ru: {
      code_title: "Второй фактор", code_help: "Введите 6-значный код, который приложение-аутентификатор показывает для этой консоли.",
      code: "Код", go_on: "Продолжить", recovery_title: "Потеряли телефон?",
      recovery_help: "Введите один из резервных кодов: каждый открывает один вход, один раз.",
      recovery: "Резервный код", use_recovery: "Войти с резервным кодом",
      recovery_left: "Осталось резервных кодов: {n}. Попросите администратора настроить второй фактор заново, пока они не кончились.",
      enrol_title: "Настройте второй фактор",
      enrol_help: "Вашей учётной записи нужен второй фактор. Добавьте этот ключ в приложение-аутентификатор на телефоне (введите его или откройте ссылку на телефоне), затем введите код, который покажет приложение.",
      key: "Ключ", link: "Ссылка для приложения-аутентификатора", confirm: "Подтвердить код",
      codes_title: "Ваши резервные коды",
      codes_help: "Запишите эти коды и храните их отдельно от телефона. Каждый открывает один вход, если телефон потерян. Они показываются только сейчас.",
      saved: "Я их сохранил(а): продолжить", wrong: "Неверный код", start_over: "Войти заново",
      open: "Настроить второй фактор", optional_title: "Второй фактор для входа"
    },
    be: {
      code_title: "Другі фактар", code_help: "Увядзіце 6-значны код, які праграма-аўтэнтыфікатар паказвае для гэтай кансолі.",
      code: "Код", go_on: "Далей", recovery_title: "Страцілі тэлефон?",
      recovery_help: "Увядзіце адзін з рэзервовых кодаў: кожны адчыняе адзін уваход, адзін раз.",
      recovery: "Рэзервовы код", use_recovery: "Увайсці з рэзервовым кодам",
      recovery_left: "Засталося рэзервовых кодаў: {n}. Папрасіце адміністратара наладзіць другі фактар нанова, пакуль яны не скончыліся.",
      enrol_title: "Наладзьце другі фактар",
      enrol_help: "Вашаму ўліковаму запісу патрэбны другі фактар. Дадайце гэты ключ у праграму-аўтэнтыфікатар на тэлефоне (увядзіце яго або адкрыйце спасылку на тэлефоне), потым увядзіце код, які пакажа праграма.",
      key: "Ключ", link: "Спасылка для праграмы-аўтэнтыфікатара", confirm: "Пацвердзіць код",
      codes_title: "Вашы рэзервовыя коды",
      codes_help: "Запішыце гэтыя коды і захоўвайце іх асобна ад тэлефона. Кожны адчыняе адзін уваход, калі тэлефон страчаны. Яны паказваюцца толькі цяпер.",
      saved: "Я іх захаваў(ла): далей", wrong: "Няправільны код", start_over: "Увайсці нанова",
      open: "Наладзіць другі фактар", optional_title: "Другі фактар для ўваходу"
    }
  };

  var csrf = "", done = null, box = null;
  var host = null;  // where the panel goes: the log-in section, or a dialog once logged in

  function lang() {
    var l = localStorage.getItem("hl_lang") || document.documentElement.lang || "en";
    return I18N[l] ? l : "en";
  }
  function t(name) { return I18N[lang()][name] || I18N.en[name]; }

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }

  function post(path, body) {
    return fetch(path, { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body || {}) })
      .then(function (r) { return r.json().then(function (j) { return { status: r.status, j: j }; }); });
  }

  // The panel replaces the password form inside the log-in section until the step is passed.
  function panel(title) {
    if (box) { box.remove(); }
    box = el("div", { id: "second-factor" });
    box.appendChild(el("h2", { id: "second-factor-title" }, title));
    if (host) { host.appendChild(box); return box; }
    document.getElementById("login-form").hidden = true;
    document.getElementById("login").insertBefore(box, document.getElementById("login-form"));
    return box;
  }

  function finish(j) {
    if (box) { box.remove(); box = null; }
    var form = document.getElementById("login-form");
    form.hidden = false;
    done(j);
  }

  // A form of one field: its input, the answer's error line, and what a right answer does.
  function oneField(parent, id, label, submit, attrs, send) {
    var form = el("form", { id: id });
    var input = el("input", Object.assign({ name: "value", required: "" }, attrs));
    var lab = el("label", {}); lab.appendChild(el("span", {}, label + " ")); lab.appendChild(input);
    form.appendChild(lab);
    form.appendChild(el("button", { type: "submit" }, submit));
    var error = el("p", { role: "alert", "class": "second-factor-error" });
    form.appendChild(error);
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      error.textContent = "";
      send(input.value).then(function (res) {
        if (res.status === 200) { return; }
        input.value = "";
        // 429 says how long to wait; a session that ended (401 "Not logged in") starts over.
        error.textContent = res.status === 401 && res.j.title === "Wrong code" ? t("wrong") : (res.j.detail || res.j.title);
        if (res.status === 401 && res.j.title !== "Wrong code") { location.reload(); }
      });
    });
    parent.appendChild(form);
    return input;
  }

  function codeStep() {
    var p = panel(t("code_title"));
    p.appendChild(el("p", {}, t("code_help")));
    var first = oneField(p, "totp-code-form", t("code"), t("go_on"),
      { inputmode: "numeric", autocomplete: "one-time-code", maxlength: "8", pattern: "[0-9 ]{6,8}" },
      function (value) {
        return post("/api/session/code", { code: value }).then(function (res) {
          if (res.status === 200) { finish(res.j); }
          return res;
        });
      });
    p.appendChild(el("h3", {}, t("recovery_title")));
    p.appendChild(el("p", {}, t("recovery_help")));
    oneField(p, "totp-recovery-form", t("recovery"), t("use_recovery"), { autocomplete: "off", maxlength: "32" },
      function (value) {
        return post("/api/session/code", { recovery_code: value }).then(function (res) {
          if (res.status === 200) { codesLeft(res.j); }
          return res;
        });
      });
    first.focus();
  }

  function enrolStep() {
    var p = panel(t("enrol_title"));
    p.appendChild(el("p", {}, t("enrol_help")));
    var key = el("p", {}); key.appendChild(el("span", {}, t("key") + ": "));
    var secret = el("code", { id: "totp-secret" }); key.appendChild(secret);
    p.appendChild(key);
    var link = el("a", { id: "totp-uri" }, t("link"));
    p.appendChild(el("p", {})).appendChild(link);
    post("/api/me/totp/enrolment").then(function (res) {
      if (res.status !== 200) { location.reload(); return; }
      secret.textContent = res.j.secret.replace(/(.{4})/g, "$1 ").trim();
      link.href = res.j.uri;  // otpauth://, opened by the app on a phone; nothing is fetched
    });
    var first = oneField(p, "totp-enrol-form", t("code"), t("confirm"),
      { inputmode: "numeric", autocomplete: "one-time-code", maxlength: "8" },
      function (value) {
        return post("/api/me/totp/enrolment/confirm", { code: value }).then(function (res) {
          if (res.status === 200) { showCodes(res.j); }
          return res;
        });
      });
    first.focus();
  }

  // After a recovery code: how many are left, said before the console opens.
  function codesLeft(j) {
    var p = panel(t("recovery_title"));
    p.appendChild(el("p", { id: "totp-codes-left", role: "status" }, t("recovery_left").replace("{n}", j.recovery_codes_left)));
    var go = el("button", { type: "button", id: "totp-go-on" }, t("go_on"));
    go.addEventListener("click", function () { finish(j); });
    p.appendChild(go);
    go.focus();
  }

  function showCodes(j) {
    var p = panel(t("codes_title"));
    p.appendChild(el("p", {}, t("codes_help")));
    var list = el("ol", { id: "totp-recovery-codes" });
    j.recovery_codes.forEach(function (c) { list.appendChild(el("li", {}, c)); });
    p.appendChild(list);
    var go = el("button", { type: "button", id: "totp-codes-saved" }, t("saved"));
    go.addEventListener("click", function () {
      delete j.recovery_codes;  // not kept anywhere once the panel is gone
      finish(j);
    });
    p.appendChild(go);
    go.focus();
  }

  // Once logged in, an account without a second factor may enrol of its own accord (where the
  // setting does not require it): a header button opens the same steps in a dialog.
  function offer(kit) {
    kit.api("GET", "/api/me/totp").then(function (state) {
      if (state.enrolled || document.getElementById("totp-open")) { return; }
      var button = el("button", { type: "button", id: "totp-open" }, t("open"));
      document.getElementById("logout").before(button);
      button.addEventListener("click", function () {
        var dialog = el("dialog", { id: "totp-dialog", "aria-labelledby": "second-factor-title" });
        document.body.appendChild(dialog);
        host = dialog;
        csrf = sessionStorage.getItem("hl_csrf") || "";
        done = function () { dialog.close(); dialog.remove(); host = null; box = null; button.remove(); };
        dialog.addEventListener("close", function () { if (dialog.isConnected) { dialog.remove(); host = null; } });
        dialog.showModal();
        enrolStep();
        document.getElementById("second-factor-title").textContent = t("optional_title");
      });
    });
  }

  window.HotlineTotp = {
    start: offer,
    // After the password: ``step`` is the log-in's second_factor ("code" or "enrol"), ``token``
    // the session's CSRF token; ``then`` gets the answer of the passed step ({consultant, ...}).
    step: function (step, token, then) {
      csrf = token; done = then;
      if (step === "enrol") { enrolStep(); } else { codeStep(); }
    }
  };
})();
