"""The vault: what people wrote is stored encrypted, under a key of its own thread.

Envelope encryption with MongoDB's explicit client-side field-level encryption (PyMongo's
``ClientEncryption``, libmongocrypt through pymongocrypt): the same on MongoDB 7 and on the
local stand-in, because the database only stores and returns the ciphertext (BSON binary
subtype 6) and the key vault is an ordinary collection.

- **Data keys.** Each thread has its own data key (``threads.data_key``, the key's id),
  made when the first text is stored in it. Text is sealed with
  ``AEAD_AES_256_CBC_HMAC_SHA_512-Random`` (an authenticated cipher; the same text sealed
  twice gives two different ciphertexts). A key per thread, not per client: a consultant
  may link a thread to a client or undo the link (conversations/clients.py), and a key that
  followed the client would mean encrypting a thread again; erasing a client deletes the keys
  of all of their threads, which is the same (:meth:`Vault.erase`).
- **Key vault.** Data keys live in their own database (``<database>_keys.data_keys`` unless
  set), so that they can be backed up apart from the data and a backup of the data holds no
  key: a data key deleted is text unreadable in every copy of the data, backups included.
- **Master key.** Every data key is wrapped by the master key, which never enters the
  database. Two kinds (``*_KMS_PROVIDER``):

  - ``local`` (the default, the demo's): 96 random bytes, base64, given to each service that
    reads or writes text (``*_MASTER_KEY``; a file, a secret of the orchestrator). Its KMS
    provider is named after a fingerprint of the key (``local:<12 hex>``), so a second key can
    be given while the first is replaced (``*_PREVIOUS_MASTER_KEY``).
  - ``kmip``: a KMIP server holds the master key (an object of its own, ``*_KMIP_KEY_ID``) and
    wraps and unwraps data keys for us over mutual TLS (``*_KMIP_ENDPOINT``, ``*_KMIP_CA_FILE``,
    ``*_KMIP_CERT_FILE``): the key never reaches our processes. A data key names the KMIP
    object that wrapped it, so every key of that server unwraps; one server at a time (from one
    server to another: through ``local``).

  Whichever wraps new keys, every configured key unwraps what it wrapped (local keys and the
  KMIP server), so ``python -m services.store.keys rotate`` can wrap every data key again under
  the current one, across kinds (local to kmip, one KMIP key to another, kmip to local).
- **Transit key.** With a KMIP server the broker's seal (shared/transit.py) cannot be derived
  from a master key we do not hold: a random key is kept in the key vault, sealed under a data
  key of its own (:meth:`Vault.transit_key`), and rotated with the master key like any other.

What a document holds: :func:`seal_fields` moves the named fields of a document into one
sealed value ``sealed`` (one cipher operation per message, not one per field), and
:meth:`Vault.open_fields` puts them back. A sealed value whose key was deleted opens as
nothing: the fields read as ``None`` and the document is marked ``erased``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from bson.binary import STANDARD, Binary
from bson.codec_options import CodecOptions
from pymongo.asynchronous.encryption import AsyncClientEncryption
from pymongo.asynchronous.mongo_client import AsyncMongoClient
from pymongo.encryption_shared import Algorithm
from pymongo.errors import DuplicateKeyError, EncryptionError, PyMongoError

from shared.envelope import utcnow
from shared.health import Health
from shared.lifecycle import retry_until_ready
from shared.settings import MasterKeys
from shared.transit import TransitSeal

Doc = dict[str, Any]

ALGORITHM = Algorithm.AEAD_AES_256_CBC_HMAC_SHA_512_Random
SEALED = "sealed"
ENCRYPTED_SUBTYPE = 6
# How long a process keeps a data key it unwrapped (libmongocrypt's cache, its default of a
# minute): an erasure reaches every other running process within this time (the erasing one at
# once). A lookup is one read by _id (on the local stand-in too, with its patch), so a short
# cache costs a busy service little.
KEY_CACHE_MS = 60_000
# The key vault's document of the transit key (shared/transit.py), beside the data keys.
TRANSIT_COLLECTION = "transit_keys"
TRANSIT_ID = "transit"
TRANSIT_KEY_BYTES = 32


def provider_name(key: bytes) -> str:
    """The KMS provider name of a master key: ``local:`` and a fingerprint that does not
    reveal the key (the first 12 hex digits of its SHA-256)."""
    return "local:" + hashlib.sha256(key).hexdigest()[:12]


def key_id_of(sealed: Binary) -> uuid.UUID | None:
    """The id of the data key a sealed value was made with (a ciphertext names its key:
    one byte of blob type, then the key's 16-byte id)."""
    if not isinstance(sealed, Binary) or sealed.subtype != ENCRYPTED_SUBTYPE or len(sealed) < 17:
        return None
    return uuid.UUID(bytes=bytes(sealed[1:17]))


class Vault:
    """Seals and opens text with per-thread data keys; makes, erases and re-wraps keys."""

    def __init__(
        self,
        key_vault_client: AsyncMongoClient[Doc],
        key_vault_namespace: str,
        master_key: bytes | MasterKeys,
        previous_master_key: bytes | None = None,
    ) -> None:
        """``master_key``: what the settings give (:meth:`shared.settings.VaultSettings.master_keys`),
        or a local key's bytes (and the previous one's)."""
        keys = (
            master_key
            if isinstance(master_key, MasterKeys)
            else MasterKeys("local", master_key, previous_master_key, None)
        )
        providers: dict[str, Any] = {}
        for local in (keys.local, keys.previous_local):
            if local is not None:
                providers[provider_name(local)] = {"key": local}
        tls: dict[str, Any] | None = None
        if keys.kmip is not None:
            providers["kmip"] = {"endpoint": keys.kmip.endpoint}
            tls = {
                "kmip": {
                    "tlsCAFile": str(keys.kmip.ca_file),
                    "tlsCertificateKeyFile": str(keys.kmip.cert_file),
                }
            }
        self.master_key: dict[str, Any] | None = None
        if keys.provider == "kmip":
            if keys.kmip is None:
                raise ValueError("the kmip provider needs a KMIP server")
            self.provider = "kmip"
            # Delegated: the KMIP server wraps and unwraps each data key with a key that never
            # leaves it (KMIP Encrypt/Decrypt). Without it, libmongocrypt fetches the master
            # key's bytes from the server (KMIP Get) and wraps locally.
            self.master_key = {"delegated": True}
            if keys.kmip.key_id is not None:
                self.master_key["keyId"] = keys.kmip.key_id
        else:
            if keys.local is None:
                raise ValueError("the local provider needs a master key")
            self.provider = provider_name(keys.local)
        self.uses_kms = keys.uses_kms()
        database, _, collection = key_vault_namespace.partition(".")
        self.keys = key_vault_client[database][collection]
        self.transit_keys = key_vault_client[database][TRANSIT_COLLECTION]
        self._args = (providers, key_vault_namespace, key_vault_client, tls)
        self._ce = self._encryption()
        self._transit_sealed: Binary | None = None

    def _encryption(self) -> AsyncClientEncryption[Doc]:
        providers, namespace, client, tls = self._args
        return AsyncClientEncryption(
            providers,
            namespace,
            client,
            CodecOptions(uuid_representation=STANDARD),
            kms_tls_options=tls,
            key_expiration_ms=KEY_CACHE_MS,
        )

    async def ensure_indexes(self) -> None:
        """libmongocrypt asks the key vault for keys by id or by alternate name (``$or`` of
        both); the id is the primary key, the names get an index. Not unique: the vault never
        gives keys alternate names (MongoDB's advice of a unique partial index applies to
        those who do; the local stand-in has no partial indexes)."""
        await self.keys.create_index([("keyAltNames", 1)], name="key_alt_names")

    async def close(self) -> None:
        """Nothing to close by hand: libmongocrypt's handle is freed when the last operation
        that uses it is gone. ``ClientEncryption.close`` frees it at once, and an operation
        still unwinding at shutdown (a handler cancelled while it sealed) then touches freed
        memory and the process dies with SIGSEGV; seen under a chat flood at shutdown."""

    async def new_key(self) -> Binary:
        """A new data key, wrapped by the current master key; returns its id."""
        return await self._ce.create_data_key(self.provider, master_key=self.master_key)

    async def transit_key(self) -> bytes:
        """The broker's transit key (shared/transit.py): 32 random bytes kept in the key vault,
        sealed under a data key of its own, so only a process that can unwrap data keys (the
        KMIP server answers it) opens it. The first process to ask makes it; two that race
        keep the first one stored (the loser deletes its own data key). Raises EncryptionError
        when the key service does not answer."""
        for _ in range(3):
            doc = await self.transit_keys.find_one({"_id": TRANSIT_ID})
            if doc is None:
                key_id = await self.new_key()
                sealed = await self.seal(key_id, {"key": Binary(os.urandom(TRANSIT_KEY_BYTES))})
                try:
                    await self.transit_keys.insert_one(
                        {"_id": TRANSIT_ID, SEALED: sealed, "created_at": utcnow()}
                    )
                except DuplicateKeyError:
                    await self._ce.delete_key(key_id)
                    continue
                doc = {SEALED: sealed}
            opened = await self.open(doc[SEALED])
            if opened is None:
                # Its data key was deleted (by hand): what it sealed is gone; a new one replaces it.
                await self.transit_keys.delete_one({"_id": TRANSIT_ID, SEALED: doc[SEALED]})
                continue
            key = bytes(opened["key"])
            if len(key) != TRANSIT_KEY_BYTES:
                raise ValueError("the stored transit key is not 32 bytes")
            self._transit_sealed = doc[SEALED]
            return key
        raise RuntimeError("the transit key could not be stored or read")

    async def key_service_answers(self) -> bool:
        """Readiness (``/readyz``) with a KMIP server: the server unwraps a data key now (a
        fresh handle, so no cached key hides a server that is down)."""
        if self._transit_sealed is None:
            return False
        # Not closed: freed once unused (see close); a probe timed out may still be unwinding.
        ce = self._encryption()
        try:
            await ce.decrypt(self._transit_sealed)
        except EncryptionError:
            return False
        return True

    async def seal(self, key_id: Binary, value: Mapping[str, Any]) -> Binary:
        return await self._ce.encrypt(dict(value), ALGORITHM, key_id=key_id)

    async def open(self, sealed: Binary) -> Doc | None:
        """What ``sealed`` holds; None when its data key was erased. Any other failure (a
        master key that does not unwrap the data key) raises: nothing is shown as erased
        that was not."""
        try:
            value = await self._ce.decrypt(sealed)
        except EncryptionError:
            key_id = key_id_of(sealed)
            if key_id is None:
                raise
            if await self.keys.find_one({"_id": Binary.from_uuid(key_id)}, {"_id": 1}) is None:
                return None
            raise
        return dict(value) if isinstance(value, Mapping) else None

    async def open_fields(self, doc: Doc) -> Doc:
        """``doc`` with its sealed fields back in place (a document stored before sealing, or
        cleared by retention, is returned as it is)."""
        sealed = doc.get(SEALED)
        if not isinstance(sealed, Binary):
            return doc
        opened = await self.open(sealed)
        out = {k: v for k, v in doc.items() if k != SEALED}
        if opened is None:
            out["erased"] = True
            return out
        out.update(opened)
        return out

    async def open_all(self, docs: Iterable[Doc]) -> list[Doc]:
        return [await self.open_fields(d) for d in docs]

    async def erase(self, key_ids: Iterable[Binary]) -> int:
        """Delete data keys: whatever they sealed is unreadable from now on, in the database
        and in every backup of it (running services' caches forget them within KEY_CACHE_MS).
        Returns how many keys were deleted."""
        deleted = 0
        for key_id in key_ids:
            result = await self._ce.delete_key(key_id)
            deleted += result.deleted_count
        if deleted:
            # This process forgets the keys it had unwrapped at once (others when their
            # cache expires): a new cache; the old one is freed once its last operation ends
            # (see close). Built in a thread: libmongocrypt's set-up reads files (package
            # metadata; with a KMIP server its TLS files) and is CPU work, which would hold the
            # event loop (tests/integration/test_event_loop_blocking.py).
            self._ce = await asyncio.to_thread(self._encryption)
        return deleted

    async def new_kmip_master_key(self) -> str:
        """A new master key on the KMIP server (made by the server through libmongocrypt, which
        registers one when asked for a data key without a key id); returns its KMIP id, for
        ``*_KMIP_KEY_ID``. The data key asked for is deleted at once."""
        key_id = await self._ce.create_data_key("kmip", master_key={"delegated": True})
        try:
            doc = await self.keys.find_one({"_id": key_id}, {"masterKey": 1})
        finally:
            await self._ce.delete_key(key_id)
        if doc is None:
            raise RuntimeError("the data key just made is not in the key vault")
        return str(doc["masterKey"]["keyId"])

    async def rewrap(self) -> int:
        """Wrap every data key again under the current master key (after a new one was
        given, the previous one still configured to unwrap); returns how many."""
        result = await self._ce.rewrap_many_data_key({}, provider=self.provider, master_key=self.master_key)
        return result.bulk_write_result.modified_count if result.bulk_write_result is not None else 0


async def seal_fields(vault: Vault | None, key_id: Binary | None, doc: Doc, fields: Iterable[str]) -> Doc:
    """``doc`` with ``fields`` moved into one sealed value under ``key_id``. Without a vault
    (a tool that never stores text, a test of something else) ``doc`` is returned as it is."""
    if vault is None or key_id is None:
        return doc
    inside = {f: doc[f] for f in fields if f in doc}
    out = {k: v for k, v in doc.items() if k not in inside}
    out[SEALED] = await vault.seal(key_id, inside)
    return out


def open_attachment_names(doc: Doc) -> Doc:
    """A message's attachments with their names given back (sealed apart as
    ``attachment_names``; conversations/repository.py, :meth:`Repository.seal_message`)."""
    names = doc.pop("attachment_names", None)
    attachments = doc.get("attachments")
    if isinstance(names, list) and isinstance(attachments, list):
        padded = [*names, *[None] * len(attachments)]
        doc["attachments"] = [
            {**a, "filename": padded[i]} if isinstance(a, dict) else a for i, a in enumerate(attachments)
        ]
    return doc


async def open_transit_key(vault: Vault, transit: TransitSeal, health: Health | None, within: float) -> None:
    """At a service's start, with a KMIP server configured: open the key vault's transit key
    (made by the first process) and seal with it while the server wraps; waits for the key
    service as for the database (logged), then the start fails. Readiness asks the server from
    then on (``/readyz`` 503 while it does not answer). Nothing to do with local keys only."""
    if not vault.uses_kms:
        return
    key = b""

    async def load() -> None:
        nonlocal key
        key = await vault.transit_key()

    await retry_until_ready("key service", load, within, (EncryptionError, PyMongoError))
    transit.use(key, seal=vault.provider == "kmip")
    if health is not None:
        health.add_check("key service", vault.key_service_answers)
