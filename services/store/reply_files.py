"""Files a consultant attaches to a reply by e-mail: a legal template as PDF, a photo of a
leaflet (issue: survivor safety and privacy, item 6).

``POST /api/threads/{id}/attachments`` (``multipart/form-data``, one part named ``file``) by the
consultant holding an e-mail thread: the file is cleaned, stored sealed under the thread's data
key in ``mail_attachments`` (beside the files clients sent, so downloads, retention and erasure
treat both alike), and answered ``201`` with its id. ``POST /api/threads/{id}/messages`` then
names it in ``attachments`` (at most :data:`MAX_FILES` ids); the e-mail sender attaches it.

What leaves is what the person should get and nothing that tells about who made it:

- **PDF** (pypdf): the pages are copied into a new document. The document information (author,
  title, creating program, dates), its XMP metadata, its scripts and open actions, and on each
  page its metadata, private application data, additional actions and annotations (links,
  comments, form fields: anything active) are not copied. A PDF with a password is refused
  (it cannot be read, so it cannot be cleaned).
- **Images** (JPEG, PNG, GIF, WebP, BMP, TIFF): decoded and encoded again by Pillow, as downloads
  are (services/store/attachments.py): only the pixels go, not EXIF (a phone's GPS position) nor
  anything else.
- Anything else is refused (415): a word-processor file carries its author and history, and
  an unknown file cannot be shown safe.

Caps: ``STORE_MAX_REPLY_ATTACHMENT_BYTES`` per file (413 beyond it, read no further), and
:data:`MAX_FILES` files a reply. Only e-mail threads take files (422 on a chat or Telegram
thread): a chat shows text only.
"""

from __future__ import annotations

import asyncio
import io
import re
import unicodedata

from aiohttp import BodyPartReader, web
from bson.binary import Binary
from pypdf import PdfReader, PdfWriter
from pypdf.errors import PdfReadError
from pypdf.generic import NameObject

from conversations.identity import new_id
from conversations.rawmail import ATTACHMENT_DATA, ATTACHMENT_NAME, ATTACHMENTS
from conversations.repository import Doc
from services.store.api import ConsultantApi
from services.store.attachments import clean_image
from shared.envelope import utcnow
from shared.http import problem
from shared.logs import get_logger

log = get_logger(__name__)

MAX_FILES = 5
PDF = "application/pdf"
# Page entries that are metadata or active: not copied (see the module doc).
_PAGE_DROPS = ("/Metadata", "/PieceInfo", "/AA", "/Annots")
_EXTENSIONS = {PDF: ".pdf", "image/jpeg": ".jpg", "image/png": ".png"}


class Refused(Exception):
    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(title)
        self.status, self.title, self.detail = status, title, detail


def clean_pdf(data: bytes) -> bytes:
    """The pages of the PDF ``data`` in a new document with no metadata and nothing active."""
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise Refused(422, "PDF with a password", "save it without a password, then attach it")
        writer = PdfWriter()
        for page in reader.pages:
            # Dropped before the page is copied: what it refers to is then not copied either.
            for name in _PAGE_DROPS:
                page.pop(NameObject(name), None)
            writer.add_page(page)
        writer.metadata = None  # not even pypdf's own Producer
        out = io.BytesIO()
        writer.write(out)
        return out.getvalue()
    except Refused:
        raise
    except (
        PdfReadError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        IndexError,
        OSError,
        RecursionError,
    ):
        raise Refused(422, "Unreadable PDF", "the file could not be read as a PDF") from None


def clean_file(data: bytes) -> tuple[bytes, str]:
    """(cleaned bytes, content type) of a file a consultant attaches; raises :class:`Refused`."""
    if data.startswith(b"%PDF-"):
        return clean_pdf(data), PDF
    image = clean_image(data)
    if image is not None:
        return image
    raise Refused(
        415, "Only PDF files and images", "attach a PDF or an image (JPEG, PNG, GIF, WebP, BMP, TIFF)"
    )


def file_name(given: str | None, content_type: str) -> str:
    """The name the client sees: the consultant's, without a path or control characters,
    at most 100 characters, ending as its cleaned type does."""
    base = re.split(r"[\\/]", given or "")[-1]
    base = "".join(c for c in unicodedata.normalize("NFC", base) if unicodedata.category(c)[0] != "C")
    stem = base.rsplit(".", 1)[0].strip(" .") if "." in base else base.strip(" .")
    return (stem[:100] or "attachment") + _EXTENSIONS.get(content_type, "")


class ReplyFileRoutes:
    def __init__(self, api: ConsultantApi) -> None:
        self.api = api
        self.files = api.repo.db[ATTACHMENTS]

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/api/threads/{id}/attachments", self.upload)

    async def upload(self, request: web.Request) -> web.Response:
        user, thread = await self.api.thread_of(request)
        if thread["channel"] != "email":
            return problem(422, "Files go by e-mail only", "a chat shows text only")
        if thread["status"] != "active" or thread.get("assignee") != user.login:
            return problem(409, "Claim the thread before replying")
        if not request.content_type.startswith("multipart/"):
            return problem(415, "Send multipart/form-data", "one part named file")
        cap = self.api.s.max_reply_attachment_bytes
        reader = await request.multipart()
        part = await reader.next()
        while part is not None and getattr(part, "name", None) != "file":
            part = await reader.next()
        if part is None or not isinstance(part, BodyPartReader):
            return problem(422, "No file", "send the file as the part named file", missing=["file"])
        chunks, size = [], 0
        while chunk := await part.read_chunk(64 * 1024):
            size += len(chunk)
            if size > cap:
                return problem(413, "File too large", f"at most {cap} bytes a file")
            chunks.append(chunk)
        try:
            data, content_type = await asyncio.to_thread(clean_file, b"".join(chunks))
        except Refused as exc:
            return problem(exc.status, exc.title, exc.detail)
        name = file_name(part.filename, content_type)
        key = await self.api.repo.data_key(thread)
        vault = self.api.repo.vault
        doc: Doc = {
            "_id": new_id(),
            "thread_id": thread["_id"],
            "uploaded_by": user.login,
            "content_type": content_type,
            "size": len(data),
            "filename": name,
            "data": Binary(data),
            "stored_at": utcnow(),
        }
        if vault is not None and key is not None:
            doc["filename"] = await vault.seal(key, {ATTACHMENT_NAME: name})
            doc["data"] = await vault.seal(key, {ATTACHMENT_DATA: data})
        await self.files.insert_one(doc)
        log.info("reply_file_stored", thread_id=thread["_id"], consultant=user.login, size=len(data))
        body = {"id": doc["_id"], "filename": name, "content_type": content_type, "size": len(data)}
        return web.json_response(body, status=201)
