// Hotline consultant console: plain DOM, no build step.
// Safety rule: every text from the network goes into the page with textContent, never as
// HTML. The one exception is e-mail HTML, already sanitised twice (at ingest and when the
// store serves it), shown inside an iframe sandboxed without scripts under the store's CSP.
(function () {
  "use strict";

  var I18N = {
    en: {
      title: "Hotline console", login: "Login", password: "Password", log_in: "Log in", log_out: "Log out",
      sender_unverified: "Sender not verified", auth_verified: "sender verified", auth_failed: "sender not verified",
      auth_unknown: "sender not checked",
      sender_unverified_why: "the mail server did not confirm that this mail comes from the address it names: someone else may be writing in the person's name. It is kept apart from that person's other conversations; think before you reply.",
      language: "Language", availability: "Availability", available: "available", away: "away",
      offline: "offline", supervisor_view: "Supervisor view", consultant_view: "Consultant view",
      live: "live updates", queues: "Queues", threads: "Threads", next: "Next",
      hint: "Pick a queue, then press Next or open a thread.", queue: "Queue", waiting: "Waiting",
      oldest: "Oldest wait", urgent: "Urgent", held_by: "Held by", crises: "Crises waiting",
      consultants: "Consultants", nobody_waiting: "Nobody is waiting in this queue.",
      client: "Client", bot: "Automatic answer", note: "Internal note", status: "Status",
      take: "Take this conversation", reply: "Reply", send_reply: "Send reply",
      attach_file: "Attach a file (PDF or image)", remove_file: "Remove",
      canned: "Canned answer", choose: "— choose —", add_note: "Add note", note_label: "Note",
      transfer_to: "Transfer to", transfer_note: "Transfer note", transfer: "Transfer",
      release: "Release", close: "Close…", close_case: "Close with this case form",
      take_over: "Take over", watching: "Live: {who} holds this conversation; you see it as it happens, and they do not see you.",
      taken_over: "A supervisor took over a conversation you held", watch: "Watch",
      case_form: "Case form", cancel: "Cancel", quoted: "Quoted history", attachments: "Attachments",
      plain_text: "Plain text", formatted: "Formatted e-mail (images and links blocked)",
      missing: "Missing", invalid: "Not valid", delivery: "delivery", min: "min", h: "h",
      none: "none", crisis_alert: "Crisis waiting too long", held: "holds", nothing: "—",
      s_waiting: "waiting", s_active: "active", s_closed: "closed", mine: "yours",
      oldest_short: "oldest", no_consultation: "No consultation", reason: "Reason",
      close_no_consultation: "Close without consultation",
      client_left: "Client left", kept_language: "for a colleague who speaks {x}", kept_skill: "for a colleague with skill {x}", kept_until: "(anyone from {x})", left_quick_exit: "quick exit", left_silent: "no message for",
      close_left: "Close: client left", reports: "Reports",
      person_export: "Copy of the person's data (JSON)", person_erase: "Erase the person's data",
      person_erase_confirm: "Erase everything this person wrote and everything written about them, in all their closed conversations you can see, for good? Statistics stay.",
      not_safe: "Not safe: do not reply until they write", not_safe_alert: "Client not safe now",
      session_ended: "Your session ended: logged out elsewhere, or the account was disabled. Log in again.",
      not_safe_list: "Not safe now", reply_held: "No reply can be sent: the client said it is not safe to talk now. Replies open again once they write.",
      no_sender: "Cannot reply: no usable sender address",
      no_sender_why: "Cannot reply: the mail gave no usable sender address, so no answer can be sent by e-mail. Its text is shown above.",
      unreadable_part: "Part of the mail could not be read"
    },
    ru: {
      title: "Консоль горячей линии", login: "Логин", password: "Пароль", log_in: "Войти", log_out: "Выйти",
      sender_unverified: "Отправитель не подтверждён", auth_verified: "отправитель подтверждён",
      auth_failed: "отправитель не подтверждён", auth_unknown: "отправитель не проверялся",
      sender_unverified_why: "почтовый сервер не подтвердил, что письмо пришло с указанного в нём адреса: от имени человека может писать кто-то другой. Обращение отделено от других обращений этого человека; подумайте, прежде чем отвечать.",
      language: "Язык", availability: "Доступность", available: "на связи", away: "отошла(ёл)",
      offline: "не в сети", supervisor_view: "Обзор супервизора", consultant_view: "Рабочее место",
      live: "обновления в реальном времени", queues: "Очереди", threads: "Обращения", next: "Следующий",
      hint: "Выберите очередь и нажмите «Следующий» или откройте обращение.", queue: "Очередь",
      waiting: "Ждут", oldest: "Дольше всех", urgent: "Срочные", held_by: "У кого",
      crises: "Кризисные в ожидании", consultants: "Консультанты",
      nobody_waiting: "В этой очереди никто не ждёт.", client: "Клиент", bot: "Автоответ",
      note: "Внутренняя заметка", status: "Статус", take: "Взять обращение", reply: "Ответ",
      send_reply: "Отправить", canned: "Шаблон ответа", choose: "— выберите —", add_note: "Добавить заметку",
      attach_file: "Приложить файл (PDF или изображение)", remove_file: "Убрать",
      note_label: "Заметка", transfer_to: "Передать в", transfer_note: "Комментарий к передаче",
      transfer: "Передать", release: "Вернуть в очередь", close: "Закрыть…",
      take_over: "Взять себе", watching: "В реальном времени: разговор ведёт {who}; вы видите его по ходу, вас не видно.",
      taken_over: "Супервизор взял(а) разговор, который вели вы", watch: "Смотреть",
      close_case: "Закрыть с этой анкетой", case_form: "Анкета обращения", cancel: "Отмена",
      quoted: "Цитата из переписки", attachments: "Вложения", plain_text: "Текст письма",
      formatted: "Оформленное письмо (картинки и ссылки заблокированы)", missing: "Не заполнено",
      invalid: "Неверно", delivery: "доставка", min: "мин", h: "ч", none: "нет",
      crisis_alert: "Кризисное обращение ждёт слишком долго", held: "ведёт", nothing: "—",
      s_waiting: "ждёт", s_active: "в работе", s_closed: "закрыто", mine: "ваше", oldest_short: "дольше всех",
      no_consultation: "Без консультации", reason: "Причина", close_no_consultation: "Закрыть без консультации",
      client_left: "Клиент ушёл", kept_language: "для коллеги, говорящей на языке {x}", kept_skill: "для коллеги с навыком {x}", kept_until: "(для всех с {x})", left_quick_exit: "быстрый выход", left_silent: "нет сообщений уже",
      close_left: "Закрыть: клиент ушёл", reports: "Отчёты",
      person_export: "Копия данных человека (JSON)", person_erase: "Стереть данные человека",
      person_erase_confirm: "Стереть навсегда всё, что этот человек написал и что написано о нём, во всех его закрытых обращениях, которые вам видны? Статистика останется.",
      not_safe: "Небезопасно: не писать, пока клиент не напишет сам", not_safe_alert: "Клиенту сейчас небезопасно",
      session_ended: "Сеанс завершён: выход в другом окне или учётная запись отключена. Войдите снова.",
      not_safe_list: "Сейчас небезопасно", reply_held: "Ответ отправить нельзя: клиент сообщил, что сейчас говорить небезопасно. Ответить можно, когда клиент напишет снова.",
      no_sender: "Ответить нельзя: нет пригодного адреса отправителя",
      no_sender_why: "Ответить нельзя: в письме нет пригодного адреса отправителя, поэтому ответ по почте не отправить. Текст письма показан выше.",
      unreadable_part: "Часть письма не удалось прочитать"
    },
    be: {
      title: "Кансоль гарачай лініі", login: "Лагін", password: "Пароль", log_in: "Увайсці", log_out: "Выйсці",
      sender_unverified: "Адпраўнік не пацверджаны", auth_verified: "адпраўнік пацверджаны",
      auth_failed: "адпраўнік не пацверджаны", auth_unknown: "адпраўнік не правяраўся",
      sender_unverified_why: "паштовы сервер не пацвердзіў, што ліст прыйшоў з адраса, названага ў ім: ад імя чалавека можа пісаць хтосьці іншы. Размова аддзелена ад іншых размоў гэтага чалавека; падумайце, перш чым адказваць.",
      language: "Мова", availability: "Даступнасць", available: "на сувязі", away: "няма на месцы",
      offline: "не ў сетцы", supervisor_view: "Агляд супервізара", consultant_view: "Працоўнае месца",
      live: "абнаўленні ў рэальным часе", queues: "Чэргі", threads: "Размовы", next: "Наступная",
      hint: "Выберыце чаргу і націсніце «Наступная» або адкрыйце размову.", queue: "Чарга",
      waiting: "Чакаюць", oldest: "Даўжэй за ўсіх", urgent: "Тэрміновыя", held_by: "У каго",
      crises: "Крызісныя ў чаканні", consultants: "Кансультанты",
      nobody_waiting: "У гэтай чарзе ніхто не чакае.", client: "Кліент", bot: "Аўтаадказ",
      note: "Унутраная нататка", status: "Статус", take: "Узяць гэтую размову", reply: "Адказ",
      send_reply: "Адправіць", canned: "Шаблон адказу", choose: "— выберыце —", add_note: "Дадаць нататку",
      attach_file: "Далучыць файл (PDF або відарыс)", remove_file: "Прыбраць",
      note_label: "Нататка", transfer_to: "Перадаць у", transfer_note: "Каментарый да перадачы",
      transfer: "Перадаць", release: "Вярнуць у чаргу", close: "Закрыць…",
      take_over: "Узяць сабе", watching: "У рэальным часе: размову вядзе {who}; вы бачыце яе па ходзе, вас не відаць.",
      taken_over: "Супервізар узяў(-ла) размову, якую вялі вы", watch: "Глядзець",
      close_case: "Закрыць з гэтай анкетай", case_form: "Анкета размовы", cancel: "Скасаваць",
      quoted: "Цытата з перапіскі", attachments: "Укладанні", plain_text: "Тэкст ліста",
      formatted: "Аформлены ліст (выявы і спасылкі заблакаваныя)", missing: "Не запоўнена",
      invalid: "Няправільна", delivery: "дастаўка", min: "хв", h: "гадз", none: "няма",
      crisis_alert: "Крызісная размова чакае занадта доўга", held: "вядзе", nothing: "—",
      s_waiting: "чакае", s_active: "у рабоце", s_closed: "закрыта", mine: "ваша", oldest_short: "даўжэй за ўсіх",
      no_consultation: "Без кансультацыі", reason: "Прычына", close_no_consultation: "Закрыць без кансультацыі",
      client_left: "Кліент пайшоў", kept_language: "для калегі, што размаўляе на мове {x}",
      kept_skill: "для калегі з навыкам {x}", kept_until: "(для ўсіх з {x})", left_quick_exit: "хуткі выхад", left_silent: "няма паведамленняў ужо",
      close_left: "Закрыць: кліент пайшоў", reports: "Справаздачы",
      person_export: "Копія даных чалавека (JSON)", person_erase: "Сцерці даныя чалавека",
      person_erase_confirm: "Сцерці назаўсёды ўсё, што гэты чалавек напісаў і што напісана пра яго, ва ўсіх яго закрытых размовах, якія вам бачныя? Статыстыка застанецца.",
      not_safe: "Небяспечна: не пісаць, пакуль кліент не напіша сам", not_safe_alert: "Кліенту зараз небяспечна",
      session_ended: "Сеанс скончыўся: выхад у іншым акне або ўліковы запіс адключаны. Увайдзіце зноў.",
      not_safe_list: "Зараз небяспечна", reply_held: "Адказ адправіць нельга: кліент паведаміў, што зараз гаварыць небяспечна. Адказаць можна, калі кліент напіша зноў.",
      no_sender: "Адказаць нельга: няма прыдатнага адраса адпраўніка",
      no_sender_why: "Адказаць нельга: у лісце няма прыдатнага адраса адпраўніка, таму адказ па пошце не адправіць. Тэкст ліста паказаны вышэй.",
      unreadable_part: "Частку ліста не ўдалося прачытаць"
    }
  };
  // The browser's language when the console was never switched: Belarusian, Russian, else English.
  var browserLang = (navigator.language || "en").slice(0, 2).toLowerCase();
  var lang = localStorage.getItem("hl_lang") || (browserLang === "be" || browserLang === "ru" ? browserLang : "en");
  if (!I18N[lang]) { lang = "en"; }
  function t(key) { return (I18N[lang] && I18N[lang][key]) || I18N.en[key] || key; }
  // A configured label ({ru, be, en}) in the console's language; a Belarusian one missing in the
  // configuration falls back on Russian before English, as the reports do (report_text.FALLBACK).
  var FALLBACK = { be: ["be", "ru", "en"], ru: ["ru", "en"], en: ["en"] };
  function pick(labels, fallback) {
    if (!labels) { return fallback; }
    var order = FALLBACK[lang] || [lang, "en"];
    for (var i = 0; i < order.length; i++) { if (labels[order[i]]) { return labels[order[i]]; } }
    return labels[Object.keys(labels)[0]] || fallback;
  }

  var csrf = sessionStorage.getItem("hl_csrf");
  var state = { queue: null, thread: null, me: null, config: null, queues: [], view: null, supervisor: false };
  var drafts = {};  // thread id -> {reply, note}: kept while live updates redraw the thread
  var $ = function (id) { return document.getElementById(id); };

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }

  // One API call: {body, next}, next being the URL of the following page when the answer
  // has a Link rel="next" header (paged lists), else null.
  function call(method, path, body, headers) {
    // Logging out: the page reloads in a moment; nothing more is asked, and an answer to what
    // was asked before goes nowhere (it would only be a 401 now).
    if (leaving) { return new Promise(function () {}); }
    var h = Object.assign({ "Accept": "application/json" }, headers || {});
    if (method !== "GET") { h["X-CSRF-Token"] = csrf || ""; }
    if (body !== undefined) { h["Content-Type"] = "application/json"; }
    return fetch(path, { method: method, headers: h, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body) }).then(function (r) {
      if (leaving) { return new Promise(function () {}); }
      if (r.status === 401) { sessionEnded(); throw new Error("not logged in"); }
      if (r.status === 204) { return { body: null, next: null }; }
      return r.json().then(function (j) {
        if (!r.ok) { var err = new Error(j.title || r.statusText); err.problem = j; throw err; }
        return { body: j, next: nextPage(r) };
      });
    });
  }

  function api(method, path, body, headers) {
    return call(method, path, body, headers).then(function (res) { return res.body; });
  }

  // RFC 8288 Link header: the rel="next" target, only if it is one of our own API paths.
  function nextPage(r) {
    var m = /<([^>]*)>\s*;\s*rel="?next"?/.exec(r.headers.get("Link") || "");
    return m && m[1].indexOf("/api/") === 0 ? m[1] : null;
  }

  // Every page of a paged list, in order.
  function apiAll(path, got) {
    return call("GET", path).then(function (res) {
      var all = (got || []).concat(res.body);
      return res.next ? apiAll(res.next, all) : all;
    });
  }

  // --- language ---------------------------------------------------------------------------

  function applyLanguage() {
    document.documentElement.lang = lang;
    $("reports-link").href = "/reports?lang=" + lang;  // the reports in the console's language
    document.querySelectorAll("[data-i18n]").forEach(function (e) { e.textContent = t(e.getAttribute("data-i18n")); });
    document.querySelectorAll("[data-i18n-title]").forEach(function (e) { e.title = t(e.getAttribute("data-i18n-title")); });
    document.querySelectorAll(".lang-select").forEach(function (s) { s.value = lang; });
    if (window.HotlineNotify) { window.HotlineNotify.language(lang); }
    if (window.HotlineShortcuts) { window.HotlineShortcuts.language(lang); }
    if (state.me) {
      $("supervisor-toggle").textContent = t(state.supervisor ? "consultant_view" : "supervisor_view");
      renderQueues(); loadThreads(); if (state.thread) { openThread(state.thread, true); }
      if (state.supervisor) { loadSupervisor(); }
      if (window.HotlineCases) { window.HotlineCases.language(); }
      if (window.HotlinePhone) { window.HotlinePhone.language(); }
      if (window.HotlineSearch) { window.HotlineSearch.language(); }
      if (window.HotlineAdmin) { window.HotlineAdmin.language(); }
    }
  }
  document.querySelectorAll(".lang-select").forEach(function (s) {
    s.addEventListener("change", function () { lang = s.value; localStorage.setItem("hl_lang", lang); applyLanguage(); });
  });

  // --- log-in ------------------------------------------------------------------------------

  function showLogin() {
    state.me = null; $("app").hidden = true; $("login").hidden = false;
    if (sessionStorage.getItem("hl_ended")) { $("login-notice").hidden = false; sessionStorage.removeItem("hl_ended"); }
  }

  // The session ended while the console showed it (logged out in another tab, the account
  // disabled, expired): the page is loaded afresh, so nothing it showed stays in the page or
  // in memory (threads, drafts, the other panels) for whoever uses this screen next, and the
  // log-in form says why. Before a log-in there is nothing to clear.
  var leaving = false;
  function sessionEnded() {
    if (!state.me) { showLogin(); return; }
    if (leaving) { return; }  // our own Log out: it reloads the page itself
    state.me = null;
    sessionStorage.removeItem("hl_csrf");
    sessionStorage.setItem("hl_ended", "1");
    location.reload();
  }

  function showApp(me) {
    state.me = me;
    if (me.must_change_password && window.HotlineAdmin) {
      // A password an administrator set: the person chooses their own before anything else.
      $("login").hidden = true;
      window.HotlineAdmin.changePassword(kit, function () { showApp(Object.assign({}, me, { must_change_password: false })); });
      return;
    }
    $("login").hidden = true; $("app").hidden = false; $("login-notice").hidden = true;
    $("who").textContent = me.name + " (" + me.role + ")";
    $("availability").value = me.status || "offline";
    $("supervisor-toggle").hidden = !(me.role === "supervisor" || me.role === "admin" || me.role === "national_admin");
    $("reports-link").hidden = !(me.role === "supervisor" || me.role === "admin" || me.role === "national_admin");
    api("GET", "/api/config").then(function (c) { state.config = c; applyLanguage(); });
    loadQueues(); connectEvents();
    if (window.HotlineCases) { window.HotlineCases.start(kit); }
    if (window.HotlinePhone) { window.HotlinePhone.start(kit); }
    if (window.HotlineSearch) { window.HotlineSearch.start(kit); }
    if (window.HotlineShift) { window.HotlineShift.start(kit); }
    if (window.HotlineNotify) {
      window.HotlineNotify.open = function (id) { openThread(id); };
      window.HotlineNotify.where = function (ev) { return queueTitle(ev.queue); };
      window.HotlineNotify.user(me);
      window.HotlineNotify.init();
    }
    if (window.HotlineAdmin) { window.HotlineAdmin.start(kit); }
    if (window.HotlineTotp) { window.HotlineTotp.start(kit); }
  }

  $("login-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var f = ev.target;
    fetch("/api/session", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ login: f.login.value, password: f.password.value }) })
      .then(function (r) { return r.json().then(function (j) { return { ok: r.ok, j: j }; }); })
      .then(function (res) {
        if (!res.ok) { $("login-error").textContent = res.j.title; return; }
        csrf = res.j.csrf_token; sessionStorage.setItem("hl_csrf", csrf);
        f.password.value = "";
        // Past the password only: the second factor's step first (totp.js).
        if (res.j.second_factor) { window.HotlineTotp.step(res.j.second_factor, csrf, function (j) { showApp(j.consultant); }); return; }
        showApp(res.j.consultant);
      });
  });

  $("logout").addEventListener("click", function () {
    // Asked directly: every call after this one is held back (``call``), this one's answer too.
    var out = fetch("/api/session", { method: "DELETE", credentials: "same-origin",
      headers: { "Accept": "application/json", "X-CSRF-Token": csrf || "" } });
    leaving = true;
    out.finally(function () { sessionStorage.removeItem("hl_csrf"); location.reload(); });
  });

  $("availability").addEventListener("change", function () {
    api("PUT", "/api/me/status", { status: $("availability").value }).then(refreshSoon);
  });

  $("supervisor-toggle").addEventListener("click", function () {
    state.supervisor = !state.supervisor;
    $("supervisor").hidden = !state.supervisor;
    $("supervisor-toggle").textContent = t(state.supervisor ? "consultant_view" : "supervisor_view");
    $("supervisor-toggle").setAttribute("aria-pressed", String(state.supervisor));
    if (state.supervisor) { loadSupervisor(); }
  });

  // --- queues and threads ------------------------------------------------------------------

  function since(iso) {
    if (!iso) { return t("nothing"); }
    var minutes = Math.max(0, Math.floor((Date.now() - new Date(iso).getTime()) / 60000));
    return minutes < 60 ? minutes + " " + t("min") : Math.floor(minutes / 60) + " " + t("h") + " " + (minutes % 60) + " " + t("min");
  }

  // A chat whose client left (quick exit, or no message for the configured time): marked in
  // the list and the thread, and closed in one action (POST /api/threads/{id}/close-left).
  // "Not safe" (the client hid the conversation) is marked louder, and no reply can be sent
  // while it holds: the API refuses it (409) and the reply box gives way to a notice.
  function notSafe(th) {
    return !!(th.client_left && th.client_left.why === "not_safe" && th.status !== "closed");
  }

  function leftText(th) {
    var left = th.client_left;
    if (!left || th.status === "closed") { return ""; }
    if (notSafe(th)) { return t("not_safe"); }
    return t("client_left") + ": " + (left.why === "quick_exit" ? t("left_quick_exit") : t("left_silent") + " " + since(left.at));
  }

  function queueTitle(name) {
    var q = state.config && state.config.queues[name];
    return pick(q && q.title, name);
  }

  function loadQueues() {
    return api("GET", "/api/queues").then(function (queues) {
      state.queues = queues; renderQueues();
      if (window.HotlineNotify) { window.HotlineNotify.queues(queues); }  // the counts in the title
    });
  }

  // A list redrawn by a live update keeps the keyboard's place: the item that had the focus
  // (by its attribute ``attr``) has it again in the new list.
  function keepingFocus(list, attr, draw) {
    var had = document.activeElement && list.contains(document.activeElement) ?
      document.activeElement.getAttribute(attr) : null;
    draw();
    if (had === null) { return; }
    var again = list.querySelector("[" + attr + "=\"" + CSS.escape(had) + "\"]");
    if (again) { again.focus(); }
  }

  function renderQueues() {
    keepingFocus($("queues"), "data-queue", drawQueues);
  }

  function drawQueues() {
    var ul = $("queues"); ul.textContent = "";
    state.queues.forEach(function (q) {
      var b = el("button", { "type": "button", "data-queue": q.name, "aria-current": String(q.name === state.queue) });
      b.appendChild(el("span", { "class": "qname" }, pick(q.title, q.name)));
      b.appendChild(el("span", { "class": "badge", "data-waiting": q.name, "aria-label": t("waiting") }, q.waiting));
      b.appendChild(el("span", { "class": "oldest" }, q.waiting ? t("oldest_short") + ": " + since(q.oldest_waiting_since) : ""));
      b.addEventListener("click", function () { state.queue = q.name; renderQueues(); loadThreads(); });
      var li = el("li"); li.appendChild(b); ul.appendChild(li);
    });
  }

  var threadsLoad = 0;
  function loadThreads() {
    if (!state.queue) { return Promise.resolve(); }
    $("next").disabled = false;
    $("threads-title").textContent = t("threads") + ": " + queueTitle(state.queue);
    // Open threads by status: asked for all at once, the first page could be filled with
    // closed ones, and people waiting now would not be listed. Every page of them (200 a
    // page): on a busy shift, a person past the first page would otherwise not be seen at
    // all (docs/console.md, "pick a queue").
    var q = "/api/threads?queue=" + encodeURIComponent(state.queue) + "&status=";
    var load = ++threadsLoad;
    return Promise.all([apiAll(q + "waiting"), apiAll(q + "active")]).then(function (lists) {
      // A slower, older load (another queue, an earlier refresh) never draws over a newer one.
      if (load !== threadsLoad) { return; }
      keepingFocus($("threads"), "data-thread", function () { drawThreads(lists); });
    });
  }

  function drawThreads(lists) {
    var ul = $("threads"); ul.textContent = "";
    var listed = {};
    lists[0].concat(lists[1]).forEach(function (th) {
      // Pages are read one after another: a thread that moved meanwhile may come twice (or be
      // missed until the refresh that its move brings).
      if (listed[th.id]) { return; }
      listed[th.id] = true;
      var urgent = state.config && th.priority >= state.config.urgent_priority;
      var b = el("button", { "type": "button", "data-thread": th.id, "aria-current": String(th.id === state.thread),
        "class": (urgent ? "urgent" : "") + (th.client_left ? " left" : "") + (notSafe(th) ? " not-safe" : "") +
          (th.sender_unverified ? " unverified" : "") });
      b.appendChild(el("span", {}, "[" + th.channel + "] " + (th.subject || "chat") + " · " + t("s_" + th.status) +
        (th.assignee ? " · " + th.assignee : "") + (th.status === "waiting" ? " · " + since(th.waiting_since) : "")));
      if (leftText(th)) { b.appendChild(el("span", { "class": "left-mark" }, leftText(th))); }
      if (th.sender_unverified) { b.appendChild(el("span", { "class": "unverified-mark" }, t("sender_unverified"))); }
      if (th.reserved) { b.appendChild(el("span", { "class": "reserved-mark" }, keptText(th.reserved))); keptUntil(th.reserved.until); }
      b.addEventListener("click", function () { openThread(th.id); });
      var li = el("li"); li.appendChild(b); ul.appendChild(li);
    });
  }

  // A thread kept for a colleague with its language or skill (services/store/skills.py): marked,
  // and the list asked again when it becomes everyone's (the store's event says so too).
  function keptText(kept) {
    var f = kept["for"] || {}, parts = [];
    if (f.language) { parts.push(t("kept_language").replace("{x}", f.language)); }
    if (f.skill) { parts.push(t("kept_skill").replace("{x}", f.skill)); }
    return parts.join("; ") + " " + t("kept_until").replace("{x}", new Date(kept.until).toLocaleTimeString());
  }
  var keptTimer = null;
  function keptUntil(iso) {
    var wait = new Date(iso).getTime() - Date.now() + 500;
    if (keptTimer || wait <= 0) { return; }
    keptTimer = setTimeout(function () { keptTimer = null; refreshSoon(); }, Math.min(wait, 600000));
  }

  $("next").addEventListener("click", function () {
    api("POST", "/api/queues/" + encodeURIComponent(state.queue) + "/next").then(function (th) {
      if (!th) { var art = $("thread"); art.textContent = ""; art.appendChild(el("p", { "class": "hint" }, t("nobody_waiting"))); return; }
      openThread(th.id); loadQueues(); loadThreads();
    }).catch(showError);
  });

  function showError(err) {
    var box = $("thread-error") || $("thread");
    if (err && err.message !== "not logged in") {
      var p = el("p", { "class": "error", "role": "alert" }, (err.problem && (err.problem.detail || err.problem.title)) || err.message);
      if (box.id === "thread-error") { box.textContent = ""; }
      box.appendChild(p);
    }
  }

  // --- one thread ---------------------------------------------------------------------------

  function authorLabel(m) {
    if (m.direction === "note") { return t("note") + " · " + m.author.replace(/^consultant:/, ""); }
    if (m.author === "client") { return t("client"); }
    if (m.author === "bot") { return t("bot"); }
    return m.author.replace(/^consultant:/, "");
  }

  function emailFrame(html) {
    // No allow-scripts, no allow-same-origin: the frame can neither run code nor reach the console.
    var frame = el("iframe", { "sandbox": "", "class": "html", "title": t("formatted"), "referrerpolicy": "no-referrer" });
    frame.srcdoc = "<!doctype html><meta charset=\"utf-8\"><meta http-equiv=\"Content-Security-Policy\" " +
      "content=\"default-src 'none'\"><body>" + html + "</body>";
    return frame;
  }

  function renderMessage(m) {
    var cls = m.direction === "in" ? "in" : (m.direction === "note" ? "note" : "out");
    var d = el("div", { "class": "msg " + cls, "data-message": m.id });
    var meta = authorLabel(m) + " · " + new Date(m.created_at).toLocaleString(lang);
    if (m.direction === "out" && m.delivery) { meta += " · " + t("delivery") + ": " + m.delivery.status; }
    d.appendChild(el("div", { "class": "meta" }, meta));
    // What the mailbox's trusted mail server said of the sender (docs/email.md, authenticated threading).
    if (m.direction === "in" && m.channel === "email") {
      var verdict = (m.sender_auth && m.sender_auth.verdict) || "unknown";
      d.firstChild.appendChild(el("span", { "class": "sender-auth", "data-verdict": verdict,
        "title": (m.sender_auth && m.sender_auth.detail) || "" }, t("auth_" + verdict)));
    }
    // A reply the client's safe-contact plan holds (contact_plan.js): why, and Cancel.
    if (m.direction === "out" && m.delivery && m.delivery.status === "held" && window.HotlineContactPlan && state.thread) {
      d.classList.add("held");
      d.appendChild(window.HotlineContactPlan.held(m, state.thread, kit));
    }
    // What could not be read of a mail (services/email_ingest/mime.py): named, never hidden.
    (m.email_problems || []).forEach(function (p) {
      if (p === "no_sender" || p === "unreadable_part") {
        d.appendChild(el("p", { "class": "mail-problem", "data-problem": p, "role": "note" }, t(p)));
      }
    });
    if (m.subject) { d.appendChild(el("div", { "class": "subject" }, m.subject)); }
    if (m.html) {
      d.appendChild(emailFrame(m.html));
      var plain = el("details", { "class": "plain" });
      plain.appendChild(el("summary", {}, t("plain_text")));
      plain.appendChild(el("div", { "class": "text" }, m.text));
      d.appendChild(plain);
    } else {
      d.appendChild(el("div", { "class": "text" }, m.text));
    }
    if (m.quoted) {
      var q = el("details", { "class": "quoted" });
      q.appendChild(el("summary", {}, t("quoted")));
      q.appendChild(el("div", { "class": "text" }, m.quoted));
      d.appendChild(q);
    }
    if (m.attachments && m.attachments.length) {
      var ul = el("ul", { "class": "attachments", "aria-label": t("attachments") });
      m.attachments.forEach(function (a) {
        var label = a.filename + " (" + a.content_type + ", " + Math.ceil(a.size / 1024) + " KiB)";
        var li = el("li", {});
        // A download (services/store/attachments.py): never opened inside the console.
        li.appendChild(a.stored && state.thread ? el("a", {
          href: "/api/threads/" + encodeURIComponent(state.thread) + "/attachments/" + encodeURIComponent(a.id),
          download: a.filename, rel: "noopener"
        }, label) : el("span", {}, label));
        ul.appendChild(li);
      });
      d.appendChild(ul);
    }
    return d;
  }

  // What services/store/static/clients.js (the person's panel) and cases.js may use of the console.
  var kit = {
    api: api, el: el, pick: pick, showError: showError,
    caseFields: caseFields, caseValues: caseValues, caseProblem: caseProblem,
    lang: function () { return lang; },
    config: function () { return state.config; },
    me: function () { return state.me; },
    reopen: function () { openThread(state.thread); loadThreads(); },
    openThread: function (id) { return openThread(id); }
  };

  function openThread(id, keepActions) {
    var changedThread = state.thread !== id;
    state.thread = id;
    if (window.HotlineNotify) { window.HotlineNotify.opened(id); }
    return api("GET", "/api/threads/" + encodeURIComponent(id)).then(function (th) {
      var art = $("thread");
      var actionKey = th.status + "|" + th.assignee + "|" + th.queue + "|" + lang + "|" + (th.client_left ? th.client_left.why : "");
      var sameActions = !changedThread && state.view && state.view.actionKey === actionKey && $("actions");
      var actions = sameActions ? $("actions") : null;
      // A live update may rebuild the actions while the consultant types (a claimed thread moves
      // to the organisation's own queue): the drafts keep the text, and the control that had the
      // focus gets it back with its caret, so no keystroke goes to a control that is gone. Kept
      // actions are taken out of the page and put back too, which loses the focus as well.
      var typing = changedThread ? null : focusedControl();
      art.textContent = "";
      var h = el("h2", { "tabindex": "-1" }, (th.subject || "Chat") + " [" + th.channel + "]");
      art.appendChild(h);
      var facts = [t("status") + ": " + t("s_" + th.status) + (th.assignee ? " (" + th.assignee + ")" : ""), queueTitle(th.queue)];
      if (th.language) { facts.push(th.language); }
      if (th.region) { facts.push(th.region); }
      if (th.topic) { facts.push(th.topic); }
      art.appendChild(el("p", { "class": "meta", "id": "thread-meta" }, facts.join(" · ")));
      if (th.cannot_reply === "no_sender") {
        art.appendChild(el("p", { "class": "mail-problem", "id": "cannot-reply-mark", "role": "status" }, t("no_sender")));
      }
      if (leftText(th)) {
        art.appendChild(el("p", { "class": "left-mark" + (notSafe(th) ? " not-safe" : ""), "id": "client-left",
          "role": notSafe(th) ? "alert" : "status" }, leftText(th)));
      }
      if (th.sender_unverified) {
        art.appendChild(el("p", { "class": "unverified-mark", "id": "sender-unverified", "role": "status" },
          t("sender_unverified") + ": " + t("sender_unverified_why")));
      }
      var list = el("div", { "id": "messages" });
      th.messages.forEach(function (m) { list.appendChild(renderMessage(m)); });
      art.appendChild(list);
      art.appendChild(el("div", { "id": "thread-error" }));
      art.appendChild(actions || renderActions(th));
      if (window.HotlineClients) { art.appendChild(window.HotlineClients.panel(th, kit)); }
      if (window.HotlineContactPlan) { art.appendChild(window.HotlineContactPlan.panel(th, kit)); }
      if (window.HotlineShift) { art.insertBefore(window.HotlineShift.panel(th), list); }
      if (typing) { refocus(typing); }
      state.view = { actionKey: actionKey, thread: th };
      if (changedThread) { h.focus(); }
    }).catch(function (err) {
      if (err.problem && err.problem.status === 404) {
        state.thread = null; var art = $("thread"); art.textContent = "";
        art.appendChild(el("p", { "class": "hint" }, t("hint")));
      }
    });
  }

  function draft(id) { drafts[id] = drafts[id] || { reply: "", note: "" }; return drafts[id]; }

  // The control of the actions that has the focus: its form, its name and its caret.
  function focusedControl() {
    var box = $("actions"), active = document.activeElement;
    if (!box || !active || active === box || !box.contains(active)) { return null; }
    var form = active.closest("form");
    return {
      form: form ? form.id : "",
      name: active.getAttribute("name") || active.id || active.tagName,
      start: typeof active.selectionStart === "number" ? active.selectionStart : null,
      end: typeof active.selectionEnd === "number" ? active.selectionEnd : null
    };
  }

  function refocus(was) {
    var scope = (was.form && $(was.form)) || $("actions");
    if (!scope) { return; }
    var found = Array.prototype.filter.call(scope.querySelectorAll("textarea, input, select, button"), function (c) {
      return (c.getAttribute("name") || c.id || c.tagName) === was.name;
    })[0];
    if (!found) { return; }
    found.focus();
    if (was.start !== null && typeof found.setSelectionRange === "function") {
      var end = Math.min(was.end === null ? was.start : was.end, found.value.length);
      found.setSelectionRange(Math.min(was.start, end), end);
    }
  }

  function labelled(text, control) {
    var l = el("label", {}); l.appendChild(el("span", {}, text)); l.appendChild(control); return l;
  }

  function renderActions(th) {
    var box = el("div", { "id": "actions" });
    var id = th.id, me = state.me, isSup = me.role === "supervisor" || me.role === "admin" || me.role === "national_admin";
    var mine = th.status === "active" && th.assignee === me.login;
    var path = "/api/threads/" + encodeURIComponent(id);
    var after = function () { openThread(id); loadQueues(); loadThreads(); };

    var reasons = (state.config && state.config.close_reasons) || {};
    if (leftText(th) && reasons.silent && (th.status === "waiting" || mine)) {
      var left = el("button", { "type": "button", "id": "close-left" }, t("close_left"));
      left.addEventListener("click", function () { api("POST", path + "/close-left").then(after).catch(showError); });
      box.appendChild(left);
    }
    if (th.status === "waiting") {
      var claim = el("button", { "type": "button" }, t("take"));
      claim.addEventListener("click", function () { api("POST", path + "/claim").then(after).catch(showError); });
      box.appendChild(claim);
    }
    if (mine && notSafe(th)) {
      box.appendChild(el("p", { "id": "reply-held", "class": "not-safe" }, t("reply_held")));
    } else if (mine && th.cannot_reply === "no_sender") {
      // The reply box says why it cannot send (GET /api/threads/{id}: cannot_reply).
      box.appendChild(el("p", { "id": "cannot-reply", "class": "mail-problem" }, t("no_sender_why")));
    } else if (mine) {
      var form = el("form", { "id": "reply-form" });
      var ta = el("textarea", { "name": "text", "aria-label": t("reply"), "aria-keyshortcuts": "Alt+R" });
      ta.value = draft(id).reply;
      ta.addEventListener("input", function () { draft(id).reply = ta.value; });
      ta.addEventListener("keydown", function (ev) { if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { form.requestSubmit(); } });
      var canned = (state.config && state.config.canned_answers[th.line]) || [];
      if (canned.length) {
        var sel = el("select", { "id": "canned" });
        sel.appendChild(el("option", { "value": "" }, t("choose")));
        canned.forEach(function (a, i) { sel.appendChild(el("option", { "value": String(i) }, pick(a.title, "#" + i))); });
        sel.addEventListener("change", function () {
          if (sel.value === "") { return; }
          var a = canned[Number(sel.value)];
          // The client's language first, then the console's.
          ta.value = (ta.value ? ta.value + "\n\n" : "") + ((th.language && a.text[th.language]) || pick(a.text, ""));
          draft(id).reply = ta.value; sel.value = ""; ta.focus();
        });
        form.appendChild(labelled(t("canned"), sel));
      }
      form.appendChild(ta);
      // A file goes by e-mail only: uploaded (cleaned of its metadata by the server) when
      // chosen, kept in the draft, named in the reply when it is sent.
      var fileIds = function () { return (draft(id).files || []).map(function (f) { return f.id; }); };
      if (th.channel === "email") {
        var chooser = el("input", { "type": "file", "id": "reply-file", "accept": "application/pdf,image/*" });
        var chosen = el("ul", { "id": "reply-files" });
        var drawFiles = function () {
          chosen.textContent = "";
          (draft(id).files || []).forEach(function (f, i) {
            var li = el("li", {}, f.filename + " (" + Math.max(1, Math.round(f.size / 1024)) + " KB) ");
            var rm = el("button", { "type": "button", "aria-label": t("remove_file") + ": " + f.filename }, t("remove_file"));
            rm.addEventListener("click", function () { draft(id).files.splice(i, 1); drawFiles(); });
            li.appendChild(rm);
            chosen.appendChild(li);
          });
        };
        chooser.addEventListener("change", function () {
          var file = chooser.files && chooser.files[0];
          if (!file) { return; }
          var fd = new FormData();
          fd.append("file", file, file.name);
          fetch(path + "/attachments", { method: "POST", credentials: "same-origin", body: fd,
            headers: { "X-CSRF-Token": csrf || "", "Accept": "application/json" } }).then(function (r) {
            if (leaving) { return new Promise(function () {}); }
      if (r.status === 401) { sessionEnded(); throw new Error("not logged in"); }
            return r.json().then(function (j) {
              if (!r.ok) { var err = new Error(j.title || r.statusText); err.problem = j; throw err; }
              draft(id).files = (draft(id).files || []).concat([j]);
              chooser.value = "";
              drawFiles();
            });
          }).catch(function (err) { chooser.value = ""; showError(err); });
        });
        form.appendChild(labelled(t("attach_file"), chooser));
        form.appendChild(chosen);
        drawFiles();
      }
      form.appendChild(el("button", { "type": "submit" }, t("send_reply")));
      form.addEventListener("submit", function (ev) {
        ev.preventDefault();
        if (!ta.value.trim()) { return; }
        // A retry of the same reply reuses its key (sent once); an edited text is another reply
        // and needs another key (the API refuses a key reused with other text: 409). The key is
        // kept in the draft, so it outlives a redraw of the thread between a send whose answer
        // was lost and its retry (a live update, the language switched).
        var d = draft(id);
        var ids = fileIds();
        var sent = ta.value + "\n" + ids.join(",");  // the same text and files: the same reply
        var key = d.key && d.keyText === sent ? d.key
          : (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random());
        d.key = key;
        d.keyText = sent;
        var body = ids.length ? { text: ta.value, attachments: ids } : { text: ta.value };
        api("POST", path + "/messages", body, { "Idempotency-Key": key }).then(function () {
          delete d.key; ta.value = ""; d.reply = ""; d.files = []; openThread(id);
        }).catch(showError);
      });
      box.appendChild(form);
    }
    if (mine || isSup) {
      var nf = el("form", { "id": "note-form" });
      var nt = el("textarea", { "name": "note", "aria-label": t("note_label"), "class": "short" });
      nt.value = draft(id).note;
      nt.addEventListener("input", function () { draft(id).note = nt.value; });
      nf.appendChild(nt);
      nf.appendChild(el("button", { "type": "submit" }, t("add_note")));
      nf.addEventListener("submit", function (ev) {
        ev.preventDefault();
        if (!nt.value.trim()) { return; }
        api("POST", path + "/notes", { text: nt.value }).then(function () { nt.value = ""; draft(id).note = ""; openThread(id); }).catch(showError);
      });
      box.appendChild(nf);
    }
    if ((mine || isSup) && th.status !== "closed") {
      var tf = el("form", { "id": "transfer-form" });
      var qs = el("select", { "name": "queue" });
      Object.keys((state.config && state.config.queues) || {}).forEach(function (name) {
        if (name !== th.queue) { qs.appendChild(el("option", { "value": name }, queueTitle(name))); }
      });
      // Kept in the draft like the reply and the note: a live update re-draws the thread.
      if (draft(id).transferTo) { qs.value = draft(id).transferTo; }
      qs.addEventListener("change", function () { draft(id).transferTo = qs.value; });
      tf.appendChild(labelled(t("transfer_to"), qs));
      var tn = el("textarea", { "name": "transfer_note", "class": "short" });
      tn.value = draft(id).transferNote || "";
      tn.addEventListener("input", function () { draft(id).transferNote = tn.value; });
      tf.appendChild(labelled(t("transfer_note"), tn));
      tf.appendChild(el("button", { "type": "submit" }, t("transfer")));
      tf.addEventListener("submit", function (ev) {
        ev.preventDefault();
        api("POST", path + "/transfer", { queue: qs.value, note: tn.value }).then(function () {
          draft(id).transferNote = ""; draft(id).transferTo = ""; after();
        }).catch(showError);
      });
      box.appendChild(tf);
      if (isSup && th.status === "active" && th.assignee !== me.login) {
        // Watching: the thread follows its queue's events live; replying needs taking it over.
        box.insertBefore(el("p", { "id": "watching" }, t("watching").replace("{who}", th.assignee)), box.firstChild);
        var over = el("button", { "type": "button", "id": "take-over" }, t("take_over"));
        over.addEventListener("click", function () { api("POST", path + "/takeover").then(after).catch(showError); });
        box.appendChild(over);
      }
      if (th.status === "active") {
        var rel = el("button", { "type": "button", "id": "release", "aria-keyshortcuts": "Alt+L" }, t("release"));
        rel.addEventListener("click", function () { api("POST", path + "/release").then(after).catch(showError); });
        box.appendChild(rel);
      }
    }
    if (mine) {
      var closeBtn = el("button", { "type": "button", "id": "close-open" }, t("close"));
      closeBtn.addEventListener("click", function () {
        closeBtn.hidden = true; box.appendChild(caseForm(th, after)); $("case-form").querySelector("select, input").focus();
      });
      box.appendChild(closeBtn);
    }
    if (window.HotlineCases) { box.appendChild(window.HotlineCases.opener(th)); }
    if (isSup) {
      // A person's requests about their data (services/store/erasure.py): a copy, or erasure.
      var person = el("p", { "id": "person-data" });
      person.appendChild(el("a", { "href": path + "/person/export", "download": "" }, t("person_export")));
      var erase = el("button", { "type": "button", "id": "person-erase" }, t("person_erase"));
      erase.addEventListener("click", function () {
        if (!window.confirm(t("person_erase_confirm"))) { return; }
        api("POST", path + "/person/erase", { confirm: "erase" }).then(after).catch(showError);
      });
      person.appendChild(erase);
      box.appendChild(person);
    }
    return box;
  }

  // The case form's questions of a line (GET /api/config case_form), drawn into a form: a
  // fieldset per question, its label as legend with " *" when required, tick boxes for a
  // multi-answer question, a list otherwise. Used by the close dialog and by phone.js.
  function caseFields(form, fields, preset) {
    preset = preset || {};
    Object.keys(fields).forEach(function (name) {
      var f = fields[name];
      var label = pick(f.label, name) + (f.required ? " *" : "");
      var fs = el("fieldset", { "data-field": name });
      fs.appendChild(el("legend", {}, label));
      if (f.multiple) {
        Object.keys(f.options).forEach(function (opt) {
          var cb = el("input", { "type": "checkbox", "name": name, "value": opt });
          if ((preset[name] || []).indexOf(opt) >= 0) { cb.checked = true; }
          var l = el("label", { "class": "check" }); l.appendChild(cb); l.appendChild(el("span", {}, pick(f.options[opt], opt)));
          fs.appendChild(l);
        });
      } else {
        var sel = el("select", { "name": name, "aria-label": pick(f.label, name) });
        if (f.required) { sel.setAttribute("aria-required", "true"); }
        sel.appendChild(el("option", { "value": "" }, t("choose")));
        Object.keys(f.options).forEach(function (opt) { sel.appendChild(el("option", { "value": opt }, pick(f.options[opt], opt))); });
        if (preset[name]) { sel.value = preset[name]; }
        fs.appendChild(sel);
      }
      form.appendChild(fs);
    });
  }

  // The answers given in a form drawn by caseFields, as the API takes them (unanswered left out).
  function caseValues(form, fields) {
    var c = {};
    Object.keys(fields).forEach(function (name) {
      if (fields[name].multiple) {
        var vals = Array.prototype.map.call(form.querySelectorAll("input[name=\"" + name + "\"]:checked"), function (i) { return i.value; });
        if (vals.length) { c[name] = vals; }
      } else {
        var v = form.querySelector("select[name=\"" + name + "\"]").value;
        if (v) { c[name] = v; }
      }
    });
    return c;
  }

  // A 422 answer's missing and invalid fields named by their labels, and their fieldsets marked;
  // returns the text to show.
  function caseProblem(form, fields, e) {
    var p = e.problem || {};
    var names = function (list) { return (list || []).map(function (n) { return pick(fields[n] && fields[n].label, n); }).join(", "); };
    var parts = [];
    if (p.missing && p.missing.length) { parts.push(t("missing") + ": " + names(p.missing)); }
    if (p.invalid && p.invalid.length) { parts.push(t("invalid") + ": " + names(p.invalid)); }
    form.querySelectorAll("fieldset[data-field]").forEach(function (fs) {
      var bad = (p.missing || []).concat(p.invalid || []).indexOf(fs.getAttribute("data-field")) >= 0;
      fs.classList.toggle("bad", bad);
    });
    return parts.join(". ") || p.detail || e.message;
  }

  function caseForm(th, after) {
    var form = el("form", { "id": "case-form" });
    var fields = (state.config && state.config.case_form[th.line]) || {};
    form.appendChild(el("h3", {}, t("case_form")));
    caseFields(form, fields, { topics: th.topic ? [th.topic] : [], region: th.region });
    var err = el("p", { "id": "case-error", "role": "alert", "class": "error" });
    form.appendChild(err);
    form.appendChild(el("button", { "type": "submit" }, t("close_case")));
    var cancel = el("button", { "type": "button" }, t("cancel"));
    cancel.addEventListener("click", function () { form.remove(); $("close-open").hidden = false; });
    form.appendChild(cancel);
    form.appendChild(noConsultation(th, after, err));
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      api("POST", "/api/threads/" + encodeURIComponent(th.id) + "/close", { case: caseValues(form, fields) }).then(after).catch(function (e) {
        err.textContent = caseProblem(form, fields, e);
      });
    });
    return form;
  }

  // Spam, a test, a client who left...: closed with a configured reason and no case form, so
  // no answer is invented; statistics count it apart from consultations.
  function noConsultation(th, after, err) {
    var reasons = (state.config && state.config.close_reasons) || {};
    var fs = el("fieldset", { "id": "no-consultation", "data-field": "reason" });
    fs.appendChild(el("legend", {}, t("no_consultation")));
    var sel = el("select", { "name": "reason" });
    sel.appendChild(el("option", { "value": "" }, t("choose")));
    Object.keys(reasons).forEach(function (r) { sel.appendChild(el("option", { "value": r }, pick(reasons[r], r))); });
    fs.appendChild(labelled(t("reason"), sel));
    var btn = el("button", { "type": "button", "id": "close-no-consultation" }, t("close_no_consultation"));
    btn.addEventListener("click", function () {
      if (!sel.value) { err.textContent = t("missing") + ": " + t("reason"); fs.classList.add("bad"); sel.focus(); return; }
      api("POST", "/api/threads/" + encodeURIComponent(th.id) + "/close", { outcome: "no_consultation", reason: sel.value })
        .then(after).catch(function (e) {
          var p = e.problem || {};
          err.textContent = p.detail || e.message;
          fs.classList.toggle("bad", (p.missing || []).concat(p.invalid || []).indexOf("reason") >= 0);
        });
    });
    fs.appendChild(btn);
    return fs;
  }

  // --- supervisor ----------------------------------------------------------------------------

  function loadSupervisor() {
    return api("GET", "/api/supervisor").then(function (o) {
      var tb = $("sup-queues").querySelector("tbody"); tb.textContent = "";
      o.queues.forEach(function (q) {
        var tr = el("tr", { "data-queue": q.name });
        tr.appendChild(el("td", {}, pick(q.title, q.name)));
        tr.appendChild(el("td", { "class": "num" }, q.waiting));
        tr.appendChild(el("td", {}, q.waiting ? since(q.oldest_waiting_since) : t("nothing")));
        tr.appendChild(el("td", { "class": "num" + (q.urgent_waiting ? " hot" : "") }, q.urgent_waiting));
        // Each conversation held: a button that opens it to watch (and take over).
        var holders = el("td", { "class": "holders" });
        q.active.forEach(function (a) {
          var w = el("button", { "type": "button", "class": "watch", "data-thread": a.id, "title": t("watch") }, a.assignee + " [" + a.channel + "]");
          w.addEventListener("click", function () { openThread(a.id); });
          holders.appendChild(w);
        });
        if (!q.active.length) { holders.textContent = t("nothing"); }
        tr.appendChild(holders);
        tb.appendChild(tr);
      });
      var ns = $("sup-not-safe"); ns.textContent = "";
      (o.not_safe || []).forEach(function (a) {
        var li = el("li", { "data-thread": a.id });
        li.appendChild(el("span", {}, queueTitle(a.queue) + " · [" + a.channel + "] · " + t("s_" + a.status) +
          (a.assignee ? " (" + a.assignee + ")" : "") + " · " + since(a.client_left && a.client_left.at)));
        ns.appendChild(li);
      });
      if (!ns.childNodes.length) { ns.appendChild(el("li", {}, t("none"))); }
      var ul = $("sup-alerts"); ul.textContent = "";
      o.alerts.forEach(function (a) {
        var li = el("li", { "class": a.escalated_at ? "escalated" : "", "data-thread": a.id });
        li.appendChild(el("span", {}, queueTitle(a.queue) + " · [" + a.channel + "] · " + since(a.waiting_since)));
        ul.appendChild(li);
      });
      if (!o.alerts.length) { ul.appendChild(el("li", {}, t("none"))); }
      var pl = $("sup-people"); pl.textContent = "";
      o.consultants.forEach(function (c) {
        pl.appendChild(el("li", { "data-login": c.login }, c.name + " · " + t(c.status) + " · " + t("held") + " " + c.holds));
      });
      if (window.HotlineQuarantine) { return window.HotlineQuarantine.load($("sup-quarantine"), kit); }
    });
  }

  // A supervisor took over a conversation this consultant held: they are told where.
  function takenOverAlert(ev) {
    var box = $("alerts");
    box.hidden = false;
    box.appendChild(el("p", { "data-thread": ev.thread_id, "class": "taken-over" }, t("taken_over") + ": " + queueTitle(ev.queue)));
  }

  function crisisAlert(ev) {
    var box = $("alerts");
    box.hidden = false;
    box.appendChild(el("p", { "data-thread": ev.thread_id }, t("crisis_alert") + ": " + queueTitle(ev.queue)));
  }

  // A client said it is not safe now (ClientLeft with why not_safe): the supervisors are told.
  function notSafeAlert(ev) {
    var box = $("alerts");
    box.hidden = false;
    box.appendChild(el("p", { "data-thread": ev.thread_id, "class": "not-safe" },
      t("not_safe_alert") + ": " + queueTitle(ev.queue) + " · " + t("not_safe")));
  }

  // --- live events ---------------------------------------------------------------------------

  // A lone event refreshes the view within 50 ms; a burst of them (a backlog of mail being
  // imported, a busy evening) refreshes it at most once a second, with the last state.
  var pending = null, lastRefresh = 0, touched = { thread: false, supervisor: false };
  function refreshSoon() {
    if (pending) { return; }
    var wait = Math.max(50, lastRefresh + 1000 - Date.now());
    pending = setTimeout(function () {
      pending = null;
      lastRefresh = Date.now();
      loadQueues(); loadThreads();
      if (touched.thread && state.thread) { openThread(state.thread); }
      if (state.supervisor) { loadSupervisor(); }
      touched = { thread: false, supervisor: false };
    }, wait);
  }

  var events = null;
  function connectEvents() {
    if (events) { return; }
    var url = new URL("/api/events", location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    events = new WebSocket(url);
    events.onopen = function () {
      $("live").classList.add("on"); refreshSoon();
      if (window.HotlineCases) { window.HotlineCases.event(null); }  // events may have been missed
      if (window.HotlineShift) { window.HotlineShift.event(null); }
    };
    events.onmessage = function (ev) {
      var f = JSON.parse(ev.data);
      if (f.type !== "event") { return; }
      var sup = state.me && (state.me.role === "supervisor" || state.me.role === "admin" || state.me.role === "national_admin");
      if (f.name === "CrisisEscalated" && sup) { crisisAlert(f); }
      if (f.name === "ThreadTakenOver" && state.me && f.data && f.data.previous === state.me.login) { takenOverAlert(f); }
      if (f.name === "ClientLeft" && f.data && f.data.why === "not_safe" && sup) { notSafeAlert(f); }
      if (f.thread_id === state.thread) { touched.thread = true; }
      if (window.HotlineCases) { window.HotlineCases.event(f); }
      if (window.HotlineShift) { window.HotlineShift.event(f); }
      if (window.HotlineNotify) { window.HotlineNotify.event(f); }
      refreshSoon();
    };
    events.onclose = function (ev) {
      $("live").classList.remove("on"); events = null;
      // 4401: the session ended (logged out elsewhere, account disabled): log in again.
      if (ev.code === 4401) { sessionEnded(); return; }
      if (state.me) { setTimeout(connectEvents, 2000); }
    };
  }

  // Waiting times move on without events.
  setInterval(function () { if (state.me) { renderQueues(); } }, 30000);

  applyLanguage();
  api("GET", "/api/me").then(function (r) {
    // A console opened in a new tab has no token in its sessionStorage yet.
    csrf = r.csrf_token; sessionStorage.setItem("hl_csrf", csrf);
    showApp(r.consultant);
  }).catch(function () { showLogin(); });
}());
