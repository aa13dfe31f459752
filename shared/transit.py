"""Messages on their way between services are sealed: the broker's disk holds no one's words.

RabbitMQ keeps every message of a quorum queue on disk until it is consumed, and a dead letter
until an operator replays or drops it: an inbound message (what a person wrote, their address),
an outbound one (a reply and its recipient). So every envelope is published sealed and opened
by its consumer (:class:`shared.broker.Broker`):

- **Cipher.** AES-256-GCM (``cryptography``'s AEAD), a random 96-bit nonce per message, the
  envelope's kind (the AMQP ``type``) as associated data, so a body cannot be passed off as
  another kind.
- **Key.** With a local master key: derived from it (HKDF-SHA256, its own ``info``), which every
  service that publishes or consumes text already holds and which never enters the broker or
  the database: no new secret to distribute, and replacing the master key replaces it. With a
  KMIP server (``*_KMS_PROVIDER=kmip``) no process holds the master key: a random key kept in
  the key vault, sealed under a data key the server unwraps (conversations/vault.py,
  :meth:`Vault.transit_key`), opened by each service at start (:meth:`TransitSeal.use`).
  A sealed body names its key by an 8-byte id (a hash of the key, not the key), so every key a
  process holds opens: while the master key is replaced (``*_PREVIOUS_MASTER_KEY``) messages
  sealed under the old one still open, and so do those sealed under a local key's derived key
  while that key is still given after a move to a KMIP server (queued before it). Once a key is
  removed its messages no longer open (replay or drop dead letters before that,
  docs/operations.md).
- **Form.** ``HLT1`` | key id (8) | nonce (12) | ciphertext and tag. A body without the prefix
  is a plain envelope, published before this change or by a tool without the key, and is read
  as one: a rolling upgrade loses nothing in the queues.

What it protects: a copy of the broker's disk or of a dead-letter queue without the master
key (docs/privacy.md). It does not hide the routing (exchange, routing key, headers: channel
and line), the message id or the size.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shared.settings import MasterKeys

MAGIC = b"HLT1"
KEY_ID_BYTES = 8
NONCE_BYTES = 12
_INFO = b"hotline-gateway transit v1"


class TransitError(ValueError):
    """A sealed body that no key here opens, or that was changed (poison: dead-letter it)."""


def _transit_key(master_key: bytes) -> tuple[bytes, bytes]:
    """(key id, AES-256 key) derived from ``master_key``."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(master_key)
    return key_id(key), key


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"transit key id:" + key).digest()[:KEY_ID_BYTES]


class TransitSeal:
    """Seals with the current key; opens with any key it holds: the one derived from each
    local master key given, and the key vault's transit key once given (:meth:`use`)."""

    def __init__(self, master_key: bytes | None = None, previous_master_key: bytes | None = None) -> None:
        """``master_key``: a local master key, whose derived key seals until :meth:`use`
        gives another; None (a KMIP server holds the master key): nothing seals until then."""
        self._id: bytes | None = None
        self._current: AESGCM | None = None
        self._keys: dict[bytes, AESGCM] = {}
        if master_key is not None:
            self._id, key = _transit_key(master_key)
            self._current = AESGCM(key)
            self._keys[self._id] = self._current
        if previous_master_key is not None:
            old_id, old = _transit_key(previous_master_key)
            self._keys.setdefault(old_id, AESGCM(old))

    def use(self, key: bytes, *, seal: bool = True) -> None:
        """Open with ``key`` from now on (the key vault's transit key), and seal with it
        when ``seal``."""
        aead = self._keys.setdefault(key_id(key), AESGCM(key))
        if seal:
            self._id, self._current = key_id(key), aead

    def seal(self, body: bytes, kind: str) -> bytes:
        if self._id is None or self._current is None:
            # Never published plain: the key vault's transit key was not opened (yet).
            raise TransitError("no transit key to seal with: the key service was not reached")
        nonce = os.urandom(NONCE_BYTES)
        return MAGIC + self._id + nonce + self._current.encrypt(nonce, body, kind.encode())

    def open(self, body: bytes, kind: str | None) -> bytes:
        """The envelope ``body`` holds: opened if sealed, as it is if plain."""
        if not is_sealed(body):
            return body
        start = len(MAGIC)
        key_id = body[start : start + KEY_ID_BYTES]
        nonce = body[start + KEY_ID_BYTES : start + KEY_ID_BYTES + NONCE_BYTES]
        aead = self._keys.get(key_id)
        if aead is None:
            raise TransitError("sealed under a master key this process does not hold")
        try:
            return aead.decrypt(nonce, body[start + KEY_ID_BYTES + NONCE_BYTES :], (kind or "").encode())
        except InvalidTag:
            raise TransitError("sealed body altered, or of another kind") from None


def for_master_keys(keys: MasterKeys) -> TransitSeal:
    """The seal of a service as its master keys allow before start: sealing under the local
    master key's derived key when it wraps; with a KMIP server, until :meth:`TransitSeal.use`
    gives the key vault's transit key, it only opens (with the local keys still given)."""
    if keys.provider == "local":
        return TransitSeal(keys.local, keys.previous_local)
    seal = TransitSeal()
    for local in (keys.local, keys.previous_local):
        if local is not None:
            seal.use(_transit_key(local)[1], seal=False)
    return seal


def is_sealed(body: bytes) -> bool:
    return body.startswith(MAGIC)
