// Quarantined mail in the supervisor view: each mail the e-mail intake could not turn into a
// message, with its reason and facts (GET /api/quarantine: never its content), and Replay
// (POST /api/quarantine/replay), which asks the intake to read it again and hand it over.
// Same safety rule as console.js: every text from the network goes in with textContent.
(function () {
  "use strict";

  var I18N = {
    en: {
      title: "Quarantined mail", none: "No mail in quarantine.", replay: "Replay",
      requested: "replay asked for", last: "last replay", mailbox: "mailbox", line: "line",
      kept: "kept", not_kept: "not kept (cannot be replayed)", size: "KiB",
      reasons: {
        too_large: "too large", too_many_parts: "too many parts", nesting_too_deep: "nested too deep",
        headers_too_large: "headers too large", parser_error: "could not be parsed",
        handover_error: "could not be handed over", database_refused: "the database refused it",
        unencodable: "text that cannot be stored", mime_structure: "broken structure"
      }
    },
    ru: {
      title: "Письма в карантине", none: "В карантине писем нет.", replay: "Повторить",
      requested: "повтор запрошен", last: "последний повтор", mailbox: "ящик", line: "линия",
      kept: "сохранено", not_kept: "не сохранено (повторить нельзя)", size: "КиБ",
      reasons: {
        too_large: "слишком большое", too_many_parts: "слишком много частей", nesting_too_deep: "слишком глубокая вложенность",
        headers_too_large: "слишком большие заголовки", parser_error: "не удалось разобрать",
        handover_error: "не удалось передать", database_refused: "база данных отказала",
        unencodable: "текст, который нельзя сохранить", mime_structure: "повреждённая структура"
      }
    },
    be: {
      title: "Лісты ў каранціне", none: "У каранціне лістоў няма.", replay: "Паўтарыць",
      requested: "паўтор запытаны", last: "апошні паўтор", mailbox: "скрыня", line: "лінія",
      kept: "захавана", not_kept: "не захавана (паўтарыць нельга)", size: "КіБ",
      reasons: {
        too_large: "занадта вялікі", too_many_parts: "занадта шмат частак", nesting_too_deep: "занадта глыбокая ўкладзенасць",
        headers_too_large: "занадта вялікія загалоўкі", parser_error: "не ўдалося разабраць",
        handover_error: "не ўдалося перадаць", database_refused: "база даных адмовіла",
        unencodable: "тэкст, які нельга захаваць", mime_structure: "пашкоджаная структура"
      }
    }
  };

  function load(box, kit) {
    var lang = kit.lang(), el = kit.el;
    var t = function (key) { return (I18N[lang] && I18N[lang][key]) || I18N.en[key]; };
    var reason = function (code) {
      var kind = String(code || "").split(":")[0];
      var named = (t("reasons") || {})[kind];
      return named ? named + " (" + code + ")" : String(code || "");
    };
    return kit.api("GET", "/api/quarantine").then(function (mails) {
      box.textContent = "";
      box.appendChild(el("h3", { "id": "quarantine-title" }, t("title")));
      var ul = el("ul", { "id": "sup-quarantine-list", "aria-labelledby": "quarantine-title" });
      mails.forEach(function (m) {
        var li = el("li", { "data-source": m.source_id, "data-reason": m.reason });
        var facts = [reason(m.reason), t("line") + " " + (m.line || "?"), t("mailbox") + " " + m.mailbox,
          Math.max(1, Math.round((m.size || 0) / 1024)) + " " + t("size"),
          new Date(m.stored_at).toLocaleString(lang), m.kept ? t("kept") : t("not_kept")];
        if (m.last_replay) { facts.push(t("last") + ": " + m.last_replay.outcome); }
        li.appendChild(el("span", { "class": "facts" }, facts.join(" · ")));
        if (m.replay_requested) {
          li.appendChild(el("span", { "class": "requested" }, " · " + t("requested")));
        } else if (m.kept) {
          var btn = el("button", { "type": "button", "class": "replay" }, t("replay"));
          btn.addEventListener("click", function () {
            btn.disabled = true;
            kit.api("POST", "/api/quarantine/replay", { source_id: m.source_id })
              .then(function () { load(box, kit); })
              .catch(function (err) { btn.disabled = false; kit.showError(err); });
          });
          li.appendChild(btn);
        }
        ul.appendChild(li);
      });
      if (!mails.length) { ul.appendChild(el("li", {}, t("none"))); }
      box.appendChild(ul);
    });
  }

  window.HotlineQuarantine = { load: load };
})();
