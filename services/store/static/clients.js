// The person behind a thread, beside the open thread in the console: their earlier
// consultations (GET /api/threads/{id}/earlier, only those the consultant's organisation may
// see) and the control that says "this chat is the same person as that thread" or undoes it.
// Same safety rule as console.js: every text from the network goes in with textContent.
(function () {
  "use strict";

  var I18N = {
    en: {
      earlier: "Earlier consultations", none_known: "No earlier consultation you may see.",
      unknown: "Who this is is not known (a chat names nobody).", loading: "…",
      consultation: "consultation", no_consultation: "no consultation", this_thread: "this thread",
      same_person: "Same person as", choose: "— a thread of yours —", or_id: "or thread id",
      link: "Link", undo: "Undo link", linked_by: "Linked by", open: "open"
    },
    ru: {
      earlier: "Прежние обращения", none_known: "Нет прежних обращений, доступных вам.",
      unknown: "Кто это, неизвестно (чат не называет человека).", loading: "…",
      consultation: "консультация", no_consultation: "без консультации", this_thread: "это обращение",
      same_person: "Тот же человек, что в", choose: "— ваше обращение —", or_id: "или номер обращения",
      link: "Связать", undo: "Отменить связь", linked_by: "Связал(а)", open: "открыть"
    },
    be: {
      earlier: "Ранейшыя кансультацыі", none_known: "Няма ранейшых кансультацый, даступных вам.",
      unknown: "Хто гэта, невядома (чат не называе чалавека).", loading: "…",
      consultation: "кансультацыя", no_consultation: "без кансультацыі", this_thread: "гэтая размова",
      same_person: "Той самы чалавек, што ў", choose: "— ваша размова —", or_id: "або нумар размовы",
      link: "Звязаць", undo: "Адмяніць сувязь", linked_by: "Звязаў(-ла)", open: "адкрыць"
    }
  };
  var picked = {}; // thread id -> what the consultant chose or typed, kept across re-draws

  function panel(th, kit) {
    var lang = kit.lang();
    var t = function (key) { return (I18N[lang] && I18N[lang][key]) || I18N.en[key]; };
    var el = kit.el, path = "/api/threads/" + encodeURIComponent(th.id);
    var box = el("details", { "id": "person", "open": "" });
    box.appendChild(el("summary", {}, t("earlier")));
    var list = el("ul", { "id": "earlier", "aria-label": t("earlier") });
    list.appendChild(el("li", {}, t("loading")));
    box.appendChild(list);
    kit.api("GET", path + "/earlier").then(function (found) {
      list.textContent = "";
      if (!th.client_id) { list.appendChild(el("li", { "class": "meta" }, t("unknown"))); }
      else if (!found.length) { list.appendChild(el("li", { "class": "meta" }, t("none_known"))); }
      found.forEach(function (c) { list.appendChild(row(c, th, kit, t)); });
    }).catch(function () { list.textContent = ""; });
    var me = kit.me(), isSup = me.role === "supervisor" || me.role === "admin" || me.role === "national_admin";
    if (th.client_link) {
      box.appendChild(el("p", { "class": "meta" }, t("linked_by") + " " + th.client_link.by + " · " +
        new Date(th.client_link.at).toLocaleString(lang)));
      var undo = el("button", { "type": "button", "id": "client-unlink" }, t("undo"));
      undo.addEventListener("click", function () { kit.api("DELETE", path + "/client").then(kit.reopen).catch(kit.showError); });
      box.appendChild(undo);
    } else if (th.status !== "closed" && (isSup || (th.status === "active" && th.assignee === me.login))) {
      box.appendChild(linkForm(th, kit, t, path));
    }
    return box;
  }

  function row(c, th, kit, t) {
    var el = kit.el, lang = kit.lang();
    var fields = (kit.config() && kit.config().case_form[c.line]) || {};
    var reasons = (kit.config() && kit.config().close_reasons) || {};
    var when = new Date(c.started_at).toLocaleDateString(lang);
    var outcome = c.outcome === "no_consultation"
      ? t("no_consultation") + (c.reason ? ": " + kit.pick(reasons[c.reason], c.reason) : "")
      : t("consultation");
    var head = [when, c.channel, c.line, outcome, (c.consultants || []).join(", ") || c.closed_by || ""];
    if (c.thread_id === th.id) { head.push(t("this_thread")); }
    var li = el("li", { "class": "earlier" });
    li.appendChild(el("div", {}, head.filter(Boolean).join(" · ")));
    // The case summary: each categorical answer by its label, in the console's language.
    var answers = Object.keys(c.case || {}).map(function (name) {
      var f = fields[name] || {}, values = [].concat(c.case[name]);
      return kit.pick(f.label, name) + ": " + values.map(function (v) { return kit.pick((f.options || {})[v], v); }).join(", ");
    });
    if (answers.length) { li.appendChild(el("div", { "class": "meta" }, answers.join("; "))); }
    return li;
  }

  function linkForm(th, kit, t, path) {
    var el = kit.el;
    var form = el("form", { "id": "client-link" });
    var sel = el("select", { "name": "link_thread" });
    sel.appendChild(el("option", { "value": "" }, t("choose")));
    var typed = el("input", { "name": "link_thread_id", "aria-label": t("or_id"), "placeholder": t("or_id") });
    typed.value = picked[th.id] || "";
    typed.addEventListener("input", function () { picked[th.id] = typed.value.trim(); });
    sel.addEventListener("change", function () { picked[th.id] = sel.value; typed.value = sel.value; });
    // Candidates: the consultant's own threads, open or lately closed (a chat of nobody known
    // becomes a person when linked to).
    Promise.all([
      kit.api("GET", "/api/threads?mine=1&status=active"),
      kit.api("GET", "/api/threads?mine=1&status=closed&limit=50")
    ]).then(function (lists) {
      lists[0].concat(lists[1]).forEach(function (o) {
        if (o.id === th.id || (o.client_id && o.client_id === th.client_id)) { return; }
        var label = "[" + o.channel + "] " + (o.subject || o.id.slice(0, 8)) + " · " +
          new Date(o.waiting_since || o.created_at).toLocaleDateString(kit.lang());
        sel.appendChild(el("option", { "value": o.id }, label));
      });
    }).catch(function () { /* the id field still works */ });
    var l = el("label", {}); l.appendChild(el("span", {}, t("same_person"))); l.appendChild(sel);
    form.appendChild(l);
    form.appendChild(typed);
    form.appendChild(el("button", { "type": "submit" }, t("link")));
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var other = (typed.value || sel.value).trim();
      if (!other) { return; }
      kit.api("POST", path + "/client", { thread: other }).then(function () {
        delete picked[th.id]; kit.reopen();
      }).catch(kit.showError);
    });
    return form;
  }

  window.HotlineClients = { panel: panel };
}());
