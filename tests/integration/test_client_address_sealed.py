"""A client's e-mail address is sealed at rest (issue: survivor privacy): whoever holds the
database files or a backup, and not the master key, cannot list who wrote to the hotline. The
services, with the key, still answer the person and still let only them continue their thread."""

from __future__ import annotations

import asyncio
from email import policy
from email.parser import BytesParser
from pathlib import Path

from deploy.local.stack import LocalStack
from tests.conftest import Gateway
from tests.integration.email_support import database, delivery, queued_threads, reply, supervisor
from tests.integration.helpers import Mailbox, mail, new_message_id
from tests.integration.test_vault import backup_holding, files_holding


async def test_a_clients_address_is_sealed_and_still_answered_and_recognised(
    gateway: Gateway, stack: LocalStack, tmp_path: Path
) -> None:
    address = f"{gateway.client_mailbox}@demo.test"
    line = f"{gateway.line_mailbox}@demo.test"
    sofia = await supervisor(gateway)
    inbox = Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.line_mailbox)
    client_box = Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.client_mailbox)
    client, db = database(gateway)
    try:
        await inbox.append(mail(address, line, "Нужна помощь", "Мне страшно", new_message_id()))
        (thread_id,) = await queued_threads(sofia, 1)
        # The automatic answer went to the sealed address, opened by the sender.
        (ack_raw,) = await client_box.wait_for_mail(1)
        ack = BytesParser(policy=policy.default).parsebytes(ack_raw)

        # Her answer to it joins her thread (the address compared opened); the same answer from
        # someone else, who read her mail and knows its Message-ID, starts a thread of its own.
        ack_id = str(ack["Message-ID"])
        await inbox.append(mail(address, line, "Re: x", "Это я", new_message_id(), ack_id, [ack_id]))
        joined = await sofia.wait_event(lambda e: e["name"] in ("MessageReceived", "ThreadQueued"))
        assert (joined["name"], joined["thread_id"]) == ("MessageReceived", thread_id)
        stranger = f"{gateway.name}-stranger@demo.test"
        await inbox.append(mail(stranger, line, "Re: x", "Я её муж", new_message_id(), ack_id, [ack_id]))
        (other,) = await queued_threads(sofia, 1)
        assert other != thread_id

        # A consultant sees the address, and a reply reaches it.
        status, thread = await sofia.call("GET", f"/api/threads/{thread_id}")
        assert status == 200 and thread["client"] == {"address": address}
        assert (await sofia.call("POST", f"/api/threads/{thread_id}/claim"))[0] == 200
        sent = await reply(sofia, thread_id, "Мы рядом")
        assert (await delivery(sofia, thread_id, sent["id"]))["status"] == "sent"
        assert len(await client_box.wait_for_mail(2)) == 2

        # At rest: in no document of any collection, in no file of the database, in no backup.
        stored = await db["threads"].find_one({"_id": thread_id})
        assert stored is not None and set(stored["client"]) == {"sealed"}
        for name in await db.list_collection_names():
            docs = [d async for d in db[name].find({})]
            assert address not in repr(docs).lower(), name
    finally:
        await sofia.close()
        await client.close()
    needle = address.encode()
    assert files_holding(stack.root / "ferretdb", needle) == []
    assert await asyncio.to_thread(backup_holding, gateway, tmp_path / "backup", needle) == []
