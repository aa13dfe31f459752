"""Telegram: the webhook of each bot, and replies to Telegram chats through the Bot API.

Webhook (``POST /telegram/{bot}/webhook``): the ``X-Telegram-Bot-Api-Secret-Token`` header
must equal the bot's secret (else 401). Each ``update_id`` is claimed in the database before
it is handled and marked done after; a redelivered update (Telegram retries until it gets a
2xx) is answered 200 and does nothing. Menu answers come from the configuration, without a
consultant; a text goes to the consultants as an inbound message whose source id is
``telegram:<bot>:<update_id>``, so even a replay that slipped past the claim is stored once.
The answer is 200 only after the message was confirmed by the broker and the bot's answers
were sent; on failure the claim is released and the answer is 503, so Telegram redelivers.

Replies (ack policy of :meth:`TelegramBots.deliver`, on the ``chat_ingest.telegram`` work
queue): acked after the Bot API accepted the message and its delivery report was published,
or after a permanent refusal (reported ``failed``). Flood control (429) is waited out for
``retry_after`` seconds in place; a longer wait, a 5xx or no network requeues the reply,
and the queue's delivery limit dead-letters it after a bounded number of attempts. A reply
already reported ``sent`` is not sent again.

"Not safe now" (``/notsafe``, or the menu's button; services/chat_ingest/telegram.py): the
bot keeps the ids of a chat's messages, its own and the client's, for as long as the Bot API
lets it delete them (48 hours, at most ``telegram.KEEP_PER_CHAT`` a chat; chat_ingest's sweep
drops the rest). On the command it deletes them all, answers nothing, marks the chat
``not_safe_at`` and publishes ``ChatSessionEnded`` for the chat (``why`` ``not_safe``), so the
dispatcher marks the thread and the supervisors are told (services/dispatcher/departures.py).
The webhook answers 200 only after that; a failure gives 503 and Telegram's redelivery does it
again. Until the client writes again, a reply to the chat is not sent: it is reported
``failed`` (held back), so a reply already on its way when the client asked does not arrive.

At start-up each bot's ``getWebhookInfo`` is read: its last error and pending update count
are shown in ``/readyz`` details and in metrics.
"""

from __future__ import annotations

import hmac
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from aio_pika.abc import AbstractIncomingMessage
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge
from pymongo.errors import PyMongoError

from conversations.client_left import NOT_SAFE
from conversations.identity import telegram_session
from conversations.reference import ReferenceData
from conversations.repository import ChatRepository
from services.chat_ingest import telegram
from services.chat_ingest.botapi import BotApi, BotApiError, BotApiMetrics, RetryLater
from services.chat_ingest.settings import ChatIngestSettings, TelegramBot
from shared import topology
from shared.broker import PUBLISH_ERRORS, Broker
from shared.config import HotlineConfig
from shared.envelope import (
    Channel,
    ChatFacts,
    ConsoleEvent,
    DeliveryReport,
    DeliveryStatus,
    Envelope,
    InboundMessage,
    OutboundMessage,
    message_id_for,
    utcnow,
)
from shared.hours import is_open
from shared.http import problem
from shared.logs import get_logger

log = get_logger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 (a header name, not a secret)
MAX_UPDATE_BYTES = 64 * 1024  # a text update is a few KiB; anything larger is not one
STALE_CLAIM_SECONDS = 60.0


class TelegramMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.updates = Counter(
            "hotline_telegram_updates_total",
            "Webhook updates, by outcome",
            ["bot", "outcome"],
            registry=registry,
        )
        self.pending = Gauge(
            "hotline_telegram_webhook_pending_updates",
            "pending_update_count of getWebhookInfo at start-up",
            ["bot"],
            registry=registry,
        )
        self.last_error = Gauge(
            "hotline_telegram_webhook_last_error_timestamp_seconds",
            "last_error_date of getWebhookInfo (0: none)",
            ["bot"],
            registry=registry,
        )
        self.replies = Counter(
            "hotline_telegram_replies_total",
            "Replies to Telegram chats, by outcome",
            ["outcome"],
            registry=registry,
        )


class TelegramBots:
    def __init__(
        self,
        settings: ChatIngestSettings,
        config: HotlineConfig,
        broker: Broker,
        repo: ChatRepository,
        registry: CollectorRegistry,
    ) -> None:
        self.s = settings
        self.config = config
        self.broker = broker
        self.repo = repo
        # The directory as the database keeps it (conversations/reference.py); set by create_app.
        self.reference: ReferenceData | None = None
        self.metrics = TelegramMetrics(registry)
        self.api_metrics = BotApiMetrics(registry)
        self.bots: dict[str, TelegramBot] = dict(settings.telegram_bots)
        secret = settings.client_key_secret
        self._secret = secret.get_secret_value().encode() if secret is not None else b""
        for name, bot in self.bots.items():
            if bot.line not in config.lines:
                raise ValueError(f"CHAT_INGEST_TELEGRAM_BOTS.{name}.line: unknown line {bot.line!r}")
        self.apis: dict[str, BotApi] = {}
        self.webhooks: dict[str, dict[str, Any]] = {}
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._http = aiohttp.ClientSession()
        for name, bot in self.bots.items():
            self.apis[name] = BotApi(
                self._http,
                self.s.telegram_api_base,
                bot.token.get_secret_value(),
                self.s.telegram_max_retry_after,
                self.api_metrics,
            )
            await self.check_webhook(name)

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def check_webhook(self, name: str) -> None:
        """Read getWebhookInfo: an operator sees a broken webhook (wrong URL, certificate,
        our 5xx) and a backlog without opening Telegram."""
        try:
            info = await self.apis[name].webhook_info()
        except (BotApiError, RetryLater) as exc:
            self.webhooks[name] = {"reachable": False, "error": type(exc).__name__}
            log.warning("telegram_webhook_info_failed", bot=name, error=type(exc).__name__)
            return
        pending = int(info.get("pending_update_count") or 0)
        last_error_date = int(info.get("last_error_date") or 0)
        self.webhooks[name] = {
            "reachable": True,
            "url_set": bool(info.get("url")),
            "pending_update_count": pending,
            "last_error_date": last_error_date or None,
            "last_error_message": info.get("last_error_message"),
        }
        self.metrics.pending.labels(name).set(pending)
        self.metrics.last_error.labels(name).set(last_error_date)
        log.info(
            "telegram_webhook_info",
            bot=name,
            pending=pending,
            last_error=info.get("last_error_message"),
            url_set=bool(info.get("url")),
        )

    def details(self) -> dict[str, Any]:
        return dict(self.webhooks)

    # --- webhook --------------------------------------------------------------------------

    async def handle_webhook(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["bot"]
        bot = self.bots.get(name)
        if bot is None:
            return problem(404, "No such bot")
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), bot.webhook_secret.get_secret_value().encode()):
            self.metrics.updates.labels(name, "bad_secret").inc()
            log.warning("telegram_bad_secret", bot=name)
            return problem(401, "Wrong or missing secret token")
        if request.content_length is not None and request.content_length > MAX_UPDATE_BYTES:
            self.metrics.updates.labels(name, "too_large").inc()
            return problem(413, "Update too large")
        body = await request.content.read(MAX_UPDATE_BYTES + 1)
        if len(body) > MAX_UPDATE_BYTES:
            self.metrics.updates.labels(name, "too_large").inc()
            return problem(413, "Update too large")
        try:
            update = telegram.parse_update(body)
        except telegram.BadUpdate as exc:
            self.metrics.updates.labels(name, "bad_update").inc()
            return problem(400, "Not a Telegram update", str(exc))
        if update is None or not update.private:
            # Edits, channel posts, groups: not a client writing to us. Nothing to redo.
            self.metrics.updates.labels(name, "ignored").inc()
            return web.json_response({"ok": True})
        key = f"{name}:{update.update_id}"
        try:
            claim = await self.repo.begin_update(key, STALE_CLAIM_SECONDS)
        except PyMongoError as exc:
            log.warning("telegram_update_unclaimed", bot=name, error=type(exc).__name__)
            return problem(503, "Try again later")
        if claim == "done":
            self.metrics.updates.labels(name, "duplicate").inc()
            log.info("telegram_update_duplicate", bot=name, update_id=update.update_id)
            return web.json_response({"ok": True})
        if claim == "busy":
            self.metrics.updates.labels(name, "busy").inc()
            return problem(503, "This update is being handled")
        try:
            await self._handle(name, bot, update)
            await self.repo.finish_update(key)
        except (RetryLater, BotApiError, PyMongoError, *PUBLISH_ERRORS) as exc:
            self.metrics.updates.labels(name, "failed").inc()
            log.warning(
                "telegram_update_failed", bot=name, update_id=update.update_id, error=type(exc).__name__
            )
            try:
                await self.repo.abandon_update(key)
            except PyMongoError:
                pass  # the claim goes stale and the redelivery takes it over
            return problem(503, "Try again later")
        self.metrics.updates.labels(name, "handled").inc()
        return web.json_response({"ok": True})

    def session(self, name: str, chat_id: int | str) -> str:
        """What names the chat in the database and in the thread's key: a pseudonym
        (conversations.identity.telegram_session); the chat id goes only as the sender."""
        return telegram_session(self._secret, name, chat_id)

    async def _chat(self, name: str, chat_id: int | str) -> tuple[str, dict[str, Any]]:
        """(session, what the bot remembers of the chat). A record kept under the chat id
        (before chats were named by a pseudonym) is moved to the pseudonym at its first use,
        its "not safe now" included, and deleted."""
        session = self.session(name, chat_id)
        chat = await self.repo.telegram_chat(session)
        if set(chat) <= {"_id"}:
            legacy = await self.repo.telegram_chat(f"{name}:{chat_id}")
            carried = {k: v for k, v in legacy.items() if k != "_id"}
            if carried:
                expires = carried.pop("expires_at", None) or utcnow() + timedelta(
                    seconds=self.s.telegram_chat_ttl_seconds
                )
                await self.repo.set_telegram_chat(session, carried, expires)
                await self.repo.forget_telegram_chat(f"{name}:{chat_id}")
                chat = {"_id": session, **carried}
        return session, chat

    async def _handle(self, name: str, bot: TelegramBot, update: telegram.Update) -> None:
        chat_key = f"{name}:{update.chat_id}"  # whom replies go to: sealed in the thread
        session, chat = await self._chat(name, update.chat_id)
        config = self.config
        if self.reference is not None:
            config = config.model_copy(update={"directory": await self.reference.directory()})
        decision = telegram.decide(
            config, bot.line, chat, update, is_open(config.lines[bot.line].hours, utcnow())
        )
        remember = dict(decision.remember)
        if decision.hide:
            remember["not_safe_at"] = utcnow()
        elif decision.forward is not None and chat.get("not_safe_at") is not None:
            remember["not_safe_at"] = None  # they write again: replies may go to them again
        # Written on every update: the choices expire telegram_chat_ttl_seconds after the last one.
        expires = utcnow() + timedelta(seconds=self.s.telegram_chat_ttl_seconds)
        await self.repo.set_telegram_chat(session, remember, expires)
        chat = {**chat, **remember}
        api = self.apis[name]
        if decision.hide:
            await self._hide(name, api, update)
            return
        if update.message_id is not None:
            await self._remember(session, update.message_id, update.sent_at)
        if decision.forward is not None:
            source_id = f"telegram:{name}:{update.update_id}"
            message_id = message_id_for(source_id)
            envelope = InboundMessage(
                message_id=message_id,
                source_id=source_id,
                channel=Channel.TELEGRAM,
                line=bot.line,
                received_at=utcnow(),
                sender=chat_key,
                text=decision.forward,
                chat=ChatFacts(
                    session=session,
                    language=chat.get("language"),
                    region=chat.get("region"),
                    topic=chat.get("topic"),
                ),
            )
            await self.broker.publish(
                envelope,
                topology.INBOUND,
                topology.inbound_key(Channel.TELEGRAM, bot.line),
                message_id=message_id,
                headers={"channel": "telegram", "line": bot.line},
            )
            log.info("telegram_forwarded", bot=name, message_id=message_id, update_id=update.update_id)
        if update.callback_id is not None:
            await api.answer_callback(update.callback_id)
        for reply in decision.replies:
            await self._sent(session, await api.send_message(reply.payload(update.chat_id)))

    # --- not safe now ---------------------------------------------------------------------

    async def _remember(self, session: str, message_id: int, sent_at: datetime | None) -> None:
        """Keep a message's id for as long as the bot may delete it. A database that is away
        costs only that message's deletion later: the message itself went, or was taken."""
        sent_at = sent_at or utcnow()
        try:
            await self.repo.remember_telegram_message(
                session, message_id, sent_at, sent_at + telegram.DELETABLE_FOR, telegram.KEEP_PER_CHAT
            )
        except PyMongoError as exc:
            log.warning("telegram_message_not_kept", error=type(exc).__name__)

    async def _sent(self, session: str, result: dict[str, Any]) -> None:
        """A sendMessage result (a Message): keep its id."""
        if isinstance(result.get("message_id"), int):
            await self._remember(session, result["message_id"], telegram.unix_time(result.get("date")))

    async def _hide(self, name: str, api: BotApi, update: telegram.Update) -> None:
        """The client says it is not safe now: delete what the bot may delete of the chat (the
        command too), then have the thread marked. Deleting first: it is what protects them
        now. Raises what the Bot API, the database and the broker raise (then Telegram
        redelivers the update and it is done again; deleting twice is harmless)."""
        session = self.session(name, update.chat_id)
        if update.callback_id is not None:
            await api.answer_callback(update.callback_id)
        # Also what was kept while chats were named by their chat id (a trail lives 48 hours).
        legacy = f"{name}:{update.chat_id}"
        since = telegram.deletable_after(utcnow())
        ids = await self.repo.telegram_messages(session, since)
        ids += [i for i in await self.repo.telegram_messages(legacy, since) if i not in ids]
        if update.message_id is not None and update.message_id not in ids:
            ids.append(update.message_id)
        refused = 0
        for batch in telegram.batches(ids):
            try:
                await api.delete_messages(update.chat_id, batch)
            except BotApiError:
                # The batch as a whole was refused (one of them can no longer be deleted, say):
                # each alone, so that every one that can go goes.
                for message_id in batch:
                    try:
                        await api.delete_message(update.chat_id, message_id)
                    except BotApiError:
                        refused += 1
        await self.repo.forget_telegram_messages(session)
        await self.repo.forget_telegram_messages(legacy)
        event = ConsoleEvent(
            name=topology.CHAT_SESSION_ENDED,
            thread_id="",
            at=utcnow(),
            # ``legacy``: the chat's open thread may be keyed by its chat id (stored before
            # chats were named by a pseudonym); only the dispatcher hears this event.
            data={"session": session, "legacy": legacy, "channel": Channel.TELEGRAM.value, "why": NOT_SAFE},
        )
        await self.broker.publish(event, topology.EVENTS, topology.chat_session_ended_key())
        self.metrics.updates.labels(name, "not_safe").inc()
        log.info("telegram_not_safe", bot=name, deleted=len(ids) - refused, refused=refused)

    # --- replies --------------------------------------------------------------------------

    async def deliver(self, envelope: Envelope, message: AbstractIncomingMessage) -> None:
        """Send a consultant's (or the bot's) reply to a Telegram chat (see the module's ack policy)."""
        if not isinstance(envelope, OutboundMessage):
            await message.reject(requeue=False)
            return
        if envelope.hold is not None:
            # Held by the client's safe-contact plan (conversations/contact_plan.py): never sent.
            self.metrics.replies.labels("held_by_plan").inc()
            log.warning("reply_held_not_sent", message_id=envelope.message_id, thread_id=envelope.thread_id)
            return
        name, _, chat_id = envelope.recipient.partition(":")
        api = self.apis.get(name)
        if api is None or not chat_id.lstrip("-").isdigit():
            await self._report(envelope, DeliveryStatus.FAILED, "no such Telegram bot here")
            return
        if await self.repo.already_sent(envelope.message_id):
            self.metrics.replies.labels("duplicate").inc()
            return
        session, chat = await self._chat(name, chat_id)
        if chat.get("not_safe_at") is not None:
            # The client said it is not safe now and has not written since (see the module's doc).
            self.metrics.replies.labels("held_not_safe").inc()
            await self._report(
                envelope, DeliveryStatus.FAILED, "not sent: the client said it is not safe now"
            )
            return
        try:
            result = await api.send_message(
                {"chat_id": int(chat_id), "text": envelope.text[: telegram.MAX_TEXT]}
            )
        except BotApiError as exc:
            # Blocked by the user (403), chat gone (400): retrying will not help.
            self.metrics.replies.labels("failed").inc()
            await self._report(envelope, DeliveryStatus.FAILED, f"Telegram refused it ({exc.code})")
            return
        self.metrics.replies.labels("sent").inc()
        await self._sent(session, result)
        await self._report(envelope, DeliveryStatus.SENT, "sent to Telegram")

    async def _report(self, envelope: OutboundMessage, status: DeliveryStatus, detail: str) -> None:
        log.info(
            "telegram_reply",
            message_id=envelope.message_id,
            thread_id=envelope.thread_id,
            status=status.value,
        )
        report = DeliveryReport(
            message_id=envelope.message_id,
            thread_id=envelope.thread_id,
            status=status,
            at=utcnow(),
            detail=detail,
        )
        await self.broker.publish(report, topology.EVENTS, topology.delivery_key(status.value))
