// Administration (docs/console.md "Administration"): accounts, canned answers, the help
// directory and the change log, for an organisation's supervisor (their organisation) and an
// administrator (everything); and the form that asks for a new password when an administrator
// set it. The server decides who may do what (services/store/administration.py): this screen
// only shows what the API answers. Every text from the network goes in with textContent.
(function () {
  "use strict";

  var I18N = {
    en: {
      admin: "Administration", accounts: "Accounts", canned: "Canned answers", directory: "Help directory",
      changes: "Change log", login: "Login", name: "Name", role: "Role", organisation: "Organisation",
      lines: "Lines (comma-separated)", skills: "Skills (comma-separated)", languages: "Languages (comma-separated)",
      specialist_roles: "Specialist roles (comma-separated)", password: "Password (at least 10 characters)",
      new_account: "New account", save: "Save", edit: "Edit", disable: "Disable", enable: "Enable",
      reset_password: "Reset password", new_password_for: "New password for", disabled: "disabled",
      saved: "Saved.", line: "Line", title: "Title", text: "Text", new_answer: "New canned answer",
      remove: "Remove", everyone: "— the whole line —", id: "Id", section: "Section", region: "Region",
      phone: "Phone", note: "Note", address: "Address", url: "Web address", new_entry: "New directory entry",
      emergency: "emergency", national: "national", s_region: "region", read_only: "read only",
      change_password: "Choose your password", change_password_hint: "Your password was set for you: choose your own to go on.",
      current_password: "Current password", new_password: "New password (at least 10 characters)",
      when: "When", who: "Who", what: "What", close: "Close", must_change: "must change password"
    },
    ru: {
      admin: "Администрирование", accounts: "Учётные записи", canned: "Готовые ответы", directory: "Справочник помощи",
      changes: "Журнал изменений", login: "Логин", name: "Имя", role: "Роль", organisation: "Организация",
      lines: "Линии (через запятую)", skills: "Навыки (через запятую)", languages: "Языки (через запятую)",
      specialist_roles: "Роли специалиста (через запятую)", password: "Пароль (не меньше 10 символов)",
      new_account: "Новая учётная запись", save: "Сохранить", edit: "Изменить", disable: "Отключить", enable: "Включить",
      reset_password: "Сбросить пароль", new_password_for: "Новый пароль для", disabled: "отключена",
      saved: "Сохранено.", line: "Линия", title: "Заголовок", text: "Текст", new_answer: "Новый готовый ответ",
      remove: "Удалить", everyone: "— вся линия —", id: "Код", section: "Раздел", region: "Регион",
      phone: "Телефон", note: "Примечание", address: "Адрес", url: "Веб-адрес", new_entry: "Новая запись справочника",
      emergency: "экстренные", national: "общенациональные", s_region: "регион", read_only: "только чтение",
      change_password: "Выберите пароль", change_password_hint: "Ваш пароль задал администратор: выберите свой, чтобы продолжить.",
      current_password: "Текущий пароль", new_password: "Новый пароль (не меньше 10 символов)",
      when: "Когда", who: "Кто", what: "Что", close: "Закрыть", must_change: "должен сменить пароль"
    },
    be: {
      admin: "Адміністраванне", accounts: "Уліковыя запісы", canned: "Гатовыя адказы", directory: "Даведнік дапамогі",
      changes: "Журнал змен", login: "Лагін", name: "Імя", role: "Роля", organisation: "Арганізацыя",
      lines: "Лініі (праз коску)", skills: "Навыкі (праз коску)", languages: "Мовы (праз коску)",
      specialist_roles: "Ролі спецыяліста (праз коску)", password: "Пароль (не менш за 10 сімвалаў)",
      new_account: "Новы ўліковы запіс", save: "Захаваць", edit: "Змяніць", disable: "Адключыць", enable: "Уключыць",
      reset_password: "Скінуць пароль", new_password_for: "Новы пароль для", disabled: "адключаны",
      saved: "Захавана.", line: "Лінія", title: "Загаловак", text: "Тэкст", new_answer: "Новы гатовы адказ",
      remove: "Выдаліць", everyone: "— уся лінія —", id: "Код", section: "Раздзел", region: "Рэгіён",
      phone: "Тэлефон", note: "Заўвага", address: "Адрас", url: "Вэб-адрас", new_entry: "Новы запіс даведніка",
      emergency: "экстранныя", national: "агульнанацыянальныя", s_region: "рэгіён", read_only: "толькі чытанне",
      change_password: "Выберыце пароль", change_password_hint: "Ваш пароль задаў адміністратар: выберыце свой, каб працягнуць.",
      current_password: "Бягучы пароль", new_password: "Новы пароль (не менш за 10 сімвалаў)",
      when: "Калі", who: "Хто", what: "Што", close: "Закрыць", must_change: "павінен змяніць пароль"
    }
  };

  var kit = null, started = false;
  var $ = function (id) { return document.getElementById(id); };
  function t(key) { var l = kit ? kit.lang() : "en"; return (I18N[l] && I18N[l][key]) || I18N.en[key] || key; }
  function el(tag, attrs, text) { return kit.el(tag, attrs, text); }
  function list(value) { return String(value || "").split(",").map(function (s) { return s.trim(); }).filter(Boolean); }
  function languagesOf() { return (kit.config() && kit.config().languages) || ["en"]; }
  function isAdmin() { var me = kit.me() || {}; return me.role === "national_admin"; }

  function field(label, control) {
    var l = el("label", { "class": "admin-field" });
    l.appendChild(el("span", {}, label));
    l.appendChild(control);
    return l;
  }
  function input(name, value, attrs) {
    return el("input", Object.assign({ "name": name, "value": value == null ? "" : String(value), "autocomplete": "off" }, attrs || {}));
  }
  function button(text, onClick, attrs) {
    var b = el("button", Object.assign({ "type": "button" }, attrs || {}), text);
    b.addEventListener("click", onClick);
    return b;
  }
  function say(box, text, isError) {
    box.textContent = text;
    box.className = isError ? "error" : "";
  }
  function problemText(err) { return (err.problem && (err.problem.detail || err.problem.title)) || err.message; }

  // --- the panel -----------------------------------------------------------------------------

  function panel() { return $("admin"); }

  function toggle() {
    var p = panel();
    p.hidden = !p.hidden;
    $("admin-open").setAttribute("aria-expanded", String(!p.hidden));
    if (!p.hidden) { draw(); }
  }

  function draw() {
    var p = panel();
    p.textContent = "";
    p.appendChild(el("h2", { "id": "admin-title" }, t("admin")));
    p.appendChild(el("p", { "id": "admin-status", "role": "status" }));
    [["accounts", drawAccounts], ["canned", drawCanned], ["directory", drawDirectory], ["changes", drawChanges]].forEach(function (part) {
      var s = el("section", { "id": "admin-" + part[0], "aria-labelledby": "admin-" + part[0] + "-title" });
      s.appendChild(el("h3", { "id": "admin-" + part[0] + "-title" }, t(part[0])));
      p.appendChild(s);
      part[1](s);
    });
  }

  function status() { return $("admin-status"); }
  function done() { draw(); say(status(), t("saved")); }
  function failed(err) { say(status(), problemText(err), true); }

  // --- accounts ------------------------------------------------------------------------------

  function drawAccounts(box) {
    kit.api("GET", "/api/admin/accounts").then(function (accounts) {
      var table = el("table", { "id": "admin-accounts-table" });
      var head = el("tr");
      ["login", "name", "role", "organisation", "lines", "skills", "languages"].forEach(function (k) { head.appendChild(el("th", {}, t(k).split(" (")[0])); });
      head.appendChild(el("th", {}, ""));
      table.appendChild(el("thead")).appendChild(head);
      var body = el("tbody");
      accounts.forEach(function (a) {
        var tr = el("tr", { "data-account": a.id });
        [a.id, a.name, a.role, a.organisation || "", (a.lines || []).join(", "), (a.skills || []).join(", "),
          (a.languages || []).join(", ")].forEach(function (v) { tr.appendChild(el("td", {}, v)); });
        var actions = el("td");
        if (a.disabled) { actions.appendChild(el("span", { "class": "admin-flag" }, t("disabled") + " ")); }
        if (a.must_change_password) { actions.appendChild(el("span", { "class": "admin-flag" }, t("must_change") + " ")); }
        actions.appendChild(button(t("edit"), function () { accountForm(box, a); }, { "data-action": "edit" }));
        actions.appendChild(a.disabled
          ? button(t("enable"), function () { kit.api("POST", "/api/admin/accounts/" + encodeURIComponent(a.id) + "/enable").then(done, failed); }, { "data-action": "enable" })
          : button(t("disable"), function () { kit.api("POST", "/api/admin/accounts/" + encodeURIComponent(a.id) + "/disable").then(done, failed); }, { "data-action": "disable" }));
        actions.appendChild(button(t("reset_password"), function () { resetForm(box, a); }, { "data-action": "reset" }));
        tr.appendChild(actions);
        body.appendChild(tr);
      });
      table.appendChild(body);
      box.appendChild(table);
      box.appendChild(button(t("new_account"), function () { accountForm(box, null); }, { "id": "admin-new-account" }));
    }).catch(failed);
  }

  function accountForm(box, a) {
    var old = $("admin-account-form"); if (old) { old.remove(); }
    var f = el("form", { "id": "admin-account-form" });
    if (!a) { f.appendChild(field(t("login"), input("login", ""))); }
    f.appendChild(field(t("name"), input("name", a ? a.name : "")));
    var role = el("select", { "name": "role" });
    (isAdmin() ? ["consultant", "specialist", "supervisor", "admin", "national_admin"] : ["consultant", "specialist"]).forEach(function (r) {
      var o = el("option", { "value": r }, r); if (a && a.role === r) { o.selected = true; } role.appendChild(o);
    });
    f.appendChild(field(t("role"), role));
    if (isAdmin()) { f.appendChild(field(t("organisation"), input("organisation", a ? a.organisation : ""))); }
    f.appendChild(field(t("lines"), input("lines", a ? (a.lines || []).join(", ") : (kit.me().lines || []).join(", "))));
    f.appendChild(field(t("skills"), input("skills", a ? (a.skills || []).join(", ") : "")));
    f.appendChild(field(t("languages"), input("languages", a ? (a.languages || []).join(", ") : "")));
    f.appendChild(field(t("specialist_roles"), input("specialist_roles", a ? (a.specialist_roles || []).join(", ") : "")));
    if (!a) { f.appendChild(field(t("password"), input("password", "", { "type": "password", "autocomplete": "new-password" }))); }
    f.appendChild(el("button", { "type": "submit" }, t("save")));
    f.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var body = { name: f.elements["name"].value, role: f.elements["role"].value, lines: list(f.elements["lines"].value), skills: list(f.elements["skills"].value),
        languages: list(f.elements["languages"].value), specialist_roles: list(f.elements["specialist_roles"].value) };
      if (f.elements["organisation"]) { body.organisation = f.elements["organisation"].value.trim() || null; }
      var req = a
        ? kit.api("PATCH", "/api/admin/accounts/" + encodeURIComponent(a.id), body)
        : kit.api("POST", "/api/admin/accounts", Object.assign(body, { login: f.elements["login"].value.trim(), password: f.elements["password"].value }));
      req.then(done, failed);
    });
    box.appendChild(f);
    f.querySelector("input").focus();
  }

  function resetForm(box, a) {
    var old = $("admin-reset-form"); if (old) { old.remove(); }
    var f = el("form", { "id": "admin-reset-form" });
    f.appendChild(field(t("new_password_for") + " " + a.id, input("password", "", { "type": "password", "autocomplete": "new-password" })));
    f.appendChild(el("button", { "type": "submit" }, t("save")));
    f.addEventListener("submit", function (ev) {
      ev.preventDefault();
      kit.api("POST", "/api/admin/accounts/" + encodeURIComponent(a.id) + "/password", { password: f.elements["password"].value }).then(done, failed);
    });
    box.appendChild(f);
    f.elements["password"].focus();
  }

  // --- canned answers ------------------------------------------------------------------------

  function drawCanned(box) {
    kit.api("GET", "/api/admin/canned").then(function (answers) {
      var ul = el("ul", { "id": "admin-canned-list" });
      answers.forEach(function (c) {
        var li = el("li", { "data-canned": c.id });
        li.appendChild(el("strong", {}, c.line + (c.organisation ? " · " + c.organisation : "") + ": " + kit.pick(c.title, c.id)));
        li.appendChild(el("span", {}, " " + kit.pick(c.text, "") + " "));
        if (c.editable) {
          li.appendChild(button(t("edit"), function () { cannedForm(box, c); }, { "data-action": "edit" }));
          li.appendChild(button(t("remove"), function () { kit.api("DELETE", "/api/admin/canned/" + encodeURIComponent(c.id)).then(done, failed); }, { "data-action": "remove" }));
        } else {
          li.appendChild(el("em", {}, t("read_only")));
        }
        ul.appendChild(li);
      });
      box.appendChild(ul);
      box.appendChild(button(t("new_answer"), function () { cannedForm(box, null); }, { "id": "admin-new-canned" }));
    }).catch(failed);
  }

  function texts(f, prefix, value, area) {
    languagesOf().forEach(function (l) {
      var v = (value || {})[l] || "";
      var c = area ? el("textarea", { "name": prefix + "_" + l, "rows": "3" }) : input(prefix + "_" + l, v);
      if (area) { c.value = v; }
      f.appendChild(field(t(prefix) + " (" + l + ")", c));
    });
  }
  function readTexts(f, prefix) {
    var out = {};
    languagesOf().forEach(function (l) { var v = f.elements[prefix + "_" + l].value.trim(); if (v) { out[l] = v; } });
    return out;
  }

  function cannedForm(box, c) {
    var old = $("admin-canned-form"); if (old) { old.remove(); }
    var f = el("form", { "id": "admin-canned-form" });
    var line = el("select", { "name": "line" });
    (isAdmin() ? Object.keys((kit.config() || {}).lines || {}) : kit.me().lines || []).forEach(function (l) {
      var o = el("option", { "value": l }, l); if (c && c.line === l) { o.selected = true; } line.appendChild(o);
    });
    f.appendChild(field(t("line"), line));
    if (isAdmin()) { f.appendChild(field(t("organisation"), input("organisation", c ? c.organisation : ""))); }
    texts(f, "title", c && c.title, false);
    texts(f, "text", c && c.text, true);
    f.appendChild(el("button", { "type": "submit" }, t("save")));
    f.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var body = { line: f.elements["line"].value, title: readTexts(f, "title"), text: readTexts(f, "text") };
      if (f.elements["organisation"]) { body.organisation = f.elements["organisation"].value.trim() || null; }
      var req = c ? kit.api("PUT", "/api/admin/canned/" + encodeURIComponent(c.id), body) : kit.api("POST", "/api/admin/canned", body);
      req.then(done, failed);
    });
    box.appendChild(f);
    f.querySelector("select, input").focus();
  }

  // --- the directory -------------------------------------------------------------------------

  function drawDirectory(box) {
    kit.api("GET", "/api/admin/directory").then(function (entries) {
      var ul = el("ul", { "id": "admin-directory-list" });
      entries.forEach(function (e) {
        var li = el("li", { "data-entry": e.id });
        li.appendChild(el("strong", {}, t(e.section === "region" ? "s_region" : e.section) + (e.region ? " · " + e.region : "") + ": "));
        li.appendChild(el("span", {}, kit.pick(e.name, e.id) + (e.phone ? " " + e.phone : "") + " "));
        if (e.editable) {
          li.appendChild(button(t("edit"), function () { entryForm(box, e); }, { "data-action": "edit" }));
          li.appendChild(button(t("remove"), function () { kit.api("DELETE", "/api/admin/directory/" + encodeURIComponent(e.id)).then(done, failed); }, { "data-action": "remove" }));
        }
        ul.appendChild(li);
      });
      box.appendChild(ul);
      if (isAdmin()) { box.appendChild(button(t("new_entry"), function () { entryForm(box, null); }, { "id": "admin-new-entry" })); }
    }).catch(failed);
  }

  function entryForm(box, e) {
    var old = $("admin-entry-form"); if (old) { old.remove(); }
    var f = el("form", { "id": "admin-entry-form" });
    if (!e) { f.appendChild(field(t("id"), input("id", ""))); }
    var section = el("select", { "name": "section" });
    ["emergency", "national", "region"].forEach(function (s) {
      var o = el("option", { "value": s }, t(s === "region" ? "s_region" : s)); if (e && e.section === s) { o.selected = true; } section.appendChild(o);
    });
    f.appendChild(field(t("section"), section));
    f.appendChild(field(t("region"), input("region", e ? e.region : "")));
    texts(f, "name", e && e.name, false);
    f.appendChild(field(t("phone"), input("phone", e ? e.phone : "")));
    texts(f, "note", e && e.note, false);
    f.appendChild(field(t("url"), input("url", e ? e.url : "")));
    f.appendChild(el("button", { "type": "submit" }, t("save")));
    f.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var body = { section: f.elements["section"].value, region: f.elements["region"].value.trim() || null, name: readTexts(f, "name"),
        phone: f.elements["phone"].value.trim() || null, note: readTexts(f, "note"), url: f.elements["url"].value.trim() || null };
      var req = e ? kit.api("PUT", "/api/admin/directory/" + encodeURIComponent(e.id), body)
        : kit.api("POST", "/api/admin/directory", Object.assign(body, { id: f.elements["id"].value.trim() }));
      req.then(done, failed);
    });
    box.appendChild(f);
    f.querySelector("input, select").focus();
  }

  // --- the change log ------------------------------------------------------------------------

  function drawChanges(box) {
    kit.api("GET", "/api/admin/changes").then(function (changes) {
      var ul = el("ul", { "id": "admin-changes-list" });
      changes.slice(0, 100).forEach(function (c) {
        var what = c.kind + " " + c.target + ": " + c.action;
        if (c.values) { what += " " + JSON.stringify(c.values); }
        if (c.fields) { what += " (" + c.fields.join(", ") + ")"; }
        ul.appendChild(el("li", {}, String(c.at).replace("T", " ").slice(0, 19) + " · " + c.by + " · " + what));
      });
      box.appendChild(ul);
    }).catch(failed);
  }

  // --- a password set by someone else --------------------------------------------------------

  // Shown instead of the console until the person chooses their own password (the API answers
  // nothing else meanwhile); then the console starts as after any log-in.
  function changePassword(k, then) {
    kit = k;
    var box = $("password-change");
    box.hidden = false;
    box.textContent = "";
    box.appendChild(el("h2", {}, t("change_password")));
    box.appendChild(el("p", {}, t("change_password_hint")));
    var f = el("form", { "id": "password-change-form" });
    f.appendChild(field(t("current_password"), input("current", "", { "type": "password", "autocomplete": "current-password" })));
    f.appendChild(field(t("new_password"), input("new", "", { "type": "password", "autocomplete": "new-password" })));
    f.appendChild(el("button", { "type": "submit" }, t("save")));
    var msg = el("p", { "role": "alert" });
    f.appendChild(msg);
    f.addEventListener("submit", function (ev) {
      ev.preventDefault();
      kit.api("PUT", "/api/me/password", { current: f.elements["current"].value, "new": f.elements["new"].value }).then(function () {
        box.hidden = true; box.textContent = "";
        then();
      }, function (err) { say(msg, problemText(err), true); });
    });
    box.appendChild(f);
    f.elements["current"].focus();
  }

  // --- wiring --------------------------------------------------------------------------------

  function start(k) {
    kit = k;
    var me = kit.me() || {};
    var opener = $("admin-open");
    opener.hidden = !(me.role === "supervisor" || me.role === "admin" || me.role === "national_admin");
    opener.textContent = t("admin");
    if (started) { return; }
    started = true;
    opener.addEventListener("click", toggle);
  }

  function language() {
    if (!kit) { return; }
    $("admin-open").textContent = t("admin");
    if (!panel().hidden) { draw(); }
  }

  window.HotlineAdmin = { start: start, language: language, changePassword: changePassword };
}());
