"""A mail's automatic answer is in the language the mail is written in: the dispatcher reads
it from the mail (services/dispatcher/language.py) and the thread keeps it, as a chat thread
keeps the language its client chose. Mails through the real Dovecot, answers through the real
dispatcher, read back in the console's thread view."""

from __future__ import annotations

import re

from shared.config import load_config
from shared.settings import DEFAULT_CONFIG_PATH
from tests.conftest import Gateway
from tests.integration.email_support import queued_threads, supervisor
from tests.integration.helpers import Consultant, Mailbox, mail, new_message_id

CONFIG = load_config(DEFAULT_CONFIG_PATH)
WRITTEN = {
    "ru": ("Помогите", "Здравствуйте, муж угрожает мне, я не знаю, куда обратиться."),
    "be": ("Дапамажыце", "Добры дзень, муж пагражае мне, я не ведаю, куды звярнуцца."),
    "en": ("Help", "Hello, my employer abroad took my passport and I cannot leave."),
    # Ukrainian is not one of the line's languages: its first language answers.
    "uk": ("Допомога", "Доброго дня, мені потрібна допомога, чоловік погрожує."),
}


def says_in(text: str, language: str) -> bool:
    """Whether ``text`` is an automatic answer in ``language``: the acknowledgement, or the
    out-of-hours notice with its opening time filled in (``{opens}``)."""
    templates = (CONFIG.auto_answers.acknowledgement[language], CONFIG.auto_answers.out_of_hours[language])
    return any(re.fullmatch(re.escape(t).replace(re.escape("{opens}"), ".+"), text) for t in templates)


async def automatic_answer(who: Consultant, thread_id: str) -> tuple[str | None, str]:
    """The thread's language and the text of its automatic answer (stored before the thread
    is announced: services/dispatcher/dispatch.py)."""
    status, thread = await who.call("GET", f"/api/threads/{thread_id}")
    assert status == 200, thread
    (bot,) = [m for m in thread["messages"] if m.get("author") == "bot"]
    return thread.get("language"), bot["text"]


async def test_each_mail_is_answered_in_the_language_it_is_written_in(gateway: Gateway) -> None:
    sofia = await supervisor(gateway)
    inbox = Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.line_mailbox)
    try:
        threads: dict[str, str] = {}
        for written, (subject, body) in WRITTEN.items():
            await inbox.append(mail(f"{written}@example.org", "h@demo.test", subject, body, new_message_id()))
            (threads[written],) = await queued_threads(sofia, 1)
        answers = {written: await automatic_answer(sofia, t) for written, t in threads.items()}
    finally:
        await sofia.close()
    first = CONFIG.languages[0]
    for written, (language, text) in answers.items():
        expected = written if written in CONFIG.languages else None
        assert language == expected, written
        assert says_in(text, expected or first), (written, text)
    assert len({text for _, text in answers.values()}) == 3  # ru and uk alike, be and en their own
