"""A mail and a chat message travel the whole way: channel -> broker -> dispatcher ->
database -> consultant API -> reply -> channel, against the real servers."""

from __future__ import annotations

import json
import uuid
from email import policy
from email.parser import BytesParser

import aiohttp

from tests.conftest import Gateway
from tests.integration.helpers import Consultant, Frames, Mailbox, mail, new_message_id


async def test_mail_becomes_a_thread_and_the_reply_threads_back(gateway: Gateway) -> None:
    gateway.seed_demo_accounts()
    canary = f"CANARY-{uuid.uuid4().hex}"
    inbox = Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.line_mailbox)
    client_box = Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.client_mailbox)
    client_addr = f"{gateway.client_mailbox}@demo.test"
    line_addr = f"{gateway.line_mailbox}@demo.test"
    anna = Consultant(gateway.store_url)
    try:
        await anna.login("anna", "anna-demo")
        await anna.open_events()

        first_id = new_message_id()
        await inbox.append(
            mail(
                client_addr,
                line_addr,
                "Работа за границей",
                f"Мне предложили работу в Польше. {canary}",
                first_id,
            )
        )
        queued = await anna.wait_event(lambda e: e["name"] == "ThreadQueued")
        thread_id = queued["thread_id"]
        assert queued["queue"] == "113-triage"  # a mail says nothing of the region

        status, queues = await anna.call("GET", "/api/queues")
        assert status == 200
        assert {q["name"]: q["waiting"] for q in queues}["113-triage"] == 1
        status, waiting = await anna.call("GET", "/api/threads?queue=113-triage&status=waiting")
        assert [t["id"] for t in waiting] == [thread_id]

        status, claimed = await anna.call("POST", "/api/queues/113-triage/next")
        assert status == 200 and claimed["id"] == thread_id and claimed["assignee"] == "anna"
        status, _ = await anna.call("POST", "/api/queues/113-triage/next")
        assert status == 204  # nobody else waiting

        status, thread = await anna.call("GET", f"/api/threads/{thread_id}")
        assert status == 200
        # The client's mail, then the gateway's own first answer (an acknowledgement, or out of
        # duty hours a notice with the emergency numbers).
        assert [(m["direction"], m["author"]) for m in thread["messages"]] == [
            ("in", "client"),
            ("out", "bot"),
        ]
        assert canary in thread["messages"][0]["text"]
        assert thread["subject"] == "Работа за границей"

        key = uuid.uuid4().hex
        status, reply = await anna.call(
            "POST",
            f"/api/threads/{thread_id}/messages",
            {"text": "Здравствуйте! Давайте проверим вакансию."},
            {"Idempotency-Key": key},
        )
        assert status == 202 and reply["delivery"]["status"] == "queued"
        # The same request again (a retry after a lost response) stores nothing new.
        status, again = await anna.call(
            "POST",
            f"/api/threads/{thread_id}/messages",
            {"text": "Здравствуйте! Давайте проверим вакансию."},
            {"Idempotency-Key": key},
        )
        assert status == 202 and again["id"] == reply["id"]
        await anna.wait_event(
            lambda e: (
                e["name"] == "MessageDelivered"
                and e["message_id"] == reply["id"]
                and e["data"]["status"] == "sent"
            )
        )

        mails = [
            BytesParser(policy=policy.default).parsebytes(raw) for raw in await client_box.wait_for_mail(2)
        ]
        assert len(mails) == 2  # the automatic answer and the consultant's reply, once each
        (received,) = [m for m in mails if m["Message-ID"] == reply["email_message_id"]]
        assert received["In-Reply-To"] == first_id
        assert received["Message-ID"] == reply["email_message_id"]
        assert first_id in received["References"]
        assert received["Subject"] == "Re: Работа за границей"
        assert "проверим вакансию" in received.get_content()

        # The client answers the reply: it joins the same thread.
        answer_id = new_message_id()
        await inbox.append(
            mail(
                client_addr,
                line_addr,
                "Re: Работа за границей",
                "Спасибо!",
                answer_id,
                in_reply_to=reply["email_message_id"],
                references=[first_id, reply["email_message_id"]],
            )
        )
        joined = await anna.wait_event(lambda e: e["name"] == "MessageReceived")
        assert joined["thread_id"] == thread_id

        # A stranger who quotes the same Message-ID does not get into the client's thread.
        await inbox.append(
            mail(
                "stranger@elsewhere.example",
                line_addr,
                "Re: Работа за границей",
                "let me in",
                new_message_id(),
                in_reply_to=reply["email_message_id"],
            )
        )
        stranger = await anna.wait_event(lambda e: e["name"] == "ThreadQueued")
        assert stranger["thread_id"] != thread_id

        status, thread = await anna.call("GET", f"/api/threads/{thread_id}")
        assert [(m["direction"], m["author"]) for m in thread["messages"]] == [
            ("in", "client"),
            ("out", "bot"),
            ("out", "consultant:anna"),
            ("in", "client"),
        ]
        assert thread["messages"][2]["delivery"]["status"] == "sent"
    finally:
        await anna.close()
    assert canary not in gateway.logs()  # message text never reaches a log


async def test_chat_message_reaches_a_consultant_and_the_reply_reaches_the_client(
    gateway: Gateway,
) -> None:
    gateway.seed_demo_accounts()
    canary = f"CANARY-{uuid.uuid4().hex}"
    vera = Consultant(gateway.store_url)
    async with aiohttp.ClientSession() as http:
        try:
            await vera.login("vera", "vera-demo")
            await vera.open_events()
            ws = await http.ws_connect(f"{gateway.chat_url}/chat/ws")
            await ws.send_json({"type": "start", "line": "dv", "language": "ru"})
            frames = Frames(ws)
            session = await frames.next("session")
            assert session["type"] == "session" and session["token"]
            assert isinstance(session["on_duty"], bool)

            frame_id = str(uuid.uuid4())
            await ws.send_json({"type": "message", "id": frame_id, "text": f"Мне страшно. {canary}"})
            ack = await frames.next("ack")
            assert ack["type"] == "ack" and ack["id"] == frame_id and ack["message_id"]

            queued = await vera.wait_event(lambda e: e["name"] == "ThreadQueued")
            thread_id = queued["thread_id"]
            status, thread = await vera.call("POST", "/api/queues/gp-dv/next")
            assert status == 200 and thread["id"] == thread_id and thread["channel"] == "chat"
            status, thread = await vera.call("GET", f"/api/threads/{thread_id}")
            assert [m["id"] for m in thread["messages"] if m["direction"] == "in"] == [ack["message_id"]]
            assert canary in thread["messages"][0]["text"]

            # A resend after a reconnect (same frame id) is acknowledged with the same id
            # and stored once.
            await ws.send_json({"type": "message", "id": frame_id, "text": f"Мне страшно. {canary}"})
            again = await frames.next("ack")
            assert again == ack
            await vera.wait_event(lambda e: e["name"] == "MessageReceived" and e["thread_id"] == thread_id)

            status, reply = await vera.call(
                "POST",
                f"/api/threads/{thread_id}/messages",
                {"text": "Вы в безопасности сейчас?"},
                {"Idempotency-Key": uuid.uuid4().hex},
            )
            assert status == 202
            got = await frames.next("message", sender="consultant")
            assert got["from"] == "consultant"
            assert got["text"] == "Вы в безопасности сейчас?"
            assert got["message_id"] == reply["id"]
            await vera.wait_event(
                lambda e: e["name"] == "MessageDelivered" and e["message_id"] == reply["id"]
            )

            status, thread = await vera.call("GET", f"/api/threads/{thread_id}")
            assert [(m["direction"], m["author"]) for m in thread["messages"]] == [
                ("in", "client"),
                ("out", "bot"),
                ("out", "consultant:vera"),
            ]
            # The automatic first answer reached the client's socket, once.
            assert [f["from"] for f in frames.seen if f["type"] == "message"] == ["bot", "consultant"]
            # Another organisation's consultant cannot see it (404, as for a thread that does not exist).
            anna = Consultant(gateway.store_url)
            try:
                await anna.login("anna", "anna-demo")
                assert (await anna.call("GET", f"/api/threads/{thread_id}"))[0] == 404
                assert (await anna.call("POST", f"/api/threads/{thread_id}/claim"))[0] == 404
            finally:
                await anna.close()
            assert thread["messages"][1]["delivery"]["status"] == "sent"

            # Closing asks for the case form; the client writing again reopens the thread.
            status, problem = await vera.call(
                "POST", f"/api/threads/{thread_id}/close", {"case": {"gender": "f"}}
            )
            assert status == 422 and "client_role" in problem["detail"] and "age_group" in problem["detail"]
            case = {"client_role": "survivor", "gender": "f", "age_group": "27-40"}
            status, closed = await vera.call("POST", f"/api/threads/{thread_id}/close", {"case": case})
            assert status == 200 and closed["status"] == "closed" and closed["case"] == case
            await ws.send_json({"type": "message", "id": str(uuid.uuid4()), "text": "Ещё вопрос"})
            await frames.next("ack")
            reopened = await vera.wait_event(lambda e: e["name"] == "ThreadQueued")
            assert reopened["thread_id"] == thread_id and reopened["queue"] == "gp-dv"
            status, thread = await vera.call("GET", f"/api/threads/{thread_id}")
            assert thread["status"] == "waiting" and thread["assignee"] is None

            # A malformed frame gets an error frame and the socket stays usable.
            await ws.send_str("{not json")
            err = await frames.next("error")
            assert err == {"type": "error", "code": "bad_json", "detail": err["detail"]}
            await ws.send_json({"type": "end"})
            assert (await frames.next("closed")) == {"type": "closed"}
            await ws.close()
        finally:
            await vera.close()
    assert canary not in gateway.logs()
    assert json.dumps(canary) not in gateway.logs()
