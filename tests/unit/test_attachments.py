"""Images re-encoded before a consultant downloads them (services/store/attachments.py)."""

from __future__ import annotations

import io

from PIL import Image, PngImagePlugin

from services.store.attachments import MAX_PIXELS, clean_image, disposition


def test_a_png_loses_its_text_and_anything_after_the_image() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "taken at 12 Lenin street")
    out = io.BytesIO()
    Image.new("RGBA", (10, 10), (1, 2, 3, 255)).save(out, "PNG", pnginfo=info)
    data = out.getvalue() + b"<script>alert(1)</script>"  # a polyglot's tail
    cleaned = clean_image(data)
    assert cleaned is not None
    body, ctype = cleaned
    assert ctype == "image/png" and b"Lenin" not in body and b"script" not in body
    assert Image.open(io.BytesIO(body)).getpixel((5, 5)) == (1, 2, 3, 255)


def test_an_animation_keeps_its_first_frame_as_png() -> None:
    out = io.BytesIO()
    frames = [Image.new("P", (8, 8), i) for i in (1, 2, 3)]
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:])
    cleaned = clean_image(out.getvalue())
    assert cleaned is not None and cleaned[1] == "image/png"
    assert getattr(Image.open(io.BytesIO(cleaned[0])), "n_frames", 1) == 1


def test_what_is_not_a_decodable_image_within_the_bound_is_refused() -> None:
    assert clean_image(b"%PDF-1.7 not an image") is None
    assert clean_image(b'<svg xmlns="http://www.w3.org/2000/svg"></svg>') is None
    # A small file claiming a huge image (a decompression bomb) is never decoded.
    side = int(MAX_PIXELS**0.5) + 100
    out = io.BytesIO()
    Image.new("1", (side, side)).save(out, "PNG")
    assert len(out.getvalue()) < 1_000_000 and clean_image(out.getvalue()) is None


def test_the_name_is_given_plain_and_in_utf8_never_as_a_header_break() -> None:
    header = disposition('Паспорт "скан";\r\nX-Evil: 1.jpg')
    assert header.startswith('attachment; filename="') and "\r" not in header and "\n" not in header
    assert "filename*=UTF-8''%D0%9F" in header
