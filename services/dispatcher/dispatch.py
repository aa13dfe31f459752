"""Handling one inbound message: find or create its thread, store it, decide its urgency
and automatic answer, announce it.

Ack policy: the broker module acks only after :meth:`Dispatcher.handle` returns, i.e.
after the database writes and the publishes. A redelivered message finds its thread
(unique key) and its message (unique source id) already there and changes nothing; an
automatic answer is keyed by thread, kind and closed period, so it is stored and sent once;
the console event is published again, which consoles treat as a refresh, never as a new
message.
"""

from __future__ import annotations

from datetime import timedelta

from aio_pika.abc import AbstractIncomingMessage

from conversations import announce, model
from conversations.clients import key_of
from conversations.contact_plan import CHANNEL_NOT_ALLOWED, plan_timezone
from conversations.email_threading import (
    is_bounce_of_ours,
    may_join,
    references,
    reply_tokens,
    sender_unverified,
)
from conversations.identity import thread_key
from conversations.model import EventName, ThreadStatus
from conversations.outbound import publish_outbound
from conversations.repository import Doc, Repository
from services.dispatcher import autoanswer, departures, priority, routing
from services.dispatcher.language import MailLanguage
from shared.broker import Broker
from shared.config import HotlineConfig
from shared.envelope import Channel, Envelope, InboundMessage, utcnow
from shared.logs import get_logger

log = get_logger(__name__)


class Dispatcher:
    def __init__(
        self,
        repo: Repository,
        broker: Broker,
        config: HotlineConfig,
        client_key_secret: bytes,
        message_id_domain: str = "hotline.invalid",
    ) -> None:
        self.repo = repo
        self.broker = broker
        self.config = config
        self.client_key_secret = client_key_secret
        self.message_id_domain = message_id_domain
        self.mail_language = MailLanguage(config.languages)

    async def _client_id(self, msg: InboundMessage) -> str | None:
        """The client of the person ``msg`` names (made on first contact), None for a web chat.
        A redelivered message finds the same client: its key is the same."""
        key = key_of(self.client_key_secret, msg)
        return await self.repo.clients.client_for(key) if key is not None else None

    def _new_thread(
        self, msg: InboundMessage, client_id: str | None, language: str | None = None
    ) -> dict[str, object]:
        """A new thread for ``msg``; ``language``: a mail's, detected (a chat says its own)."""
        region = msg.chat.region if msg.chat else None
        topic = msg.chat.topic if msg.chat else None
        mailbox = self.config.mailboxes.get(msg.email.mailbox or "") if msg.email else None
        organisation = mailbox.organisation if mailbox else None
        queue = routing.choose_queue(self.config, msg.line, region, topic, organisation)
        return model.new_thread(
            thread_key(msg),
            channel=msg.channel.value,
            line=msg.line,
            queue=queue,
            organisations=self.config.queues[queue].organisations,
            priority=priority.priority(self.config, msg.line, topic, msg.text),
            client_address=msg.sender,
            subject=msg.subject,
            context={
                "language": msg.chat.language if msg.chat else language,
                "region": region,
                "topic": topic,
            },
            created_at=utcnow(),
            waiting_since=msg.received_at,
            client_id=client_id,
            sender_unverified=sender_unverified(msg),
        )

    async def _email_thread(self, msg: InboundMessage) -> dict[str, object] | None:
        """The thread a mail continues, if it refers to us and comes from the thread's client."""
        refs = references(msg)
        thread = await self.repo.email_thread_by_reference(refs, reply_tokens(refs))
        # The thread's client address is sealed: compared opened, the thread kept as stored.
        if thread is not None and not may_join(await self.repo.open_thread(thread), msg):
            log.info(
                "email_thread_refused",
                message_id=msg.message_id,
                thread_id=thread["_id"],
                sender_unverified=sender_unverified(msg),
            )
            return None
        return thread

    async def _open_legacy_telegram_thread(self, msg: InboundMessage) -> Doc | None:
        """The open thread of a Telegram chat stored while threads were keyed by the chat id
        (``telegram:<bot>:<chat id>``; now by a pseudonym, conversations.identity): it goes
        on taking the chat's messages, so the consultant holding it misses none. A closed one
        is left as it is; the chat's next conversation is a thread under its pseudonym, of
        the same client."""
        legacy = await self.repo.thread_by_key(f"{Channel.TELEGRAM.value}:{msg.sender}")
        if legacy is None or legacy.get("status") == ThreadStatus.CLOSED:
            return None
        return legacy

    async def _bounce(self, msg: InboundMessage) -> bool:
        """A delivery-status report about our replies: mark them failed so the consultant sees
        it; the report itself is kept in the raw-mail store, not shown as a client message.
        False when it names none of ours (then it is handled as an ordinary, robot, mail)."""
        assert msg.email is not None
        changed = await self.repo.mark_bounced(msg.email.bounce_of, msg.received_at, "bounced")
        if not changed and not await self.repo.email_thread_by_reference(msg.email.bounce_of, []):
            return False
        for doc in changed:
            thread = await self.repo.thread(doc["thread_id"])
            if thread is None:
                continue
            await announce.announce(
                self.broker,
                EventName.MESSAGE_DELIVERED,
                thread,
                message_id=doc["_id"],
                status="failed",
                detail="bounced",
            )
        log.info("processed", message_id=msg.message_id, channel="email", bounce=True, marked=len(changed))
        return True

    async def handle(self, envelope: Envelope, message: AbstractIncomingMessage) -> None:
        if not isinstance(envelope, InboundMessage):
            log.error("unexpected_envelope", kind=envelope.kind)
            await message.reject(requeue=False)
            return
        msg = envelope
        if msg.line not in self.config.lines:
            log.error("unknown_line", message_id=msg.message_id, line=msg.line)
            await message.reject(requeue=False)
            return
        existing: Doc | None
        if msg.channel is Channel.EMAIL:
            if is_bounce_of_ours(msg) and await self._bounce(msg):
                return
            # A mail that continues none of ours starts a thread of its own: created by an
            # insert (its id derives from the mail's source id), found only on redelivery.
            existing = await self._email_thread(msg)
        else:
            existing = await self.repo.thread_by_key(thread_key(msg))
            if existing is None and msg.channel is Channel.TELEGRAM:
                existing = await self._open_legacy_telegram_thread(msg)
        new_thread: Doc = {}
        if existing is None:
            # A mail whose sender the mailbox's trusted server did not confirm is no one's: linked
            # to the person its From names, it would show that person's earlier consultations
            # with it, and it among theirs.
            client_id = None if sender_unverified(msg) else await self._client_id(msg)
            # A mail's language is read from it, so its automatic answers are in it.
            language = await self.mail_language.of(msg.subject, msg.text) if msg.email else None
            new_thread = self._new_thread(msg, client_id, language)
            # The automatic answer to a conversation's first message is recorded in the thread
            # as it is created: no later write to a thread a consultant may be claiming.
            # (FerretDB rewrites a whole document per update, so two concurrent updates of
            # one thread can lose one of them.)
            opening = self._decide(msg, new_thread, opener=True, last_out_of_hours=None)
            if opening is not None:
                new_thread["auto"] = {opening.kind: opening.period}
        accepted = await self.repo.accept_inbound(msg, existing, new_thread)
        thread = accepted.thread
        if not accepted.thread_created and thread["status"] == ThreadStatus.WAITING:
            urgency = priority.priority(self.config, msg.line, None, msg.text)
            if urgency > thread.get("priority", 0):
                # Danger said in a later message still moves the conversation up.
                await self.repo.bump_priority(thread["_id"], urgency)
        if accepted.message_stored:
            # A chat marked as left whose client writes again is not left any more.
            await departures.returned(self.repo, self.broker, thread, msg.received_at)
        if accepted.message_stored and (accepted.thread_created or accepted.reopened):
            await self.repo.record_event(thread["_id"], EventName.THREAD_QUEUED, queue=thread["queue"])
        # The acknowledgement is the answer to the message that opened a consultation: the
        # thread's first, or the first after a close (or its redelivery, should its dispatcher
        # have died before answering); the client's next messages, handled meanwhile, need not
        # each try to send it again.
        opener = accepted.thread_created or accepted.reopened or bool(message.redelivered)
        await self._auto_answer(msg, thread, opener)
        log.info(
            "processed",
            message_id=msg.message_id,
            thread_id=thread["_id"],
            channel=msg.channel.value,
            queue=thread["queue"],
            thread_created=accepted.thread_created,
            duplicate=not accepted.message_stored,
            reopened=accepted.reopened,
        )
        name = (
            EventName.THREAD_QUEUED
            if accepted.thread_created or accepted.reopened
            else EventName.MESSAGE_RECEIVED
        )
        await announce.announce(self.broker, name, thread, message_id=msg.message_id)

    def _decide(
        self, msg: InboundMessage, thread: Doc, opener: bool, last_out_of_hours: str | None
    ) -> autoanswer.AutoAnswer | None:
        email = msg.email
        if msg.channel is Channel.EMAIL and not msg.sender:
            return None  # a mail that gives no address a reply can go to (EmailFacts.problems)
        if sender_unverified(msg):
            # Its From may be forged: an automatic answer would go to the person it names, and
            # anyone could make the hotline write to a survivor. A consultant decides.
            return None
        return autoanswer.decide(
            self.config,
            line=thread["line"],
            language=thread.get("language"),
            now=msg.received_at,
            first_message=opener,
            last_out_of_hours=last_out_of_hours,
            robot=bool(email and email.auto_submitted),
            backlog=bool(email and getattr(email, "backlog", False)),
        )

    async def _auto_answer(self, msg: InboundMessage, thread: Doc, opener: bool) -> None:
        """Store and send the automatic answer this message calls for, once: its source id
        (thread, kind, period) is unique, so an opener handled again finds it stored."""
        auto = thread.get("auto") or {}
        answer = self._decide(msg, thread, opener, None if opener else auto.get("out_of_hours"))
        if answer is None:
            return
        # The person's safe-contact plan binds the hotline's own answers too: where it forbids
        # this channel or it is their quiet hours, an automatic answer could be seen by the
        # person they hide from. It is a courtesy, so it is left out, not held; a consultant
        # answers when the plan allows (conversations/contact_plan.py).
        tz = plan_timezone(self.config, thread)
        withheld = await self.repo.contact_plans.hold_for(thread, tz, utcnow(), client_turn=True)
        if withheld is not None:
            because = "channel" if withheld == CHANNEL_NOT_ALLOWED else "quiet_hours"
            log.info("auto_answer_withheld", thread_id=thread["_id"], kind=answer.kind, because=because)
            return
        # Once per consultation: a client who writes again after a close is answered again,
        # also within the same closed period (the first consultation keeps the older form).
        n = (thread.get("consultation") or {}).get("n", 1)
        source_id = f"auto:{thread['_id']}:{answer.kind}:{answer.period}" + (f":{n}" if n > 1 else "")
        if not await self._first_to_sender(msg, thread, source_id):
            return
        doc, created = await self.repo.add_outbound(
            thread, "bot", answer.text, source_id, self.message_id_domain
        )
        await publish_outbound(self.broker, self.repo, thread, doc)
        if auto.get(answer.kind) != answer.period:  # a later out-of-hours period (or an old thread)
            await self.repo.set_auto_answered(thread["_id"], answer.kind, answer.period)
        if created:
            log.info("auto_answered", thread_id=thread["_id"], kind=answer.kind, message_id=doc["_id"])

    async def _first_to_sender(self, msg: InboundMessage, thread: Doc, answer_id: str) -> bool:
        """Whether automatic answer ``answer_id`` to ``msg`` may go. A mail that started its own
        thread (it continues none of ours) is answered only when its sender got no such answer
        from the line within the line's ``auto_answer_period_hours``, a record shared by the
        replicas (conversations/answered_senders.py). So an auto-responder that neither marks
        itself (RFC 3834 5) nor cites our Message-ID, each of whose answers is a new thread, gets
        one answer and the exchange ends; every one of its mails is still a thread a consultant
        sees. A mail that continues a thread is answered by the consultation's rules alone
        (autoanswer.py), which a machine cannot repeat: its next answer needs a consultant's
        close or a new closed period.
        """
        if msg.channel is not Channel.EMAIL or thread.get("key") != thread_key(msg):
            return True
        key = key_of(self.client_key_secret, msg)
        if key is None:
            return True
        period = timedelta(hours=self.config.lines[thread["line"]].auto_answer_period_hours)
        if await self.repo.answered_senders.take(thread["line"], key, answer_id, period):
            return True
        log.info("auto_answer_limited", thread_id=thread["_id"], message_id=msg.message_id)
        return False
