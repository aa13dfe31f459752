"""The Telegram bot against the real services and a local stand-in for the Bot API: webhook
secret, the menu answered from the configuration, a text to a consultant and the reply back,
getWebhookInfo in readiness and metrics, and "not safe now" (the bot deletes the chat's
messages it may, the thread is marked, replies are refused, the supervisor is told, and the
client writing again lifts it all)."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import aiohttp
import pytest

from conversations import model
from conversations.identity import thread_id_for
from conversations.repository import ChatRepository, Repository
from deploy.local.stack import LocalStack
from shared.envelope import utcnow
from shared.mongo import make_client
from tests.conftest import Gateway
from tests.fakes.telegram import FakeBotApi, Telegram
from tests.integration.chat_client import replica_logs, start_replica
from tests.integration.helpers import Consultant, logged_in
from tests.integration.test_vault import files_holding

TOKEN = "123456:TEST-token"
SECRET = "webhook-secret-" + "x" * 16


@dataclass
class Bot:
    api: FakeBotApi
    telegram: Telegram
    url: str  # the chat_ingest replica that has the bot


@pytest.fixture
async def bot(gateway: Gateway) -> AsyncIterator[Bot]:
    api = FakeBotApi({TOKEN})
    api.webhook_info = {
        "url": "https://chat.example.org/telegram/dvbot/webhook",
        "has_custom_certificate": False,
        "pending_update_count": 3,
        "last_error_date": 1_700_000_000,
        "last_error_message": "Wrong response from the webhook: 502 Bad Gateway",
    }
    await api.start()
    bots = {"dvbot": {"line": "dv", "token": TOKEN, "webhook_secret": SECRET}}
    # In a thread: the stand-in must answer the replica's start-up calls on this loop meanwhile.
    url = await asyncio.to_thread(
        start_replica,
        gateway,
        "chat_ingest_telegram",
        telegram_bots=json.dumps(bots),
        telegram_api_base=api.url,
        telegram_max_retry_after="5",
    )
    async with aiohttp.ClientSession() as http:
        try:
            yield Bot(api, Telegram(http, f"{url}/telegram/dvbot/webhook", SECRET, api), url)
        finally:
            await api.stop()


async def test_the_webhook_takes_only_signed_updates_and_reports_the_webhook_state(bot: Bot) -> None:
    tg = bot.telegram
    update = tg.text(501, "/start")
    assert await tg.post(update, secret="") == 401
    assert await tg.post(update, secret="wrong-secret-" + "y" * 16) == 401
    async with tg.http.post(
        bot.url + "/telegram/nobot/webhook", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
    ) as resp:
        assert resp.status == 404
    assert await tg.post(None, raw=b"{not json") == 400
    assert await tg.post(None, raw=b'{"message": {}}') == 400
    assert await tg.post(None, raw=b"[" * 5000 + b"]" * 5000) == 400
    assert await tg.post(None, raw=b'{"update_id": 1, "message": {"text": "' + b"x" * 70_000 + b'"}}') == 413
    # An edit or a group message is not a client writing to us: accepted and ignored.
    assert await tg.post({"update_id": 7, "edited_message": {"chat": {"id": 1}}}) == 200
    assert bot.api.sent() == []
    assert await tg.post(update) == 200  # the right one still works
    await bot.api.wait_for(lambda: len(bot.api.sent(501)) == 1)

    async with tg.http.get(bot.url + "/readyz") as resp:
        ready = await resp.json()
    assert resp.status == 200
    assert ready["details"]["telegram"]["dvbot"] == {
        "reachable": True,
        "url_set": True,
        "pending_update_count": 3,
        "last_error_date": 1_700_000_000,
        "last_error_message": "Wrong response from the webhook: 502 Bad Gateway",
    }
    async with tg.http.get(bot.url + "/metrics") as resp:
        metrics = await resp.text()
    assert 'hotline_telegram_webhook_pending_updates{bot="dvbot"} 3.0' in metrics
    assert 'hotline_telegram_webhook_last_error_timestamp_seconds{bot="dvbot"} 1.7e+09' in metrics


async def test_the_bot_answers_the_menu_from_the_configuration_without_a_consultant(bot: Bot) -> None:
    tg, api, chat = bot.telegram, bot.api, 502
    assert await tg.post(tg.text(chat, "/start", lang="en")) == 200
    (menu,) = api.sent(chat)
    buttons = [row[0]["callback_data"] for row in menu.body["reply_markup"]["inline_keyboard"]]
    assert buttons == ["e", "d", "c", "x"]
    assert "Emergency contacts" in json.dumps(menu.body)

    assert await tg.post(tg.button(chat, "e", lang="en")) == 200
    emergency = api.sent(chat)[-1].body["text"]
    for number in ("102", "103", "8-801-100-8-801", "113"):
        assert number in emergency
    assert [c.body["callback_query_id"] for c in api.calls if c.method == "answerCallbackQuery"] != []

    assert await tg.post(tg.button(chat, "d", lang="en")) == 200
    regions = [r[0]["callback_data"] for r in api.sent(chat)[-1].body["reply_markup"]["inline_keyboard"]]
    assert "d:brest" in regions and "d:minsk_city" in regions
    assert await tg.post(tg.button(chat, "d:brest", lang="en")) == 200
    directory = api.sent(chat)[-1].body["text"]
    assert "Brest region" in directory and "Crisis room" in directory and "8-801-100-8-801" in directory

    # The language the user picked in Telegram is remembered (be here), and texts follow it.
    other = 503
    assert await tg.post(tg.text(other, "/start", lang="be")) == 200
    assert "Экстраныя кантакты" in json.dumps(api.sent(other)[-1].body, ensure_ascii=False)


async def test_a_text_reaches_a_consultant_with_region_and_topic_and_the_reply_goes_back(
    gateway: Gateway, bot: Bot, vera: Consultant
) -> None:
    tg, api, chat = bot.telegram, bot.api, 504
    canary = f"CANARY-{uuid.uuid4().hex}"
    assert await tg.post(tg.button(chat, "c", lang="ru")) == 200
    assert await tg.post(tg.button(chat, "c:gomel", lang="ru")) == 200
    topics = [r[0]["callback_data"] for r in api.sent(chat)[-1].body["reply_markup"]["inline_keyboard"]]
    assert "t:gomel:legal" in topics and topics[-1] == "t:gomel:-"
    assert await tg.post(tg.button(chat, "t:gomel:psychological", lang="ru")) == 200
    assert "Консультант ответит" in api.sent(chat)[-1].body["text"]

    assert await tg.post(tg.text(chat, f"Мне нужна помощь {canary}")) == 200
    queued = await vera.wait_event(lambda e: e["name"] == "ThreadQueued")
    status, thread = await vera.call("POST", "/api/queues/gp-dv/next")
    assert status == 200 and thread["id"] == queued["thread_id"]
    assert (thread["channel"], thread["region"], thread["topic"], thread["language"]) == (
        "telegram",
        "gomel",
        "psychological",
        "ru",
    )
    # The next text of the same chat joins the same thread.
    assert await tg.post(tg.text(chat, "Ещё одно")) == 200
    await vera.wait_event(lambda e: e["name"] == "MessageReceived" and e["thread_id"] == thread["id"])

    status, reply = await vera.call(
        "POST",
        f"/api/threads/{thread['id']}/messages",
        {"text": "Здравствуйте, я здесь."},
        {"Idempotency-Key": uuid.uuid4().hex},
    )
    assert status == 202
    await api.wait_for(lambda: any(c.body.get("text") == "Здравствуйте, я здесь." for c in api.sent(chat)))
    await vera.wait_event(lambda e: e["name"] == "MessageDelivered" and e["message_id"] == reply["id"])
    status, thread = await vera.call("GET", f"/api/threads/{thread['id']}")
    texts = [m["text"] for m in thread["messages"] if m["direction"] == "in"]
    assert texts == [f"Мне нужна помощь {canary}", "Ещё одно"]
    assert [m["delivery"]["status"] for m in thread["messages"] if m["id"] == reply["id"]] == ["sent"]
    assert canary not in replica_logs(gateway)
    assert TOKEN not in replica_logs(gateway) and SECRET not in replica_logs(gateway)


def deletions(api: FakeBotApi) -> list[tuple[str, int]]:
    return [(c.method, c.status) for c in api.calls if c.method.startswith("delete")]


async def reply(who: Consultant, thread_id: str, text: str) -> tuple[int, dict[str, object]]:
    return await who.call(
        "POST", f"/api/threads/{thread_id}/messages", {"text": text}, {"Idempotency-Key": uuid.uuid4().hex}
    )


async def test_not_safe_deletes_the_chat_marks_the_thread_tells_the_supervisor_until_they_write(
    gateway: Gateway, bot: Bot, vera: Consultant
) -> None:
    tg, api, chat = bot.telegram, bot.api, 511
    sofia = await logged_in(gateway.store_url, "sofia")
    await sofia.open_events()
    try:
        # A message of three days ago (Telegram redelivers for a day; a chat has older ones):
        # beyond what the Bot API lets a bot delete.
        old = tg.text(chat, "Давнее сообщение", date=int(time.time()) - 72 * 3600)
        assert await tg.post(old) == 200
        queued = await vera.wait_event(lambda e: e["name"] == "ThreadQueued")
        status, thread = await vera.call("POST", "/api/queues/gp-dv/next")
        assert status == 200 and thread["id"] == queued["thread_id"] and thread["channel"] == "telegram"
        # The automatic answer to a first message (acknowledgement, or out of hours).
        await api.wait_for(lambda: len(api.sent(chat)) == 1)
        assert await tg.post(tg.text(chat, "/start")) == 200
        assert await tg.post(tg.text(chat, "Мне страшно")) == 200
        await vera.wait_event(lambda e: e["name"] == "MessageReceived" and e["thread_id"] == thread["id"])
        status, sent = await reply(vera, thread["id"], "Я здесь, пишите.")
        assert status == 202, sent
        await vera.wait_event(lambda e: e["name"] == "MessageDelivered" and e["message_id"] == sent["id"])
        before = api.in_chat(chat)
        assert {k.text for k in before.values()} >= {"Давнее сообщение", "Мне страшно", "Я здесь, пишите."}
        hidden_at = time.monotonic()
        hide = tg.text(chat, "/notsafe")
        assert await tg.post(hide) == 200
        # Everything the bot may delete is gone, the command too; only the old message stays.
        assert {k.text for k in api.in_chat(chat).values()} == {"Давнее сообщение"}
        assert deletions(api) == [("deleteMessages", 200)]
        assert [c for c in api.sent(chat) if c.at >= hidden_at] == []  # nothing new is left on the phone

        left = await vera.wait_event(lambda e: e["name"] == "ClientLeft" and e["thread_id"] == thread["id"])
        assert left["data"]["why"] == "not_safe"
        told = await sofia.wait_event(lambda e: e["name"] == "ClientLeft" and e["thread_id"] == thread["id"])
        assert told["data"]["why"] == "not_safe"
        status, overview = await sofia.call("GET", "/api/supervisor")
        assert status == 200 and [t["id"] for t in overview["not_safe"]] == [thread["id"]]
        status, marked = await vera.call("GET", f"/api/threads/{thread['id']}")
        assert status == 200 and marked["client_left"]["why"] == "not_safe"
        status, refused = await reply(vera, thread["id"], "Вы здесь?")
        assert status == 409 and "Not safe" in str(refused["title"]), refused
        # A redelivered command changes nothing more.
        assert await tg.post(hide) == 200
        assert deletions(api) == [("deleteMessages", 200)]

        # They write again: the mark goes, and a reply reaches them.
        assert await tg.post(tg.text(chat, "Теперь могу говорить")) == 200
        back = await vera.wait_event(
            lambda e: e["name"] == "ClientReturned" and e["thread_id"] == thread["id"]
        )
        assert back["data"]["why"] == "not_safe"
        status, thread = await vera.call("GET", f"/api/threads/{thread['id']}")
        assert status == 200 and "client_left" not in thread
        status, overview = await sofia.call("GET", "/api/supervisor")
        assert status == 200 and overview["not_safe"] == []
        status, sent = await reply(vera, thread["id"], "Я рада, что вы вернулись.")
        assert status == 202, sent
        await api.wait_for(
            lambda: any(c.body.get("text") == "Я рада, что вы вернулись." for c in api.sent(chat))
        )
    finally:
        await sofia.close()


async def test_not_safe_from_the_menu_deletes_one_by_one_when_the_batch_is_refused(
    gateway: Gateway, bot: Bot
) -> None:
    tg, api, chat = bot.telegram, bot.api, 512
    assert await tg.post(tg.text(chat, "/start", lang="en")) == 200
    assert await tg.post(tg.button(chat, "e", lang="en")) == 200
    assert len(api.in_chat(chat)) == 3  # the command, the menu, the emergency contacts
    api.refuse_next("deleteMessages", 400, "Bad Request: message can't be deleted")
    assert await tg.post(tg.button(chat, "x", lang="en")) == 200
    assert api.in_chat(chat) == {}
    assert deletions(api) == [("deleteMessages", 400)] + [("deleteMessage", 200)] * 3
    # The button is answered (else it keeps spinning on the client's screen), and nothing is said.
    assert [c.method for c in api.calls[-5:]] == ["answerCallbackQuery", "deleteMessages"] + [
        "deleteMessage"
    ] * 3


async def test_a_chat_id_is_kept_nowhere_in_the_database(
    gateway: Gateway, bot: Bot, vera: Consultant, stack: LocalStack
) -> None:
    """Whoever holds the database, and not the keys, cannot tell which Telegram chats wrote:
    the thread's key and id, the bot's remembered choices and message trail name the chat by a
    keyed hash; its id is kept sealed, and replies still reach it."""
    tg, api = bot.telegram, bot.api
    chat = 7_000_000_000 + secrets.randbelow(999_999_999)
    assert await tg.post(tg.button(chat, "c", lang="ru")) == 200  # a remembered choice
    assert await tg.post(tg.text(chat, "Мне нужна помощь")) == 200
    queued = await vera.wait_event(lambda e: e["name"] == "ThreadQueued")
    assert (await vera.call("POST", "/api/queues/gp-dv/next"))[1]["id"] == queued["thread_id"]
    status, sent = await reply(vera, queued["thread_id"], "Я здесь")
    assert status == 202, sent
    await api.wait_for(lambda: any(c.body.get("text") == "Я здесь" for c in api.sent(chat)))
    assert await tg.post(tg.text(chat, "/notsafe")) == 200  # its trail was read by the pseudonym
    assert {k.text for k in api.in_chat(chat).values()} == set()
    await vera.wait_event(lambda e: e["name"] == "ClientLeft" and e["thread_id"] == queued["thread_id"])
    assert await tg.post(tg.text(chat, "Теперь можно")) == 200
    await vera.wait_event(lambda e: e["name"] == "ClientReturned" and e["thread_id"] == queued["thread_id"])

    needle = str(chat)
    client = make_client(gateway.urls.mongo_url)
    try:
        db = client[gateway.database]
        thread = await db["threads"].find_one({"_id": queued["thread_id"]})
        assert thread is not None and thread["key"].startswith("telegram:dvbot:t")
        assert thread["_id"] != thread_id_for(f"telegram:dvbot:{chat}")
        for name in await db.list_collection_names():
            docs = [d async for d in db[name].find({})]
            assert needle not in repr(docs), name
    finally:
        await client.close()
    assert files_holding(stack.root / "ferretdb", needle.encode()) == []
    assert needle not in replica_logs(gateway)


async def test_an_open_thread_keyed_by_its_chat_id_goes_on_and_is_hidden(
    gateway: Gateway, bot: Bot, vera: Consultant
) -> None:
    """A chat whose open thread, the bot's trail and its "not safe now" were stored under its
    chat id, before chats were named by a pseudonym: a reply is still held back until they
    write; their next message joins that thread; and "not safe now" deletes what was
    remembered under the id and marks that thread."""
    tg, api, chat = bot.telegram, bot.api, 533
    client = make_client(gateway.urls.mongo_url)
    try:
        repo = Repository(client[gateway.database])
        at = utcnow()
        legacy = model.new_thread(
            f"telegram:dvbot:{chat}",
            channel="telegram",
            line="dv",
            queue="gp-dv",
            organisations=["gp"],
            client_address=f"dvbot:{chat}",
            created_at=at,
            waiting_since=at,
        )
        await repo.threads.insert_one(legacy)
        earlier = tg.text(chat, "Раньше")  # what the bot remembered before, by the chat id
        chats = ChatRepository(repo.db)
        await chats.remember_telegram_message(
            f"dvbot:{chat}", earlier["message"]["message_id"], at, at + timedelta(hours=48), 100
        )
        await chats.set_telegram_chat(f"dvbot:{chat}", {"not_safe_at": at}, at + timedelta(days=30))
        # They said it was not safe, before the upgrade: a reply is held back, not sent.
        status, taken = await vera.call("POST", "/api/queues/gp-dv/next")
        assert status == 200 and taken["id"] == legacy["_id"]
        status, sent = await reply(vera, legacy["_id"], "Вы здесь?")
        assert status == 202, sent
        held = await vera.wait_event(
            lambda e: e["name"] == "MessageDelivered" and e["message_id"] == sent["id"]
        )
        assert held["data"]["status"] == "failed"
        _, view = await vera.call("GET", f"/api/threads/{legacy['_id']}")
        (delivery,) = [m["delivery"] for m in view["messages"] if m["id"] == sent["id"]]
        assert "not safe" in delivery["detail"]
        assert not any(c.body.get("text") == "Вы здесь?" for c in api.sent(chat))
        assert await chats.telegram_chats.find_one({"_id": f"dvbot:{chat}"}) is None  # moved
        assert await tg.post(tg.text(chat, "Это снова я")) == 200
        received = await vera.wait_event(lambda e: e["name"] in ("MessageReceived", "ThreadQueued"))
        assert (received["name"], received["thread_id"]) == ("MessageReceived", legacy["_id"])

        assert await tg.post(tg.text(chat, "/notsafe")) == 200
        assert {k.text for k in api.in_chat(chat).values()} == set()
        left = await vera.wait_event(lambda e: e["name"] == "ClientLeft")
        assert left["thread_id"] == legacy["_id"] and left["data"]["why"] == "not_safe"
    finally:
        await client.close()
