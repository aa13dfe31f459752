"""Clients: the pseudonymous person records that link the threads of one person.

A client is known by what identifies the person on a channel: the sender address of an e-mail
(lower-case, without surrounding spaces) or the Telegram user (in a private chat, the only
kind the bot serves, the chat id is the user's id). Neither is stored: a client is found
through its *key*, an HMAC-SHA256 of ``<kind>:<value>`` under a secret from the settings
(``DISPATCHER_CLIENT_KEY_SECRET``). Without the secret a key cannot be recomputed from an
address, so a list of known addresses tells nothing about who wrote; the client record itself
is a random id and a time. A web chat names nobody: its thread has no client unless a
consultant links it to the client of another thread (:meth:`ClientRepository.link`).

Collections (only this module touches them):

- ``clients`` ``{_id: random hex, created_at}``;
- ``client_keys`` ``{_id: key, client_id}``: the primary key makes a key name one client
  however many dispatchers race to create it (:meth:`ClientRepository.client_for`).

A thread holds its client as ``client_id`` (None when unknown), and a consultation copies it;
a link made by hand keeps what it replaced in ``client_link`` so that it can be undone.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from pymongo import DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from conversations.identity import new_id
from shared.envelope import Channel, InboundMessage, utcnow

Doc = dict[str, Any]

# Mail no person wrote (a list's or a robot's, a bounce that names none of our replies) links
# nobody: the same mailer-daemon writing twice is not one person asking twice.
_ROBOT_MAIL = {"bulk", "bounce"}


def normalised_address(address: str) -> str:
    """An e-mail address as it is keyed: without surrounding spaces, lower-case."""
    return address.strip().lower()


def client_key(secret: bytes, kind: str, value: str) -> str:
    """The key of the person ``value`` names on ``kind`` (``email``, ``telegram``): hex of
    HMAC-SHA256 under ``secret``. Pure; the same inputs always give the same key."""
    return hmac.new(secret, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


def identity_of(msg: InboundMessage) -> tuple[str, str] | None:
    """What names the person who wrote ``msg``: ``("email", address)`` or ``("telegram",
    user id)``; None for a web chat, for robot mail and for a message without a sender."""
    if msg.channel is Channel.EMAIL:
        if msg.email is not None and msg.email.kind in _ROBOT_MAIL:
            return None
        return _by_address(msg.sender)
    if msg.channel is Channel.TELEGRAM:
        return _by_telegram_chat(msg.sender)  # ``<bot>:<chat id>``; the session is a pseudonym
    return None


def identity_of_thread(thread: Mapping[str, Any]) -> tuple[str, str] | None:
    """What names the person of a thread stored before threads had clients: its client's
    address, its Telegram chat (from its key); None for any other channel."""
    if thread.get("channel") == Channel.EMAIL:
        return _by_address(str((thread.get("client") or {}).get("address") or ""))
    if thread.get("channel") == Channel.TELEGRAM:
        return _by_telegram_chat(str(thread.get("key") or ""))
    return None


def _by_address(address: str) -> tuple[str, str] | None:
    normal = normalised_address(address)
    return ("email", normal) if normal else None


def _by_telegram_chat(session: str) -> tuple[str, str] | None:
    # ``<bot>:<chat id>`` (services/chat_ingest/telegram_bot.py), in a thread key after
    # ``telegram:``: the chat id without the bot, so one person writing to the bots of two lines
    # is one client.
    chat_id = session.rpartition(":")[2]
    return ("telegram", chat_id) if chat_id.lstrip("-").isdigit() else None


def key_of(secret: bytes, msg: InboundMessage) -> str | None:
    """The client key of ``msg``'s writer, or None when the message names no person."""
    identity = identity_of(msg)
    return client_key(secret, *identity) if identity is not None else None


def visible_consultations(organisation: str | None, lines: list[str]) -> Doc:
    """The filter of the consultations a person may see: of their ``lines``, and, for a member
    of ``organisation``, only that organisation's (the one its statistics count it for,
    ``facts.organisation``); a person of no organisation (a supervisor of whole lines) sees
    every organisation's of their lines."""
    query: Doc = {"line": {"$in": lines}}
    if organisation is not None:
        query["facts.organisation"] = organisation
    return query


class ClientRepository:
    """Clients and their keys, a thread's client, and a client's consultations."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.clients: AsyncCollection[Doc] = db["clients"]
        self.keys: AsyncCollection[Doc] = db["client_keys"]
        self.threads: AsyncCollection[Doc] = db["threads"]
        self.consultations: AsyncCollection[Doc] = db["consultations"]
        self.meta: AsyncCollection[Doc] = db["meta"]

    async def client_for(self, key: str) -> str:
        """The id of the client ``key`` names, made on first use.

        Safe to race and to repeat: the key's document decides (a unique primary key), and a
        loser removes the client record it made and returns the winner's.
        """
        found = await self.keys.find_one({"_id": key})
        if found is not None:
            return str(found["client_id"])
        client_id = new_id()
        await self.clients.insert_one({"_id": client_id, "created_at": utcnow()})
        try:
            await self.keys.insert_one({"_id": key, "client_id": client_id})
        except DuplicateKeyError:
            await self.clients.delete_one({"_id": client_id})
            found = await self.keys.find_one({"_id": key})
            if found is None:  # forgotten meanwhile (an erasure): this key starts afresh
                return await self.client_for(key)
            return str(found["client_id"])
        return client_id

    async def keys_of(self, client_id: str) -> list[str]:
        """The keys that name this client (its addresses and Telegram account, hashed)."""
        return [k["_id"] async for k in self.keys.find({"client_id": client_id}, {"_id": 1})]

    async def forget(self, client_id: str) -> int:
        """Forget what recognises this client (an erasure): the next message from their address
        or Telegram account starts a new client, unlinked to the erased one. The client record
        stays, with no address, so that statistics count the people they counted."""
        gone = await self.keys.delete_many({"client_id": client_id})
        return gone.deleted_count

    async def assign_existing(self, secret: bytes) -> int:
        """Give the e-mail and Telegram threads stored before threads had clients theirs (and
        their consultations), once per database; the store calls it at start, after the
        migrations. Safe for replicas starting at once: clients are found or made by key, a
        thread is set only while it has none. Returns how many threads got a client."""
        if await self.meta.find_one({"_id": "clients_assigned"}) is not None:
            return 0
        assigned = 0
        query: Doc = {"channel": {"$in": [Channel.EMAIL, Channel.TELEGRAM]}, "client_id": {"$exists": False}}
        async for thread in self.threads.find(query, {"channel": 1, "key": 1, "client": 1}):
            identity = identity_of_thread(thread)
            if identity is None:
                continue
            client_id = await self.client_for(client_key(secret, *identity))
            if await self._set_client(thread["_id"], None, {"client_id": client_id}) is not None:
                assigned += 1
        await self.meta.update_one(
            {"_id": "clients_assigned"}, {"$set": {"at": utcnow(), "threads": assigned}}, upsert=True
        )
        return assigned

    async def link(self, thread: Doc, client_id: str, by: str, from_thread: str) -> Doc | None:
        """Make ``client_id`` the client of ``thread`` (as read by the caller), and of its
        consultations, keeping the client it had for :meth:`unlink`. None when the thread's
        client changed meanwhile (nothing is written then)."""
        previous = thread.get("client_id")
        # An earlier link stays the one to go back to: undo returns to the client the
        # channel gave (or none), not to an intermediate guess.
        link = thread.get("client_link") or {"previous": previous}
        link = {"previous": link["previous"], "by": by, "at": utcnow(), "thread": from_thread}
        return await self._set_client(thread["_id"], previous, {"client_id": client_id, "client_link": link})

    async def client_of(self, thread: Doc) -> str:
        """``thread``'s client; a thread whose channel names nobody (a web chat) is given a
        new one here, for a consultant who says another thread is the same person. Keyed by
        the thread, so a retry (or a consultant doing the same at once) finds the same one."""
        if thread.get("client_id"):
            return str(thread["client_id"])
        client_id = await self.client_for(f"thread:{thread['_id']}")
        if await self._set_client(thread["_id"], None, {"client_id": client_id}) is None:
            current = await self.threads.find_one({"_id": thread["_id"]}, {"client_id": 1})
            return str((current or {}).get("client_id") or client_id)
        return client_id

    async def unlink(self, thread: Doc) -> Doc | None:
        """Give ``thread`` (and its consultations) back the client it had before it was linked
        by hand. None when it was not linked, or its client changed meanwhile."""
        link = thread.get("client_link")
        if not isinstance(link, dict):
            return None
        return await self._set_client(
            thread["_id"], thread.get("client_id"), {"client_id": link.get("previous")}, unset="client_link"
        )

    async def _set_client(
        self, thread_id: str, expected: str | None, fields: Doc, unset: str = ""
    ) -> Doc | None:
        update: Doc = {"$set": {**fields, "updated_at": utcnow()}}
        if unset:
            update["$unset"] = {unset: ""}
        changed = await self.threads.find_one_and_update(
            {"_id": thread_id, "client_id": expected}, update, return_document=ReturnDocument.AFTER
        )
        if changed is not None:
            await self.follow(changed)
        return changed

    async def follow(self, thread: Doc) -> None:
        """The consultations of ``thread`` get its client. Called after the thread's own
        write, and again by a link or undo that finds it already done: a failure between the
        two writes is repaired by asking again."""
        await self.consultations.update_many(
            {"thread_id": thread["_id"]}, {"$set": {"client_id": thread.get("client_id")}}
        )

    async def consultations_of(self, client_id: str, visible: Doc, limit: int = 50) -> list[Doc]:
        """The closed consultations of ``client_id`` matching ``visible`` (a filter, see
        :func:`visible_consultations`), latest first."""
        query: Doc = {"client_id": client_id, **visible}
        cursor = self.consultations.find(query).sort("started_at", DESCENDING).limit(limit)
        return [c async for c in cursor]
