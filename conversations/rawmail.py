"""Raw mails and their attachments as the e-mail intake stores them, sealed.

A mail is stored (``mail_raw``, services/email_ingest/rawstore.py) before any thread exists,
so it has a data key of its own (``mail_raw.data_key``; conversations/vault.py), and its
attachments (``mail_attachments``) are sealed under the same key. Each sealed field holds
one sealed value in place of the clear one: ``mail_raw.raw``, ``mail_attachments.data`` and
``mail_attachments.filename``. This module is how every reader opens them (the intake's
quarantine command, the store's attachment download), and how the repository finds the keys
of a thread's mails to erase them.
"""

from __future__ import annotations

from typing import Any

from bson.binary import Binary

from conversations.vault import ENCRYPTED_SUBTYPE, Vault

RAW_MAILS = "mail_raw"
ATTACHMENTS = "mail_attachments"
# The name of the one field inside each sealed value (a sealed value is a document).
RAW, ATTACHMENT_DATA, ATTACHMENT_NAME = "raw", "data", "filename"


class Erased(Exception):
    """The data key of a raw mail was deleted: what it sealed can never be read again."""


def is_sealed(value: object) -> bool:
    return isinstance(value, Binary) and value.subtype == ENCRYPTED_SUBTYPE


async def open_value(vault: Vault | None, value: object, name: str) -> Any:
    """A field of ``mail_raw`` or ``mail_attachments`` as it was before sealing (``name``:
    :data:`RAW`, :data:`ATTACHMENT_DATA` or :data:`ATTACHMENT_NAME`). A clear value (stored
    before sealing) is returned as it is (bytes for binary data), and so is None (cleared by
    retention, or never kept). Raises :class:`Erased` when its data key was deleted,
    ``RuntimeError`` for a sealed value without a vault, and what :meth:`Vault.open` raises
    for any other failure (a master key that does not unwrap the data key)."""
    if not is_sealed(value):
        return bytes(value) if isinstance(value, Binary) else value
    if vault is None:
        raise RuntimeError("a sealed raw mail needs the vault to be read")
    assert isinstance(value, Binary)
    opened = await vault.open(value)
    if opened is None:
        raise Erased
    return opened.get(name)
