"""Finding a record: a keyed word index over messages and consultations.

Why an index of our own. The local database stand-in (FerretDB v1 on SQLite) reads by ``_id``
only: any other filter decodes the whole collection, and it has no text index
(reviews/ferretdb.md sections 3 and 5; measured on this project's 2-core box, one filter over
100,000 messages takes about 20 s, a lookup by ``_id`` about 1.5 ms). So every read of a
search is a lookup by ``_id``:

- ``search_postings`` ``{_id: "<token>:<YYYY-MM>", refs: "DD|<ref> DD|<ref> ...", more, n}``: for one word
  (or one case-form answer) and one month (in the statistics time zone), the threads (or
  consultations) that hold it and on which day. A search reads one document per term and
  month, so its cost grows with the words asked and the months searched, not with the
  messages stored;
- ``search_pending`` ``{_id: "m:<message id>" | "c:<consultation id>"}``: what is stored but
  not yet in the postings. The repository adds to it in the same moment as it stores a message
  or a consultation (an insert written together with others, like the message's own); the
  store's indexer (services/store/search_index.py) folds it into the postings a moment later,
  off the path of a message, and removes it. ``f:<id>`` entries are the other way round: refs
  to take out of the postings (below).

The index follows retention and erasure: what no longer holds text is found by no word. Before
a message's text is cleared (services/store/retention.py, which an erasure uses too), its
postings are computed from it as the indexer computed them, while it and its data key still
exist, and written down as an ``f:`` entry; once the text is cleared, its refs are taken out of
each posting (a conditional rewrite: a concurrent append makes it read again), except those
that a message of the same thread and day still holding text also gives. The entry is removed
then, or, when the indexer may still be adding that message (its ``m:`` entry still waited) or
a rebuild runs, left for the indexer, which applies it after its adds: so a message indexed
from a read taken just before its text went is taken out again. A rebuild reads only text that
is still stored, so it brings nothing back.

Privacy: a token is a keyed hash (HMAC-SHA256, truncated to 72 bits) of a normalised word,
under a key derived from a secret the database does not hold, so the index is no word list:
without the secret nobody can tell which word a token stands for or test a guess. Very common
words are not indexed (:data:`STOP_WORDS`): they find nothing useful and would be the easiest
to tell by frequency. Query text is never logged.

The words of a text (:func:`words`): case-folded, ``ё`` read as the Cyrillic e (U+0435),
split at anything that is not a letter or a digit, 2 to 40 characters. So a search finds
whole words, in any case, and an address or a phone number by its parts.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import re
import unicodedata
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from conversations.vault import SEALED, Vault
from shared.mongo import InsertBatcher

Doc = dict[str, Any]

# One word: letters and digits (Unicode), nothing else; linear, no backtracking.
_WORD = re.compile(r"[^\W_]+")
MIN_WORD = 2
MAX_WORD = 40
# A message longer than this is indexed by its first part (a pasted document, a mail
# thread quoted in full): enough to find it, bounded in work.
MAX_TEXT = 100_000
MAX_WORDS = 2000

# Function words of the example configuration's languages (ru, be, en): in nearly every
# message, so a search for one of them alone finds everything and narrows nothing.
STOP_WORDS = frozenset(
    """
    и в во не что он на я с со как а то все она так его но да ты к у же вы за бы по только ее
    мне было вот от меня еще нет о из ему теперь когда даже ну ли если уже или ни быть был него
    до вас нибудь опять уж вам ведь там потом себя ничего ей может они тут где есть надо ней для
    мы тебя их чем была сам чтоб без будто чего раз тоже себе под будет ж тогда кто этот того
    потому этого какой совсем ним здесь этом один почти мой тем чтобы нее сейчас были куда зачем
    всех никогда можно при наконец два об другой хоть после над больше тот через эти нас про
    всего них какая много разве три эту моя впрочем хорошо свою этой перед иногда лучше чуть том
    нельзя такой им более всегда конечно всю между это
    і ў не што ён на я з як а так яго але ды ты да у жа вы за б па толькі яе мне было вось ад
    мяне яшчэ няма з ці калі ўжо або ні быць быў дзе ёсць трэба для мы цябе іх чым была сам
    каб без гэта гэты таксама пад будзе тады хто
    the a an and or of to in on at for is are was were be been it this that with as by from
    you your we our they their he she his her i me my not no do does did have has had will
    would can could there here what which who whom but if so than then into about also just
    """.split()
)


def words(text: str | None) -> set[str]:
    """The distinct indexable words of ``text`` (see the module doc); at most
    :data:`MAX_WORDS`."""
    if not text:
        return set()
    folded = unicodedata.normalize("NFKC", text[:MAX_TEXT]).casefold().replace("ё", "е")
    found: set[str] = set()
    for match in _WORD.finditer(folded):
        word = match.group()
        if MIN_WORD <= len(word) <= MAX_WORD and word not in STOP_WORDS:
            found.add(word)
            if len(found) >= MAX_WORDS:
                break
    return found


class SearchKey:
    """The keyed hash that turns a term into a token. ``secret`` comes from the settings (never
    from the database); the key is derived from it for this use alone."""

    def __init__(self, secret: bytes) -> None:
        self._key = hmac.new(secret, b"hotline-gateway search tokens v1", hashlib.sha256).digest()

    def token(self, *parts: str) -> str:
        mac = hmac.new(self._key, "\x1f".join(parts).encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac[:9]).decode()

    # The terms of the index. A consultation's terms name its organisation: a search reads
    # only the postings of the organisations its person may see.

    def word(self, word: str) -> str:
        return self.token("w", word)

    def consultations(self, organisation: str) -> str:
        """Every consultation (or contact without one) counted for ``organisation``."""
        return self.token("c", organisation)

    def answer(self, organisation: str, field: str, code: str) -> str:
        """The consultations of ``organisation`` whose case form answered ``field`` with ``code``."""
        return self.token("f", organisation, field, code)


@dataclass(frozen=True)
class Terms:
    """What turns a record into its postings: the keyed hash, and the time zone that decides a
    record's day and month (the store's statistics time zone)."""

    key: SearchKey
    tz: ZoneInfo


def local_day(at: datetime, tz: ZoneInfo) -> date:
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(tz).date()


def next_midnight(at: datetime, tz: ZoneInfo) -> datetime:
    """The start of the local day after ``at``'s, in UTC."""
    return datetime.combine(local_day(at, tz) + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)


def posting_key(token: str, day: date) -> str:
    return f"{token}:{day.year:04d}-{day.month:02d}"


def ref(day: date, target: str) -> str:
    """One entry of a posting list: the day of the month, and the thread or consultation."""
    return f"{day.day:02d}|{target}"


def split_ref(value: str) -> tuple[int, str]:
    day, _, target = value.partition("|")
    return int(day), target


def months(first: date, last: date) -> list[str]:
    """The months ``YYYY-MM`` from ``first`` to ``last``, both included."""
    out = []
    y, m = first.year, first.month
    while (y, m) <= (last.year, last.month):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def message_postings(message: Mapping[str, Any], key: SearchKey, tz: ZoneInfo) -> dict[str, set[str]]:
    """The postings of one stored message: each of its words, in the month and on the day it
    was stored, points at its thread."""
    at = message.get("created_at")
    thread_id = message.get("thread_id")
    if not isinstance(at, datetime) or not isinstance(thread_id, str):
        return {}
    text = " ".join(str(message.get(f) or "") for f in ("subject", "text"))
    day = local_day(at, tz)
    entry = ref(day, thread_id)
    return {posting_key(key.word(w), day): {entry} for w in words(text)}


def consultation_postings(
    consultation: Mapping[str, Any], key: SearchKey, tz: ZoneInfo
) -> dict[str, set[str]]:
    """The postings of one closed consultation: its organisation's every-consultation term and
    one term per categorical case-form answer (``facts.fields``), on the day it started."""
    facts = consultation.get("facts") or {}
    at = facts.get("at") or consultation.get("started_at")
    if not isinstance(at, datetime):
        return {}
    organisation = str(facts.get("organisation") or "unknown")
    day = local_day(at, tz)
    entry = ref(day, str(consultation["_id"]))
    out = {posting_key(key.consultations(organisation), day): {entry}}
    for field, codes in (facts.get("fields") or {}).items():
        for code in codes if isinstance(codes, list) else []:
            if isinstance(code, str):
                out[posting_key(key.answer(organisation, field, code), day)] = {entry}
    return out


def _message_of(message: Mapping[str, Any], key: SearchKey, tz: ZoneInfo) -> dict[str, set[str]]:
    """:func:`message_postings` of a message that is searched (not an internal note)."""
    if message.get("direction") not in INDEXED_DIRECTIONS:
        return {}
    return message_postings(message, key, tz)


def _joined(refs: Iterable[str]) -> str:
    # One string, not an array: the stand-in decodes an array element by element, and a
    # common word's month holds thousands (measured: 1,000 refs read 3x faster as a string).
    return " ".join(sorted(set(refs)))


def _split(refs: Any) -> list[str]:
    # A list where the postings were written as an array (the index's first form).
    return [str(r) for r in refs] if isinstance(refs, list) else str(refs or "").split()


def merge(into: dict[str, set[str]], more: Mapping[str, Iterable[str]]) -> None:
    for k, refs in more.items():
        into.setdefault(k, set()).update(refs)


# What a client wrote and what we answered; internal notes are not searched.
INDEXED_DIRECTIONS = frozenset({"in", "out"})
_MESSAGE_FIELDS = {"thread_id": 1, "created_at": 1, "direction": 1, "subject": 1, "text": 1, SEALED: 1}
# What :meth:`SearchIndex.before_clearing` needs of a message.
SEARCHED_FIELDS = dict(_MESSAGE_FIELDS)
_CONSULTATION_FIELDS = {"facts": 1, "started_at": 1}

MESSAGE = "m:"
# Appends a key takes before they are folded into its one string: reading a list element
# costs the stand-in more than reading its share of a string.
FOLD_AT = 32
CONSULTATION = "c:"
FORGET = "f:"
# Waiting entries read, or taken out, by one query.
READ_CHUNK = 500
# Posting keys one ``f:`` entry lists at most (a thread of long mails over many months gives
# thousands): documents stay far below the database's size limit.
FORGET_CHUNK = 5000
# Rewrites of one posting tried before a removal is left to the indexer (each failure means
# someone else wrote the posting meanwhile).
REMOVE_TRIES = 20
# Meta documents beside the postings (a token has no "~").
MONTHS_ID = "~months"
REBUILD_ID = "~rebuild"


def _holds_text(message: Mapping[str, Any]) -> bool:
    return any(message.get(f) for f in ("subject", "text", SEALED))


@dataclass
class Forgetting:
    """Refs to take out of the postings once some messages of one thread are cleared
    (:meth:`SearchIndex.before_clearing`): what they gave, the ``f:`` entries that record it,
    and the window in which a message of the thread still holding text may give the same."""

    thread_id: str
    message_ids: list[str]
    kept_from: datetime
    kept_to: datetime
    postings: dict[str, set[str]] = dataclasses.field(default_factory=dict)
    entries: list[str] = dataclasses.field(default_factory=list)


class SearchIndex:
    """The two search collections: the only door to them."""

    def __init__(
        self, db: AsyncDatabase[Doc], vault: Vault | None = None, terms: Terms | None = None
    ) -> None:
        self.vault = vault  # what is read of a message is opened with it (conversations/vault.py)
        # What makes postings; without it, text that was searched cannot be cleared (:meth:`use`).
        self.terms = terms
        self.pending: AsyncCollection[Doc] = db["search_pending"]
        self.postings: AsyncCollection[Doc] = db["search_postings"]
        self._pending_inserts = InsertBatcher(self.pending)
        # Read, never written, here: what the index is made from.
        self._messages: AsyncCollection[Doc] = db["messages"]
        self._consultations: AsyncCollection[Doc] = db["consultations"]

    # --- what is waiting to be indexed ------------------------------------------------------

    async def message_stored(self, message_id: str) -> None:
        """Called with every message stored (in or out): it waits for the indexer. Safe to
        call again for the same message."""
        await self._pending_inserts.insert({"_id": MESSAGE + message_id})

    async def consultation_stored(self, consultation_id: str) -> None:
        await self._pending_inserts.insert({"_id": CONSULTATION + consultation_id})

    async def waiting(self, limit: int) -> list[str]:
        """Up to ``limit`` waiting entries (``m:<id>`` / ``c:<id>``). The collection holds only
        what is not yet indexed, so reading it stays cheap."""
        return [d["_id"] async for d in self.pending.find({}, {"_id": 1}).limit(limit)]

    async def indexed(self, entries: Iterable[str]) -> None:
        """Take indexed entries out of the queue: one delete by ``_id`` (``$in``) for each
        :data:`READ_CHUNK` of them (the local stand-in's patch reads an ``_id $in`` by its index,
        as MongoDB does)."""
        done = list(entries)
        for start in range(0, len(done), READ_CHUNK):
            await self.pending.delete_many({"_id": {"$in": done[start : start + READ_CHUNK]}})

    async def postings_of(self, entries: Sequence[str], key: SearchKey, tz: ZoneInfo) -> dict[str, set[str]]:
        """The postings of waiting entries, their messages and consultations read by ``_id``
        (``$in``, :data:`READ_CHUNK` to a query); none for one that is gone (erased) or holds
        nothing to index (a note, text deleted)."""
        postings: dict[str, set[str]] = {}
        reads = (
            (MESSAGE, self._messages, _MESSAGE_FIELDS),
            (CONSULTATION, self._consultations, _CONSULTATION_FIELDS),
        )
        for kind, collection, fields in reads:
            ids = [e[len(kind) :] for e in entries if e.startswith(kind)]
            for start in range(0, len(ids), READ_CHUNK):
                async for doc in collection.find({"_id": {"$in": ids[start : start + READ_CHUNK]}}, fields):
                    if kind == MESSAGE:
                        merge(postings, _message_of(await self._open(doc), key, tz))
                    else:
                        merge(postings, consultation_postings(doc, key, tz))
        return postings

    async def _open(self, message: Doc) -> Doc:
        return await self.vault.open_fields(message) if self.vault is not None else message

    # --- what retention and erasure clear -----------------------------------------------------

    def use(self, terms: Terms) -> None:
        """Give the index its terms (the store does, from its settings, as its indexer has
        them): then clearing a message's text takes it out of the index."""
        self.terms = terms

    async def before_clearing(self, thread_id: str, messages: list[Doc], before: datetime) -> Forgetting:
        """Call before clearing the text of ``messages`` (as stored, with the fields of
        :data:`SEARCHED_FIELDS`), all of thread ``thread_id`` and stored before ``before``,
        while their data key still exists: their postings are computed as the indexer computed
        them and written down as ``f:`` entries, so a clearing that stops half-way is finished
        by the indexer. Then clear them, then call :meth:`after_clearing`. Raises RuntimeError
        when one of them holds searched text and the index has no terms (:meth:`use`): its
        words would go on finding the thread."""
        postings: dict[str, set[str]] = {}
        searched = []
        for m in messages:
            if m.get("direction") not in INDEXED_DIRECTIONS or not _holds_text(m):
                continue
            if self.terms is None:
                raise RuntimeError("clearing searched text needs the search terms (SearchIndex.use)")
            searched.append(m["_id"])
            merge(postings, _message_of(await self._open(m), self.terms.key, self.terms.tz))
        tz = self.terms.tz if self.terms is not None else ZoneInfo("UTC")
        out = Forgetting(thread_id, searched, before, next_midnight(before, tz), postings)
        items = sorted(postings.items())
        for start in range(0, len(items), FORGET_CHUNK):
            entry = FORGET + uuid.uuid4().hex
            await self.pending.insert_one(
                {
                    "_id": entry,
                    "thread_id": thread_id,
                    "kept_from": out.kept_from,
                    "kept_to": out.kept_to,
                    # "<key> <ref> <ref> ...": an array of arrays is not stored by the stand-in.
                    "postings": [f"{k} {_joined(v)}" for k, v in items[start : start + FORGET_CHUNK]],
                }
            )
            out.entries.append(entry)
        return out

    async def after_clearing(self, forgetting: Forgetting) -> None:
        """Call once the messages of ``forgetting`` are cleared: their ``m:`` entries go (nothing
        is left to index), their refs are taken out of the postings, and the ``f:`` entries are
        removed, unless the indexer may still add one of those messages from a read taken
        before the clearing (its entry still waited) or a rebuild runs: then the entries are
        left for the indexer, which applies them after its adds."""
        waited = 0
        for message_id in forgetting.message_ids:
            waited += (await self.pending.delete_one({"_id": MESSAGE + message_id})).deleted_count
        if not forgetting.entries or self.terms is None:
            return
        f = forgetting
        done = await self._forget(f.thread_id, f.kept_from, f.kept_to, f.postings, self.terms)
        if done and not waited and not await self.rebuild_requested():
            for entry in f.entries:
                await self.pending.delete_one({"_id": entry})

    async def forget_entry(self, entry: str, terms: Terms) -> bool:
        """Apply one ``f:`` entry (the indexer does, after its adds); True when it is done (or
        gone), False when a posting kept changing under it (the entry then waits)."""
        doc = await self.pending.find_one({"_id": entry})
        if doc is None:
            return True
        postings: dict[str, set[str]] = {}
        for line in doc.get("postings") or []:
            key, *refs = str(line).split()
            postings[key] = set(refs)
        return await self._forget(str(doc["thread_id"]), doc["kept_from"], doc["kept_to"], postings, terms)

    async def _forget(
        self,
        thread_id: str,
        kept_from: datetime,
        kept_to: datetime,
        postings: Mapping[str, set[str]],
        terms: Terms,
    ) -> bool:
        """Take ``postings`` out of the index, but for the refs that a message of the thread
        still holding text gives (one stored on the same day as the last one cleared, from
        ``kept_from`` to ``kept_to``): read now, after the clearing. True when done."""
        kept: dict[str, set[str]] = {}
        live = {
            "thread_id": thread_id,
            "created_at": {"$gte": kept_from, "$lt": kept_to},
            "text_deleted": {"$exists": False},
        }
        async for m in self._messages.find(live, _MESSAGE_FIELDS):
            merge(kept, _message_of(await self._open(m), terms.key, terms.tz))
        done = True
        for k in sorted(postings):
            gone = postings[k] - kept.get(k, set())
            if gone and not await self._remove(k, gone):
                done = False
        return done

    async def _remove(self, key: str, gone: set[str]) -> bool:
        """Take the refs ``gone`` out of posting ``key``: read it, write it back without them
        (folded, as :meth:`_fold` does), or delete it when nothing is left, only if nobody
        wrote it meanwhile (``n`` counts its writes: a conditional update, atomic per
        document on MongoDB and on the patched stand-in); else read again. False after
        :data:`REMOVE_TRIES` such races."""
        for _ in range(REMOVE_TRIES):
            doc = await self.postings.find_one({"_id": key})
            if doc is None:
                return True
            refs = set(_split(doc.get("refs")))
            for part in doc.get("more") or []:
                refs.update(_split(part))
            if not refs & gone:
                return True
            n = doc.get("n")
            same: Doc = {"_id": key, "n": n if n is not None else {"$exists": False}}
            left = refs - gone
            if left:
                written = (n or 0) + 1
                update: Doc = {"$set": {"refs": _joined(left), "more": [], "n": written, "folds": written}}
                if (await self.postings.update_one(same, update)).matched_count:
                    return True
            elif (await self.postings.delete_one(same)).deleted_count:
                return True
        return False

    async def everything(
        self, key: SearchKey, tz: ZoneInfo, chunk: int
    ) -> AsyncIterator[dict[str, set[str]]]:
        """The postings of every stored message and consultation: one pass over each collection
        (the only way to read them all on FerretDB v1), in time order, handed over a month at
        a time (or ``chunk`` documents, in a busier month). A posting key names its month, so
        the keys of one part are new to the index and are written by inserts, not updates."""
        passes = (
            (self._messages, _MESSAGE_FIELDS, "created_at", _message_of),
            (self._consultations, _CONSULTATION_FIELDS, "started_at", consultation_postings),
        )
        for collection, fields, order, postings_of in passes:
            postings: dict[str, set[str]] = {}
            month, n = None, 0
            async for doc in collection.find({}, fields, batch_size=1000).sort(order, 1):
                at = doc.get(order)
                this = local_day(at, tz).replace(day=1) if isinstance(at, datetime) else None
                if postings and (this != month or n >= chunk):
                    yield postings
                    postings, n = {}, 0
                month = this
                if collection is self._messages:
                    doc = await self._open(doc)
                merge(postings, postings_of(doc, key, tz))
                n += 1
            if postings:
                yield postings

    async def request_rebuild(self, fresh: bool = False) -> None:
        """Ask the indexer to read every stored message and consultation (the migration that
        introduced the index, or an operator after restoring an old backup). ``fresh``: the
        postings are emptied first, so that only what stored text gives now is found (the
        migration that made the index follow retention). Each request counts (``asked``), so
        one made while a rebuild runs is served by another."""
        fields: Doc = {"requested": True, **({"fresh": True} if fresh else {})}
        await self.postings.update_one(
            {"_id": REBUILD_ID}, {"$set": fields, "$inc": {"asked": 1}}, upsert=True
        )

    async def rebuild_request(self) -> Doc | None:
        """The rebuild asked for, if any (pass it to :meth:`rebuild_done`)."""
        return await self.postings.find_one({"_id": REBUILD_ID})

    async def rebuild_requested(self) -> bool:
        return await self.rebuild_request() is not None

    async def empty(self) -> None:
        """Delete every posting (a fresh rebuild, which the request itself survives)."""
        await self.postings.delete_many({"_id": {"$ne": REBUILD_ID}})

    async def rebuild_done(self, request: Doc | None = None) -> None:
        """The rebuild of ``request`` is done: it is removed, unless asked for again meanwhile."""
        if request is None:
            await self.postings.delete_one({"_id": REBUILD_ID})
            return
        asked = request.get("asked")
        await self.postings.delete_one(
            {"_id": REBUILD_ID, "asked": asked if asked is not None else {"$exists": False}}
        )

    # --- postings -----------------------------------------------------------------------------

    async def add(self, postings: Mapping[str, Iterable[str]]) -> None:
        """Add ``postings`` (key -> refs). New keys are written together in one insert; to a key
        that exists the new refs are appended in one write, without reading it (``more``, a
        list of strings), and folded into ``refs`` once it holds :data:`FOLD_AT` of them.
        Adding a ref twice changes what is stored, never what is found."""
        if not postings:
            return
        docs = [{"_id": k, "refs": _joined(v), "more": [], "n": 1} for k, v in postings.items()]
        existing: list[str] = []
        for start in range(0, len(docs), 1000):
            chunk = docs[start : start + 1000]
            try:
                await self.postings.insert_many(chunk, ordered=False)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if any(e.get("code") != 11000 for e in errors):
                    raise
                existing += [chunk[e["index"]]["_id"] for e in errors]
        for start in range(0, len(existing), 1000):
            chunk_keys = existing[start : start + 1000]
            # One round trip for a thousand appends, then one read of their counters: a key
            # that now holds FOLD_AT appended parts is folded.
            await self.postings.bulk_write(
                [
                    UpdateOne(
                        {"_id": k}, {"$push": {"more": _joined(postings[k])}, "$inc": {"n": 1}}, upsert=True
                    )
                    for k in chunk_keys
                ],
                ordered=False,
            )
            async for doc in self.postings.find({"_id": {"$in": chunk_keys}}, {"n": 1, "folds": 1}):
                if (doc.get("n") or 0) - (doc.get("folds") or 0) >= FOLD_AT:
                    await self._fold(doc["_id"])
        month_keys = sorted({k.rpartition(":")[2] for k in postings})
        await self.postings.update_one(
            {"_id": MONTHS_ID}, {"$addToSet": {"months": {"$each": month_keys}}}, upsert=True
        )

    async def _fold(self, key: str) -> None:
        """Fold ``more`` into ``refs`` (each ref once), unless someone wrote the key meanwhile
        (``n`` counts its writes; the next fold then does it)."""
        doc = await self.postings.find_one({"_id": key})
        if doc is None:
            return
        refs = set(_split(doc.get("refs")))
        for part in doc.get("more") or []:
            refs.update(_split(part))
        n = doc.get("n") or 0
        await self.postings.update_one(
            {"_id": key, "n": n}, {"$set": {"refs": _joined(refs), "more": [], "n": n + 1, "folds": n + 1}}
        )

    async def months(self) -> list[str]:
        """The months that have postings, ``YYYY-MM``, in order."""
        doc = await self.postings.find_one({"_id": MONTHS_ID})
        return sorted((doc or {}).get("months") or [])

    async def refs(self, keys: Iterable[str]) -> list[str]:
        """The refs of every key in ``keys`` (one lookup by ``_id`` each)."""
        out: list[str] = []
        for k in keys:
            doc = await self.postings.find_one({"_id": k}, {"refs": 1, "more": 1})
            if doc is not None:
                out += _split(doc.get("refs"))
                for part in doc.get("more") or []:
                    out += _split(part)
        return out
