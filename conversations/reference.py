"""Canned answers and the help directory, as the database keeps them.

The YAML configuration is their first-start seed: the store copies ``canned_answers`` and
``directory`` into the database once (:func:`seed`), and from then on the database wins; the
administration screen (services/store/administration.py) edits them there. A later change of
the YAML is not applied by itself (the store logs ``reference_seed_differs`` at start); the
operator command ``python -m services.store.admin reseed --what canned|directory`` replaces
the database's copy with the file's.

Readers (the store's console, chat_ingest's bot and widget) go through :class:`ReferenceData`:
a per-process cache that asks the database for the version of each kind at most every
:data:`CHECK_SECONDS` and reloads the kind whose version changed, so an edit made on one
replica is seen on every other within that bound (and at once on the replica that made it).
Until the store has seeded a kind, readers answer from the YAML.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Literal

from pydantic import ValidationError
from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from conversations.repository import Doc
from shared.config import CannedAnswer, Directory, DirectoryEntry, HotlineConfig
from shared.envelope import utcnow
from shared.logs import get_logger

log = get_logger(__name__)

Kind = Literal["canned", "directory"]
KINDS: tuple[Kind, ...] = ("canned", "directory")
CANNED = "canned_answers"
DIRECTORY = "directory_entries"
VERSIONS = "reference_versions"
# How stale a replica's copy may be: the version is asked for at most this often.
CHECK_SECONDS = 2.0
SECTIONS = ("emergency", "national", "region")


def yaml_canned(config: HotlineConfig) -> list[Doc]:
    """The configuration's canned answers as documents (line-wide: no organisation)."""
    return [
        {"_id": f"{line}-{i + 1}", "line": line, "organisation": None, "order": i, **a.model_dump()}
        for line, answers in config.canned_answers.items()
        for i, a in enumerate(answers)
    ]


def yaml_directory(config: HotlineConfig) -> list[Doc]:
    """The configuration's directory as documents; an entry without an id gets one from its place."""
    d = config.directory
    placed: list[tuple[str, str | None, list[DirectoryEntry]]] = [
        ("emergency", None, d.emergency),
        ("national", None, d.national),
        *[("region", r, es) for r, es in d.regions.items()],
    ]
    out = []
    for section, region, entries in placed:
        for i, e in enumerate(entries):
            entry_id = e.id or f"{region or section}_{i + 1}"
            out.append(
                {
                    "_id": entry_id,
                    "section": section,
                    "region": region,
                    "order": i,
                    **e.model_dump(exclude={"id"}),
                }
            )
    return out


def _digest(docs: list[Doc]) -> str:
    return hashlib.sha256(json.dumps(docs, sort_keys=True, default=str).encode()).hexdigest()


def _yaml(config: HotlineConfig, kind: Kind) -> list[Doc]:
    return yaml_canned(config) if kind == "canned" else yaml_directory(config)


def _collection(kind: Kind) -> str:
    return CANNED if kind == "canned" else DIRECTORY


async def seed(db: AsyncDatabase[Doc], config: HotlineConfig) -> list[Kind]:
    """Copy the YAML's canned answers and directory into the database, each kind once: a kind
    whose version document exists is the database's already. Safe on several replicas at once
    (the documents' ids come from the YAML; the version document is written last). Logs when
    the YAML no longer matches what was seeded. The kinds seeded now."""
    await db[CANNED].create_index([("line", ASCENDING), ("order", ASCENDING)], name="line_order")
    await db[DIRECTORY].create_index(
        [("section", ASCENDING), ("region", ASCENDING), ("order", ASCENDING)], name="section_order"
    )
    seeded: list[Kind] = []
    for kind in KINDS:
        docs = _yaml(config, kind)
        version = await db[VERSIONS].find_one({"_id": kind})
        if version is not None:
            if version.get("seed_digest") != _digest(docs):
                log.warning("reference_seed_differs", kind=kind)
            continue
        for doc in docs:
            await db[_collection(kind)].update_one({"_id": doc["_id"]}, {"$setOnInsert": doc}, upsert=True)
        await db[VERSIONS].update_one(
            {"_id": kind},
            {"$setOnInsert": {"version": 1, "seeded_at": utcnow(), "seed_digest": _digest(docs)}},
            upsert=True,
        )
        seeded.append(kind)
        log.info("reference_seeded", kind=kind, entries=len(docs))
    return seeded


async def reseed(db: AsyncDatabase[Doc], config: HotlineConfig, kind: Kind) -> int:
    """Replace the database's ``kind`` with the YAML's (the operator's command); every replica
    reloads within :data:`CHECK_SECONDS`. The number of documents written."""
    docs = _yaml(config, kind)
    await db[_collection(kind)].delete_many({})
    if docs:
        await db[_collection(kind)].insert_many(docs)
    await db[VERSIONS].update_one(
        {"_id": kind},
        {"$inc": {"version": 1}, "$set": {"seeded_at": utcnow(), "seed_digest": _digest(docs)}},
        upsert=True,
    )
    return len(docs)


async def bump(db: AsyncDatabase[Doc], kind: Kind) -> int:
    """A kind changed: its new version, which every replica's cache notices."""
    doc = await db[VERSIONS].find_one_and_update(
        {"_id": kind}, {"$inc": {"version": 1}}, upsert=True, return_document=ReturnDocument.AFTER
    )
    return int(doc["version"]) if doc is not None else 1


def _canned_of(doc: Doc) -> CannedAnswer | None:
    try:
        return CannedAnswer(title=doc["title"], text=doc["text"])
    except (KeyError, ValidationError):
        return None


def directory_of(docs: list[Doc]) -> Directory:
    """A :class:`Directory` of stored entries, in their order; an entry that no longer reads
    (edited by hand into something invalid) is left out rather than breaking the bot."""
    emergency: list[DirectoryEntry] = []
    national: list[DirectoryEntry] = []
    regions: dict[str, list[DirectoryEntry]] = {}
    for doc in sorted(docs, key=lambda d: (d.get("order", 0), d["_id"])):
        fields = {
            k: doc.get(k) for k in ("name", "phone", "address", "note", "url") if doc.get(k) is not None
        }
        try:
            entry = DirectoryEntry(id=doc["_id"], **fields)
        except ValidationError:
            log.warning("directory_entry_unreadable", entry_id=doc["_id"])
            continue
        if doc.get("section") == "emergency":
            emergency.append(entry)
        elif doc.get("section") == "national":
            national.append(entry)
        elif doc.get("region"):
            regions.setdefault(doc["region"], []).append(entry)
    return Directory(emergency=emergency, national=national, regions=regions)


class ReferenceData:
    """Canned answers and the directory for one process, cached (see the module's text)."""

    def __init__(self, db: AsyncDatabase[Doc], config: HotlineConfig) -> None:
        self.db = db
        self.config = config
        self._checked: dict[Kind, float] = {}
        self._version: dict[Kind, int | None] = {}
        self._docs: dict[Kind, list[Doc]] = {}

    def forget(self, kind: Kind) -> None:
        """This process changed ``kind``: the next read reloads it."""
        self._checked.pop(kind, None)
        self._version.pop(kind, None)

    async def _load(self, kind: Kind) -> list[Doc] | None:
        """The stored documents of ``kind``; None while nothing is seeded (readers use the YAML)."""
        now = time.monotonic()
        if kind in self._docs and now - self._checked.get(kind, -1e9) < CHECK_SECONDS:
            return self._docs[kind] if self._version.get(kind) is not None else None
        try:
            version_doc = await self.db[VERSIONS].find_one({"_id": kind}, {"version": 1})
            version = None if version_doc is None else int(version_doc["version"])
            if version is not None and (version != self._version.get(kind) or kind not in self._docs):
                self._docs[kind] = [d async for d in self.db[_collection(kind)].find({})]
            elif version is None:
                self._docs[kind] = []
        except PyMongoError as exc:
            # The database away: the copy this process has, else the YAML's (the bot and the
            # widget answer without the database, as they did before it kept these).
            log.warning("reference_unreadable", kind=kind, error=type(exc).__name__)
            return self._docs[kind] if self._version.get(kind) is not None and kind in self._docs else None
        self._version[kind] = version
        self._checked[kind] = now
        return self._docs[kind] if version is not None else None

    async def canned_docs(self) -> list[Doc]:
        docs = await self._load("canned")
        if docs is None:
            return yaml_canned(self.config)
        return sorted(docs, key=lambda d: (d.get("line", ""), d.get("order", 0), d["_id"]))

    async def canned(self, lines: list[str], organisation: str | None) -> dict[str, list[dict[str, Any]]]:
        """Canned answers by line, for a person of ``organisation`` on ``lines``: the line's
        own and their organisation's."""
        out: dict[str, list[dict[str, Any]]] = {ln: [] for ln in lines}
        for doc in await self.canned_docs():
            if doc.get("line") not in out:
                continue
            if doc.get("organisation") not in (None, organisation):
                continue
            answer = _canned_of(doc)
            if answer is not None:
                out[doc["line"]].append({"id": doc["_id"], **answer.model_dump()})
        return out

    async def directory_docs(self) -> list[Doc]:
        docs = await self._load("directory")
        return yaml_directory(self.config) if docs is None else docs

    async def directory(self) -> Directory:
        return directory_of(await self.directory_docs())

    async def directory_entry(self, entry_id: str) -> DirectoryEntry | None:
        d = await self.directory()
        entries = [*d.emergency, *d.national, *[e for es in d.regions.values() for e in es]]
        return next((e for e in entries if e.id == entry_id), None)
