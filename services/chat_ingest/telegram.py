"""The Telegram bot's decisions, as pure functions: parse an update, and decide what the bot
answers from the configuration (menu, emergency contacts, the directory by region, the
questions before talking to a consultant) and what goes on to a consultant.

No I/O here: :mod:`services.chat_ingest.telegram_bot` sends, stores and publishes.

Callback data (at most 64 bytes, Bot API ``InlineKeyboardButton``):
``m`` menu, ``e`` emergency contacts, ``d`` choose a region for the directory, ``d:<region>``
its entries, ``c`` talk to a consultant (choose region), ``c:<region>`` choose a topic,
``t:<region>:<topic>`` ready to write, ``x`` not safe now (as ``/notsafe``); ``-`` stands for
"skip".

"Not safe now" (``/notsafe`` or the menu's button): the bot deletes the chat's messages it may
still delete and answers nothing (an answer would stay on the phone). The Bot API's
``deleteMessage`` lets a bot delete, in a private chat, its own messages and the user's, less
than 48 hours old (https://core.telegram.org/bots/api#deletemessage); ``deleteMessages`` takes
1-100 ids at once. :func:`deletable_after` and :func:`batches` are those rules.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from services.chat_ingest.frames import repaired
from shared.config import DirectoryEntry, HotlineConfig

MAX_TEXT = 4096  # Bot API sendMessage text limit
SKIP = "-"
# deleteMessage: "a message can only be deleted if it was sent less than 48 hours ago"; a few
# minutes are kept in hand for clocks and the time the deletion itself takes.
DELETABLE_FOR = timedelta(hours=48)
DELETE_MARGIN = timedelta(minutes=5)
DELETE_BATCH = 100  # deleteMessages: 1-100 identifiers
# Message ids kept per chat: a long conversation within 48 hours, and a bound on what one
# chat can make us store.
KEEP_PER_CHAT = 500
NOT_SAFE_COMMANDS = {"/notsafe"}

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "hello": "Hello. This is a safe place to ask for help. You do not have to give your name. "
        "Choose what you need, or just write your message.",
        "emergency": "Emergency contacts",
        "directory": "Find help in my region",
        "consultant": "Talk to a consultant",
        "menu": "Menu",
        "skip": "Skip",
        "choose_region": "Which region are you in?",
        "choose_topic": "What is it about?",
        "write_now": "Write your message here. A consultant will answer in this chat.",
        "on_duty": "Consultants are on duty now.",
        "off_duty": "Nobody is on duty now (hours {open}-{close}); write anyway and we will answer then.",
        "no_entries": "We have no addresses for this region yet. Call the national helplines:",
        "danger": "If you are in danger now, call:",
        "unsupported": "I can read text only. Please write your message in words.",
        "not_safe": "Not safe now: hide this chat",
        "unreadable": "Part of your message could not be read; a consultant sees the rest.",
    },
    "ru": {
        "hello": "Здравствуйте. Здесь можно безопасно попросить о помощи, имя называть не нужно. "
        "Выберите, что вам нужно, или просто напишите сообщение.",
        "emergency": "Экстренные контакты",
        "directory": "Помощь в моём регионе",
        "consultant": "Написать консультанту",
        "menu": "Меню",
        "skip": "Пропустить",
        "choose_region": "В каком вы регионе?",
        "choose_topic": "О чём ваш вопрос?",
        "write_now": "Напишите сообщение здесь. Консультант ответит в этом чате.",
        "on_duty": "Консультанты сейчас на связи.",
        "off_duty": "Сейчас никого нет на связи (часы работы {open}-{close}); напишите, мы ответим.",
        "no_entries": "Для этого региона у нас пока нет адресов. Звоните на общенациональные линии:",
        "danger": "Если вам угрожает опасность, звоните:",
        "unsupported": "Я понимаю только текст. Пожалуйста, напишите словами.",
        "not_safe": "Сейчас небезопасно: скрыть чат",
        "unreadable": "Часть вашего сообщения не удалось прочитать; остальное консультант видит.",
    },
    "be": {
        "hello": "Добры дзень. Тут можна бяспечна папрасіць дапамогі, імя называць не трэба. "
        "Абярыце, што вам трэба, або проста напішыце паведамленне.",
        "emergency": "Экстраныя кантакты",
        "directory": "Дапамога ў маім рэгіёне",
        "consultant": "Напісаць кансультанту",
        "menu": "Меню",
        "skip": "Прапусціць",
        "choose_region": "У якім вы рэгіёне?",
        "choose_topic": "Пра што ваша пытанне?",
        "write_now": "Напішыце паведамленне тут. Кансультант адкажа ў гэтым чаце.",
        "on_duty": "Кансультанты зараз на сувязі.",
        "off_duty": "Зараз нікога няма на сувязі (гадзіны працы {open}-{close}); напішыце, мы адкажам.",
        "no_entries": "Для гэтага рэгіёна ў нас пакуль няма адрасоў. "
        "Тэлефануйце на агульнанацыянальныя лініі:",
        "danger": "Калі вам пагражае небяспека, тэлефануйце:",
        "unsupported": "Я разумею толькі тэкст. Калі ласка, напішыце словамі.",
        "not_safe": "Зараз небяспечна: схаваць чат",
        "unreadable": "Частку вашага паведамлення не ўдалося прачытаць; астатняе кансультант бачыць.",
    },
}


class BadUpdate(ValueError):
    """The body is not a Telegram update we can read."""


@dataclass(frozen=True)
class Update:
    update_id: int
    chat_id: int
    kind: str  # "text", "callback", "other"
    text: str = ""
    data: str = ""
    callback_id: str | None = None
    language_code: str | None = None
    private: bool = True
    message_id: int | None = None  # the client's message (text and other kinds)
    sent_at: datetime | None = None  # its ``date``, by Telegram's clock
    repaired: bool = False  # the text held lone surrogates, now U+FFFD (frames.repaired)


@dataclass(frozen=True)
class BotReply:
    text: str
    keyboard: list[list[tuple[str, str]]] = field(default_factory=list)  # rows of (label, data)

    def payload(self, chat_id: int) -> dict[str, Any]:
        body: dict[str, Any] = {"chat_id": chat_id, "text": self.text[:MAX_TEXT]}
        if self.keyboard:
            body["reply_markup"] = {
                "inline_keyboard": [
                    [{"text": label, "callback_data": data} for label, data in row] for row in self.keyboard
                ]
            }
        return body


@dataclass(frozen=True)
class Decision:
    replies: list[BotReply] = field(default_factory=list)
    forward: str | None = None  # text for a consultant
    remember: dict[str, Any] = field(default_factory=dict)  # chat choices to store
    hide: bool = False  # not safe now: delete the chat's messages, mark the thread


def parse_update(body: bytes) -> Update | None:
    """The update in ``body``; None for kinds the bot does not handle (edits, channel posts).

    Raises :class:`BadUpdate` when the body is not an update at all.
    """
    try:
        raw = json.loads(body)
    except (ValueError, RecursionError):
        raise BadUpdate("not JSON") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("update_id"), int):
        raise BadUpdate("no update_id")
    uid = raw["update_id"]
    if isinstance(raw.get("message"), dict):
        msg = raw["message"]
        chat = msg.get("chat")
        if not isinstance(chat, dict) or not isinstance(chat.get("id"), int):
            raise BadUpdate("message without chat id")
        sender = _obj(msg.get("from"))
        text = msg.get("text") if isinstance(msg.get("text"), str) else ""
        # Repaired like a web chat message (frames.repaired): a lone surrogate would make the
        # message unpublishable, so the webhook would fail on it for as long as Telegram retries.
        fixed = repaired(text)
        mid, date = msg.get("message_id"), msg.get("date")
        return Update(
            uid,
            chat["id"],
            "text" if text.strip() else "other",
            text=fixed,
            language_code=_lang_code(sender),
            private=chat.get("type", "private") == "private",
            message_id=mid if isinstance(mid, int) else None,
            sent_at=unix_time(date),
            repaired=fixed is not text,
        )
    if isinstance(raw.get("callback_query"), dict):
        cq = raw["callback_query"]
        msg = _obj(cq.get("message"))
        chat = _obj(msg.get("chat"))
        if not isinstance(chat.get("id"), int) or not isinstance(cq.get("id"), str):
            raise BadUpdate("callback without chat or id")
        data = repaired(cq["data"]) if isinstance(cq.get("data"), str) else ""
        sender = _obj(cq.get("from"))
        return Update(
            uid,
            chat["id"],
            "callback",
            data=data[:64],
            callback_id=cq["id"],
            language_code=_lang_code(sender),
            private=chat.get("type", "private") == "private",
        )
    return None


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def unix_time(value: Any) -> datetime | None:
    """A Bot API ``date`` (Unix seconds) as an aware UTC time; None when it is not one."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 2**35:
        return None
    return datetime.fromtimestamp(value, UTC)


def deletable_after(now: datetime) -> datetime:
    """Messages sent after this may still be deleted by the bot ``now`` (see the module's doc)."""
    return now - DELETABLE_FOR + DELETE_MARGIN


def batches(ids: list[int]) -> Iterator[list[int]]:
    """``ids`` in calls of deleteMessages, each 1-100 ids."""
    for i in range(0, len(ids), DELETE_BATCH):
        yield ids[i : i + DELETE_BATCH]


def _lang_code(sender: dict[str, Any]) -> str | None:
    code = sender.get("language_code")
    return code[:2].lower() if isinstance(code, str) else None


def language(config: HotlineConfig, remembered: str | None, code: str | None) -> str:
    """The chat's language: remembered, else Telegram's language of the user, else the first."""
    for lang in (remembered, code):
        if lang in config.languages and lang in TEXT:
            return lang
    return next((lang for lang in config.languages if lang in TEXT), "en")


def _t(lang: str, key: str, **values: str) -> str:
    text = TEXT.get(lang, TEXT["en"]).get(key) or TEXT["en"][key]
    return text.format(**values) if values else text


def _named(texts: dict[str, str], lang: str) -> str:
    return texts.get(lang) or texts.get("en") or next(iter(texts.values()), "")


def _entry(entry: DirectoryEntry, lang: str) -> str:
    parts = [_named(entry.name, lang)]
    if entry.phone:
        parts[0] += f": {entry.phone}"
    if entry.address:
        parts.append(_named(entry.address, lang))
    if entry.note:
        parts.append(_named(entry.note, lang))
    if entry.url:
        parts.append(entry.url)
    return "\n".join(parts)


def menu(lang: str) -> BotReply:
    return BotReply(
        _t(lang, "hello"),
        [
            [(_t(lang, "emergency"), "e")],
            [(_t(lang, "directory"), "d")],
            [(_t(lang, "consultant"), "c")],
            [(_t(lang, "not_safe"), "x")],
        ],
    )


def emergency(config: HotlineConfig, lang: str) -> BotReply:
    lines = [_t(lang, "danger")]
    lines += [_entry(e, lang) for e in config.directory.emergency]
    lines += [_entry(e, lang) for e in config.directory.national]
    return BotReply("\n\n".join(lines), [[(_t(lang, "menu"), "m")]])


def _regions(config: HotlineConfig, lang: str, prefix: str, skip: bool) -> list[list[tuple[str, str]]]:
    rows = [[(_named(names, lang), f"{prefix}:{rid}")] for rid, names in config.regions.items()]
    if skip:
        rows.append([(_t(lang, "skip"), f"{prefix}:{SKIP}")])
    return rows


def directory(config: HotlineConfig, lang: str, region: str) -> BotReply:
    entries = config.directory.regions.get(region, [])
    lines = [_named(config.regions[region], lang)]
    if entries:
        lines += [_entry(e, lang) for e in entries]
    else:
        lines.append(_t(lang, "no_entries"))
    lines += [_entry(e, lang) for e in config.directory.national]
    return BotReply("\n\n".join(lines), [[(_t(lang, "consultant"), "c")], [(_t(lang, "menu"), "m")]])


def decide(config: HotlineConfig, line: str, chat: dict[str, Any], update: Update, on_duty: bool) -> Decision:
    """What the bot does with one update, given what it remembers of the chat (``chat``:
    ``language``, ``region``, ``topic``)."""
    lang = language(config, chat.get("language"), update.language_code)
    remember: dict[str, Any] = {} if chat.get("language") == lang else {"language": lang}
    if update.kind == "text":
        # "/start", "/start@hotline_bot", "/start <deep-link payload>" are all the command.
        command = update.text.split(maxsplit=1)[0].split("@", 1)[0] if update.text.startswith("/") else ""
        if command in {"/start", "/menu", "/help"}:
            return Decision([menu(lang)], remember=remember)
        if command == "/emergency":
            return Decision([emergency(config, lang)], remember=remember)
        if command in NOT_SAFE_COMMANDS:
            return Decision([], remember=remember, hide=True)
        # Anything else is for a consultant, with or without the questions answered. Text that
        # had to be repaired goes on too, and its sender is told what the consultant will see.
        notice = [BotReply(_t(lang, "unreadable"))] if update.repaired else []
        return Decision(notice, forward=update.text, remember=remember)
    if update.kind == "other":
        return Decision([BotReply(_t(lang, "unsupported"))], remember=remember)
    data = update.data
    if data == "x":
        return Decision([], remember=remember, hide=True)
    if data == "e":
        return Decision([emergency(config, lang)], remember=remember)
    if data == "d":
        return Decision(
            [BotReply(_t(lang, "choose_region"), _regions(config, lang, "d", False))], remember=remember
        )
    if data.startswith("d:") and data[2:] in config.regions:
        return Decision([directory(config, lang, data[2:])], remember=remember)
    if data == "c":
        return Decision(
            [BotReply(_t(lang, "choose_region"), _regions(config, lang, "c", True))], remember=remember
        )
    if data.startswith("c:"):
        region = data[2:]
        if region != SKIP and region not in config.regions:
            return Decision([menu(lang)], remember=remember)
        topics = config.lines[line].topics
        rows = [[(_named(t.title, lang), f"t:{region}:{tid}")] for tid, t in topics.items()]
        rows.append([(_t(lang, "skip"), f"t:{region}:{SKIP}")])
        return Decision([BotReply(_t(lang, "choose_topic"), rows)], remember=remember)
    if data.startswith("t:"):
        _, region, topic = [*data.split(":", 2), "", ""][:3]
        if (region != SKIP and region not in config.regions) or (
            topic != SKIP and topic not in config.lines[line].topics
        ):
            return Decision([menu(lang)], remember=remember)
        hours = config.lines[line].hours
        duty = (
            _t(lang, "on_duty")
            if on_duty
            else _t(lang, "off_duty", open=hours.open.strftime("%H:%M"), close=hours.close.strftime("%H:%M"))
        )
        remember = {
            **remember,
            "region": None if region == SKIP else region,
            "topic": None if topic == SKIP else topic,
        }
        return Decision([BotReply(f"{_t(lang, 'write_now')}\n{duty}")], remember=remember)
    return Decision([menu(lang)], remember=remember)
