"""A consultant attaches a file to an e-mail reply (services/store/reply_files.py), against the
real services, Dovecot and the SMTP relay: what reaches the client carries the pages and the
pixels, nothing about who made the file; what is not a PDF or an image, too large, or meant for
another thread is refused; the file is stored sealed."""

from __future__ import annotations

import io
import uuid
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import aiohttp
from PIL import Image
from pypdf import PdfReader, PdfWriter
from pypdf.generic import ArrayObject, DictionaryObject, NameObject, TextStringObject

from tests.conftest import Gateway
from tests.integration.chat_client import ChatClient
from tests.integration.email_support import database, delivery, queued_threads, supervisor
from tests.integration.helpers import Consultant, Mailbox, mail, new_message_id

CANARY = "Author" + uuid.uuid4().hex  # letters and digits: a PDF string escapes others


def pdf_with_metadata() -> bytes:
    """A one-page PDF whose author, title, page metadata and a link name the canary, with a
    script run when the page opens."""
    writer = PdfWriter()
    page = writer.add_blank_page(300, 300)
    writer.add_metadata({"/Author": CANARY, "/Title": f"{CANARY} draft", "/Creator": "Word"})
    link = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Annot"),
            NameObject("/Subtype"): NameObject("/Link"),
            NameObject("/Rect"): ArrayObject([]),
            NameObject("/A"): DictionaryObject(
                {
                    NameObject("/S"): NameObject("/URI"),
                    NameObject("/URI"): TextStringObject(f"https://{CANARY}.example"),
                }
            ),
        }
    )
    page[NameObject("/Annots")] = ArrayObject([writer._add_object(link)])
    page[NameObject("/AA")] = DictionaryObject(
        {
            NameObject("/O"): DictionaryObject(
                {
                    NameObject("/S"): NameObject("/JavaScript"),
                    NameObject("/JS"): TextStringObject(f"app.alert('{CANARY}')"),
                }
            )
        }
    )
    out = io.BytesIO()
    writer.write(out)
    data = out.getvalue()
    assert CANARY.encode() in data
    return data


def jpeg_with_exif() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = CANARY  # the camera's maker
    exif[0x013B] = CANARY  # the artist
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(out, "JPEG", exif=exif.tobytes())
    data = out.getvalue()
    assert CANARY.encode() in data
    return data


async def upload(who: Consultant, thread_id: str, name: str, data: bytes, ctype: str) -> tuple[int, Any]:
    form = aiohttp.FormData(quote_fields=False)  # as a browser sends a name: UTF-8 as it is
    form.add_field("file", io.BytesIO(data), filename=name, content_type=ctype)
    async with who.http.post(
        f"{who.base}/api/threads/{thread_id}/attachments", data=form, headers={"X-CSRF-Token": who.csrf}
    ) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_a_reply_carries_the_files_without_their_metadata(gateway: Gateway) -> None:
    address = f"{gateway.client_mailbox}@demo.test"
    sofia = await supervisor(gateway)
    inbox = Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.line_mailbox)
    client_box = Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.client_mailbox)
    client, db = database(gateway)
    try:
        await inbox.append(
            mail(address, f"{gateway.line_mailbox}@demo.test", "Документы", "Как подать?", new_message_id())
        )
        (thread_id,) = await queued_threads(sofia, 1)
        # Only the consultant holding the thread attaches.
        assert (await upload(sofia, thread_id, "a.pdf", pdf_with_metadata(), "application/pdf"))[0] == 409
        assert (await sofia.call("POST", f"/api/threads/{thread_id}/claim"))[0] == 200

        status, pdf = await upload(
            sofia, thread_id, f"{CANARY}/../Заявление.docx.pdf", pdf_with_metadata(), "application/pdf"
        )
        assert status == 201, pdf
        assert pdf["filename"] == "Заявление.docx.pdf" and pdf["content_type"] == "application/pdf"
        status, photo = await upload(sofia, thread_id, "leaflet.jpeg", jpeg_with_exif(), "image/jpeg")
        assert status == 201 and photo["content_type"] == "image/jpeg" and photo["filename"] == "leaflet.jpg"

        # Refused: another kind of file, a PDF that is not one, one too large.
        status, refused = await upload(
            sofia, thread_id, "notes.docx", b"PK\x03\x04" + b"x" * 100, "application/msword"
        )
        assert status == 415, refused
        assert (await upload(sofia, thread_id, "broken.pdf", b"%PDF-1.7 nothing", "application/pdf"))[
            0
        ] == 422
        huge = b"%PDF-1.7\n" + b"0" * (5 * 1024 * 1024)
        assert (await upload(sofia, thread_id, "huge.pdf", huge, "application/pdf"))[0] == 413

        key = uuid.uuid4().hex
        body = {"text": "Образец заявления и памятка во вложении.", "attachments": [pdf["id"], photo["id"]]}
        status, sent = await sofia.call(
            "POST", f"/api/threads/{thread_id}/messages", body, {"Idempotency-Key": key}
        )
        assert status == 202, sent
        # The same key with other files is another reply: refused, nothing sent twice.
        other = {**body, "attachments": [pdf["id"]]}
        assert (
            await sofia.call("POST", f"/api/threads/{thread_id}/messages", other, {"Idempotency-Key": key})
        )[0] == 409
        # A file of no thread of this reply's.
        stray = {"text": "x", "attachments": [uuid.uuid4().hex]}
        status, _ = await sofia.call(
            "POST", f"/api/threads/{thread_id}/messages", stray, {"Idempotency-Key": uuid.uuid4().hex}
        )
        assert status == 422
        assert (await delivery(sofia, thread_id, sent["id"]))["status"] == "sent"

        mails = [
            BytesParser(policy=policy.default).parsebytes(raw) for raw in await client_box.wait_for_mail(2)
        ]
        (got,) = [m for m in mails if m.is_multipart()]
        assert isinstance(got, EmailMessage)
        raw = got.as_bytes()
        assert CANARY.encode() not in raw
        parts = list(got.iter_attachments())
        assert [(p.get_content_type(), p.get_filename()) for p in parts] == [
            ("application/pdf", "Заявление.docx.pdf"),
            ("image/jpeg", "leaflet.jpg"),
        ]
        pdf_bytes = parts[0].get_payload(decode=True)
        assert isinstance(pdf_bytes, bytes) and CANARY.encode() not in pdf_bytes
        reader = PdfReader(io.BytesIO(pdf_bytes))
        assert len(reader.pages) == 1 and not reader.metadata
        assert "/Annots" not in reader.pages[0] and "/AA" not in reader.pages[0]
        image_bytes = parts[1].get_payload(decode=True)
        assert isinstance(image_bytes, bytes)
        with Image.open(io.BytesIO(image_bytes)) as img:
            assert img.size == (16, 16) and dict(img.getexif()) == {}

        # The consultant sees the reply with its files, and opens them cleaned too.
        status, view = await sofia.call("GET", f"/api/threads/{thread_id}")
        (out,) = [m for m in view["messages"] if m["id"] == sent["id"]]
        assert [a["filename"] for a in out["attachments"]] == ["Заявление.docx.pdf", "leaflet.jpg"]
        async with sofia.http.get(f"{sofia.base}/api/threads/{thread_id}/attachments/{pdf['id']}") as resp:
            assert resp.status == 200 and CANARY.encode() not in await resp.read()

        # Stored sealed: neither a file's name nor its bytes are in the database in clear.
        for name in await db.list_collection_names():
            docs = [d async for d in db[name].find({})]
            assert "Заявление" not in repr(docs) and "leaflet" not in repr(docs), name
    finally:
        await sofia.close()
        await client.close()


async def test_a_chat_takes_no_file(gateway: Gateway, vera: Consultant) -> None:
    """A chat or a Telegram thread shows text only: a file is refused, to upload or to send."""
    async with aiohttp.ClientSession() as http:
        chat = ChatClient(http, gateway.chat_url)
        await chat.start(line="dv", language="ru")
        await chat.say("Помогите")
        queued = await vera.wait_event(lambda e: e["name"] == "ThreadQueued")
        thread_id = queued["thread_id"]
        assert (await vera.call("POST", f"/api/threads/{thread_id}/claim"))[0] == 200
        status, refused = await upload(vera, thread_id, "a.jpg", jpeg_with_exif(), "image/jpeg")
        assert status == 422 and "e-mail only" in refused["title"]
        body = {"text": "x", "attachments": [uuid.uuid4().hex]}
        status, _ = await vera.call(
            "POST", f"/api/threads/{thread_id}/messages", body, {"Idempotency-Key": uuid.uuid4().hex}
        )
        assert status == 422
        await chat.drop()
