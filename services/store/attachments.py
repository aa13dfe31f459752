"""Attachments a consultant can open safely (issue: survivor safety and privacy, item 6).

``GET /api/threads/{id}/attachments/{attachment}``: an attachment of a message of a thread the
person may read (anyone else: 404, as for the thread), recorded among the thread's reads.

- Always a download: ``Content-Disposition: attachment`` (the file's name, RFC 6266), never
  shown inside the console's origin; ``X-Content-Type-Options: nosniff``; a ``sandbox`` CSP
  in case a browser renders it anyway; ``Cache-Control: no-store`` (a shared computer keeps no
  copy in its cache).
- Images the server can decode (JPEG, PNG, GIF, WebP, BMP, TIFF) are decoded and encoded again
  by Pillow before they leave: only the pixels go out, so EXIF (a phone photo's GPS position,
  camera, time), XMP, ICC comments and anything hidden after the image data are dropped. A JPEG
  stays a JPEG; the others become PNG (an animation keeps its first frame). Decoding is bounded
  (:data:`MAX_PIXELS`); an image that cannot be decoded is sent as an opaque file.
- Everything else, SVG included (it can carry script), goes out as
  ``application/octet-stream``: the browser saves it and never runs it.

Attachments larger than the intake's cap (``EMAIL_INGEST_MAX_ATTACHMENT_BYTES``) were never
kept: 404 with a detail saying so. The bytes are stored sealed under the data key of the mail
they came with (conversations/rawmail.py) and opened here; once that key was erased (the
thread's text erased) they are gone: 404 too.
"""

from __future__ import annotations

import asyncio
import io
import warnings
from typing import Any
from urllib.parse import quote

from aiohttp import web
from PIL import Image, UnidentifiedImageError

from conversations.rawmail import ATTACHMENT_DATA, ATTACHMENTS, Erased, open_value
from services.store.api import ConsultantApi
from shared.http import problem
from shared.logs import get_logger

log = get_logger(__name__)

# At most this many pixels are decoded (a 16 MiB mail can hold a small file that claims a
# huge image: a decompression bomb). 40 megapixels: any phone photo.
MAX_PIXELS = 40_000_000
IMAGE_FORMATS = frozenset({"JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"})


def clean_image(data: bytes) -> tuple[bytes, str] | None:
    """The image's pixels encoded again (bytes, content type), or None when ``data`` is not an
    image Pillow can decode within :data:`MAX_PIXELS`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt = img.format
                if fmt not in IMAGE_FORMATS or img.width * img.height > MAX_PIXELS:
                    return None
                img.seek(0)
                img.load()
                out = io.BytesIO()
                if fmt == "JPEG":
                    pixels = img.convert("L" if img.mode in {"L", "1"} else "RGB")
                    pixels.save(out, "JPEG", quality=90)
                    return out.getvalue(), "image/jpeg"
                keep = {"1", "L", "LA", "P", "RGB", "RGBA"}
                pixels = img if img.mode in keep else img.convert("RGBA")
                pixels.save(out, "PNG")
                return out.getvalue(), "image/png"
    except (
        UnidentifiedImageError,
        OSError,
        ValueError,
        SyntaxError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,  # raised, not warned: the filter above
    ):
        return None


def disposition(filename: str) -> str:
    """``attachment`` with the name as plain ASCII and as UTF-8 (RFC 6266, RFC 8187)."""
    ascii_name = (
        "".join(c if 32 <= ord(c) < 127 and c not in '"\\;' else "_" for c in filename) or "attachment"
    )
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


class AttachmentRoutes:
    def __init__(self, api: ConsultantApi) -> None:
        self.api = api
        self.files = api.repo.db[ATTACHMENTS]

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/threads/{id}/attachments/{attachment}", self.download)

    async def download(self, request: web.Request) -> web.StreamResponse:
        """An attachment of the thread, as a download (images re-encoded without metadata)."""
        user = request["user"]
        thread = await self.api.visible_thread(user, request.match_info["id"])
        if thread is None:
            return problem(404, "No such thread")
        wanted = request.match_info["attachment"]
        ref: dict[str, Any] | None = None
        for message in await self.api.repo.thread_messages(thread["_id"]):
            for att in message.get("attachments") or []:
                if isinstance(att, dict) and att.get("id") == wanted:
                    ref = att
        if ref is None:
            return problem(404, "No such attachment")
        doc = await self.files.find_one({"_id": wanted})
        if doc is None or doc.get("data") is None:
            return problem(
                404, "Not kept", "the attachment was larger than the intake keeps; only its name is"
            )
        try:
            data = bytes(await open_value(self.api.repo.vault, doc["data"], ATTACHMENT_DATA))
        except Erased:
            return problem(404, "Erased", "the text of this thread was erased")
        await self.api.audit.record(thread["_id"], user.login, "attachment")
        cleaned = await asyncio.to_thread(clean_image, data)
        body, ctype = cleaned if cleaned is not None else (data, "application/octet-stream")
        log.info("attachment_read", thread_id=thread["_id"], consultant=user.login, image=cleaned is not None)
        return web.Response(
            body=body,
            content_type=ctype,
            headers={
                "Content-Disposition": disposition(str(ref.get("filename") or "attachment")),
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "sandbox; default-src 'none'",
                "Cache-Control": "no-store",
            },
        )
