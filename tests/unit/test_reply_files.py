"""Cleaning a file a consultant attaches to a reply (services/store/reply_files.py)."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from pypdf import PdfReader, PdfWriter

from services.store.reply_files import Refused, clean_file, file_name

CANARY = "CanaryAuthor42"


def pdf(password: str | None = None) -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(100, 100)
    writer.add_blank_page(100, 100)
    writer.add_metadata({"/Author": CANARY, "/Producer": CANARY})
    if password is not None:
        writer.encrypt(password)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_a_pdf_keeps_its_pages_and_loses_its_metadata() -> None:
    data, ctype = clean_file(pdf())
    assert ctype == "application/pdf" and CANARY.encode() not in data
    reader = PdfReader(io.BytesIO(data))
    assert len(reader.pages) == 2 and not reader.metadata


def test_a_pdf_with_a_password_or_not_a_pdf_is_refused() -> None:
    with pytest.raises(Refused) as locked:
        clean_file(pdf("secret"))
    assert locked.value.status == 422
    with pytest.raises(Refused) as broken:
        clean_file(b"%PDF-1.4 and then nothing")
    assert broken.value.status == 422
    for other in (b"PK\x03\x04 a word file", b"<svg onload='alert(1)'/>", b"MZ\x90\x00"):
        with pytest.raises(Refused) as refused:
            clean_file(other)
        assert refused.value.status == 415


def test_an_image_keeps_its_pixels_only() -> None:
    exif = Image.Exif()
    exif[0x010F] = CANARY
    out = io.BytesIO()
    Image.new("RGB", (4, 4), (1, 2, 3)).save(out, "PNG", exif=exif.tobytes())
    data, ctype = clean_file(out.getvalue())
    assert ctype == "image/png" and CANARY.encode() not in data


@pytest.mark.parametrize(
    ("given", "ctype", "expected"),
    [
        ("C:\\Users\\olga\\Заявление.pdf", "application/pdf", "Заявление.pdf"),
        ("../../etc/passwd", "application/pdf", "passwd.pdf"),
        ("photo.HEIC.png", "image/png", "photo.HEIC.png"),
        ("bad\r\nBcc: x@y.z.jpeg", "image/jpeg", "badBcc: x@y.z.jpg"),
        (None, "image/png", "attachment.png"),
        ("...", "application/pdf", "attachment.pdf"),
    ],
)
def test_a_file_name_has_no_path_no_control_characters_and_its_type(
    given: str | None, ctype: str, expected: str
) -> None:
    assert file_name(given, ctype) == expected
