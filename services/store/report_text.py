"""The words of the reports, in Russian, Belarusian and English.

Text the program writes (titles, headings, notes, month names, column headers) is in
:data:`TEXT`; names of values (topics, regions, genders, reasons...) come from the
configuration, which gives them per language. A configuration name missing in Belarusian falls
back to Russian, then English (Russian is read by everyone who reads Belarusian); a word missing
from :data:`TEXT` is a bug the unit tests catch (every key is in every language).
"""

from __future__ import annotations

from typing import Any

LANGUAGES = ("ru", "be", "en")
LANGUAGE_NAMES = {"ru": "Русский", "be": "Беларуская", "en": "English"}
FALLBACK = {"be": ("be", "ru", "en"), "ru": ("ru", "en"), "en": ("en",)}

MONTHS = {
    "en": ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"],
    "ru": ["Янв", "Фев", "Мар", "Апр", "Май", "Июн", "Июл", "Авг", "Сен", "Окт", "Ноя", "Дек"],
    "be": ["Сту", "Лют", "Сак", "Кра", "Тра", "Чэр", "Ліп", "Жні", "Вер", "Кас", "Ліс", "Сне"],
}

CHANNELS = {
    "en": {"email": "E-mail", "chat": "Web chat", "telegram": "Telegram", "phone": "Phone"},
    "ru": {"email": "Эл. почта", "chat": "Веб-чат", "telegram": "Telegram", "phone": "Телефон"},
    "be": {"email": "Эл. пошта", "chat": "Вэб-чат", "telegram": "Telegram", "phone": "Тэлефон"},
}

# key: (en, ru, be). Placeholders are str.format fields.
_TABLE: dict[str, tuple[str, str, str]] = {
    "title": ("Consultations {year}", "Консультации {year}", "Кансультацыі {year}"),
    "scope": (
        "{lines}; {org}; {first} to {last}, compared with the same dates of {previous}.",
        "{lines}; {org}; с {first} по {last}, в сравнении с теми же датами {previous} года.",
        "{lines}; {org}; з {first} па {last}, у параўнанні з тымі ж датамі {previous} года.",
    ),
    "no line": ("no line", "нет линии", "няма лініі"),
    "all organisations": ("all organisations", "все организации", "усе арганізацыі"),
    "internal": (
        "Exact figures for internal use; not for publication. "
        "Tick “for publication” to suppress small cells.",
        "Точные цифры для внутреннего использования; не для публикации. "
        "Отметьте «для публикации», чтобы скрыть малые ячейки.",
        "Дакладныя лічбы для ўнутранага выкарыстання; не для публікацыі. "
        "Адзначце «для публікацыі», каб схаваць малыя ячэйкі.",
    ),
    "All consultations": ("All consultations", "Все консультации", "Усе кансультацыі"),
    "Change": ("Change", "Изменение", "Змена"),
    "Share": ("Share", "Доля", "Доля"),
    "people": ("Distinct people (where known)", "Разных людей (где известно)", "Розных людзей (дзе вядома)"),
    "unknown people": (
        "Consultations of people not known",
        "Консультации, где человек неизвестен",
        "Кансультацыі, дзе чалавек невядомы",
    ),
    "Contacts without a consultation": (
        "Contacts without a consultation",
        "Обращения без консультации",
        "Звароты без кансультацыі",
    ),
    "no consultation note": (
        "Spam, tests, silent or abandoned contacts and the like: counted here, never in the "
        "consultations above.",
        "Спам, тесты, молчание, прерванные обращения и т. п.: считаются здесь и никогда не входят "
        "в консультации выше.",
        "Спам, тэсты, маўчанне, перарваныя звароты і г. д.: улічваюцца тут і ніколі не ўваходзяць "
        "у кансультацыі вышэй.",
    ),
    "Reason": ("Reason", "Причина", "Прычына"),
    "Contacts": ("Contacts", "Обращения", "Звароты"),
    "All": ("All", "Всего", "Усяго"),
    "all, {year}": ("all, {year}", "все, {year}", "усе, {year}"),
    "months": (
        "Requests per month, by channel",
        "Обращения по месяцам и каналам",
        "Звароты па месяцах і каналах",
    ),
    "footer": (
        "A consultation with several answers to one question (topics, services, referrals, kinds "
        "of abuse) counts under each, so those shares can add up to more than 100 %. Produced by "
        "hotline-gateway from the case forms; no message text is used.",
        "Консультация с несколькими ответами на один вопрос (темы, услуги, перенаправления, виды "
        "насилия) учитывается под каждым, поэтому такие доли могут в сумме превышать 100 %. "
        "Подготовлено hotline-gateway по формам обращений; текст сообщений не используется.",
        "Кансультацыя з некалькімі адказамі на адно пытанне (тэмы, паслугі, перанакіраванні, віды "
        "гвалту) улічваецца пад кожным, таму такія долі ў суме могуць перавышаць 100 %. "
        "Падрыхтавана hotline-gateway па формах зваротаў; тэкст паведамленняў не выкарыстоўваецца.",
    ),
    # sections
    "Requests by channel": ("Requests by channel", "Обращения по каналам", "Звароты па каналах"),
    "Women and men consulted": (
        "Women and men consulted",
        "Женщины и мужчины, получившие консультацию",
        "Жанчыны і мужчыны, якія атрымалі кансультацыю",
    ),
    "Age groups": ("Age groups", "Возрастные группы", "Узроставыя групы"),
    "Who contacted us": ("Who contacted us", "Кто обратился", "Хто звярнуўся"),
    "Topics": ("Topics", "Темы", "Тэмы"),
    "Top destination countries": (
        "Top destination countries",
        "Основные страны назначения",
        "Асноўныя краіны прызначэння",
    ),
    "Regions": ("Regions", "Регионы", "Рэгіёны"),
    "Services given": ("Services given", "Оказанные услуги", "Аказаныя паслугі"),
    "Referrals made": ("Referrals made", "Перенаправления", "Перанакіраванні"),
    "Kinds of abuse": ("Kinds of abuse", "Виды насилия", "Віды гвалту"),
    "Perpetrator's relation": ("Perpetrator's relation", "Кем приходится агрессор", "Кім даводзіцца агрэсар"),
    "Perpetrator's gender": ("Perpetrator's gender", "Пол агрессора", "Пол агрэсара"),
    "Children affected": ("Children affected", "Затронуты ли дети", "Ці закранутыя дзеці"),
    "Police measures": ("Police measures", "Меры милиции", "Меры міліцыі"),
    "Requests by line": ("Requests by line", "Обращения по линиям", "Звароты па лініях"),
    # dimensions and values
    "Channel": ("Channel", "Канал", "Канал"),
    "Line": ("Line", "Линия", "Лінія"),
    "Organisation": ("Organisation", "Организация", "Арганізацыя"),
    "Period": ("Period", "Период", "Перыяд"),
    "not answered": ("not answered", "нет ответа", "няма адказу"),
    # the filter form
    "Year": ("Year", "Год", "Год"),
    "Language": ("Language", "Язык", "Мова"),
    "all my lines": ("all my lines", "все мои линии", "усе мае лініі"),
    "for publication": ("for publication", "для публикации", "для публікацыі"),
    "Show": ("Show", "Показать", "Паказаць"),
    "Yearly report": ("Yearly report", "Годовой отчёт", "Гадавая справаздача"),
    "CSV by month": ("CSV by month", "CSV по месяцам", "CSV па месяцах"),
    "XLSX by month": ("XLSX by month", "XLSX по месяцам", "XLSX па месяцах"),
    # the assistance table (case reports)
    "assistance title": (
        "Types of assistance provided (people in cases)",
        "Виды оказанной помощи (люди в случаях)",
        "Віды аказанай дапамогі (людзі ў справах)",
    ),
    "assistance note": (
        "People given each kind of service in the year, by the date of the service; a person "
        "given several kinds counts under each, and once in the total.",
        "Люди, получившие каждый вид помощи за год, по дате её оказания; человек, получивший "
        "несколько видов, учитывается под каждым и один раз в итоге.",
        "Людзі, якія атрымалі кожны від дапамогі за год, па даце яе аказання; чалавек, які "
        "атрымаў некалькі відаў, улічваецца пад кожным і адзін раз у выніку.",
    ),
    "Assistance": ("Assistance", "Помощь", "Дапамога"),
    "People assisted": ("People assisted", "Получили помощь", "Атрымалі дапамогу"),
    "all organisations people": (
        "All organisations: {n} people.",
        "Все организации: {n} чел.",
        "Усе арганізацыі: {n} чал.",
    ),
    # the XLSX export
    "Count": ("Count", "Число", "Колькасць"),
    "Share, %": ("Share, %", "Доля, %", "Доля, %"),
    "Previous year": ("Previous year", "Прошлый год", "Мінулы год"),
    "Change, %": ("Change, %", "Изменение, %", "Змена, %"),
    "Consultations": ("Consultations", "Консультации", "Кансультацыі"),
    "People": ("People", "Люди", "Людзі"),
    "Consultations, previous year": (
        "Consultations, previous year",
        "Консультации, прошлый год",
        "Кансультацыі, мінулы год",
    ),
    "Note": ("Note", "Примечание", "Заўвага"),
    "not for publication": (
        "Exact figures for internal use: do not publish; use publish=1 for publication.",
        "Точные цифры для внутреннего использования: не публиковать; для публикации publish=1.",
        "Дакладныя лічбы для ўнутранага выкарыстання: не публікаваць; для публікацыі publish=1.",
    ),
    "Filter": ("Filter", "Фильтр", "Фільтр"),
    "dates": ("{first} to {last}", "с {first} по {last}", "з {first} па {last}"),
}

_INDEX = {"en": 0, "ru": 1, "be": 2}

# The suppression note in Russian and Belarusian; in English it is stats.suppression_note, the
# same words as the API's note.
SUPPRESSED = dict(
    zip(
        ("ru", "be"),
        (
            "Опубликованные цифры: числа от 1 до {m} скрыты, как и другие ячейки, выбранные так, чтобы "
            "ни одну скрытую ячейку нельзя было вычислить точнее, чем до {n}, из всех цифр, опубликованных "
            "за год, в любой таблице и разрезе (вторичное подавление, проверенное линейным "
            "программированием). Скрытые ячейки пусты в файлах данных и отмечены x в отчётах. "
            "Консультация с несколькими ответами на один вопрос учитывается под каждым, поэтому такие "
            "доли могут в сумме превышать 100 %.",
            "Апублікаваныя лічбы: лікі ад 1 да {m} схаваныя, як і іншыя ячэйкі, выбраныя так, каб ніводную "
            "схаваную ячэйку нельга было вылічыць дакладней, чым да {n}, з усіх лічбаў, апублікаваных за "
            "год, у любой табліцы і разрэзе (другаснае падаўленне, праверанае лінейным праграмаваннем). "
            "Схаваныя ячэйкі пустыя ў файлах даных і пазначаныя x у справаздачах. Кансультацыя з "
            "некалькімі адказамі на адно пытанне ўлічваецца пад кожным, таму такія долі ў суме могуць "
            "перавышаць 100 %.",
        ),
        strict=True,
    )
)


def language(raw: str | None) -> str | None:
    """The language asked for (``ru``, ``be``, ``en``; none: English), or None when unknown."""
    if not raw:
        return "en"
    return raw if raw in _INDEX else None


def text(lang: str, key: str, **values: Any) -> str:
    """The program's text ``key`` in ``lang``, with ``values`` filled in."""
    words = _TABLE[key][_INDEX[lang]]
    return words.format(**values) if values else words


def keys() -> list[str]:
    return list(_TABLE)


def pick(names: Any, lang: str, fallback: str) -> str:
    """A name from the configuration (``{ru: ..., be: ..., en: ...}``) in ``lang``."""
    if not names:
        return fallback
    names = dict(names)
    for code in FALLBACK.get(lang, (lang, "en")):
        if names.get(code):
            return str(names[code])
    return str(next(iter(names.values()), fallback))
