"""Retention: delete the free text of threads closed long ago, keep what statistics count.

    python -m services.store.retention            # threads closed > STORE_RETENTION_DAYS ago
    python -m services.store.retention --days 90

Run it daily (cron, a systemd timer or a compose job). For every thread closed before the
cut-off and not yet cleared it deletes (QUALITY.md 4, data minimisation):

- the text, HTML, subject, quoted history and attachment names of its messages and notes;
- the raw mails (``mail_raw.raw``) and attachment bytes (``mail_attachments.data``) they came from;
- the thread's subject and every case-form answer that is not a categorical code, in the
  thread and in each of its consultations;

and keeps the thread, its times, its channel, line and queue, and ``facts`` (the categorical
answers statistics count). Each thread is cleared with conditional updates and marked
``text_deleted_at`` last, so a run that stops half-way is finished by the next one.
A thread reopened meanwhile (status no longer closed) is left alone; a thread that reopens
after its pass (its client wrote again) loses its mark, so its new text is cleared once it has
been closed long enough again.

Cases closed before the same cut-off lose their free text too (conversations/cases.py,
:meth:`CaseRepository.delete_free_text`): notes, the intake's text answers (the fields of type
``text`` in the configuration), the notes of services and follow-ups and the results of
external referrals; their kinds, dates, amounts, categorical answers and history stay.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from conversations.cases import CaseRepository
from conversations.repository import Repository
from services.store.stats import categorical
from shared.config import HotlineConfig, load_config
from shared.envelope import utcnow
from shared.mongo import make_client
from shared.settings import DEFAULT_CONFIG_PATH

Doc = dict[str, Any]


async def delete_free_text(repo: Repository, closed_before: datetime) -> int:
    """Clear the free text of threads closed before ``closed_before``; return how many."""
    db = repo.db
    cleared = 0
    query: Doc = {
        "status": "closed",
        "closed_at": {"$lt": closed_before},
        "text_deleted_at": {"$exists": False},
    }
    async for t in repo.threads.find(query, {"_id": 1, "case": 1}, batch_size=200):
        sources: list[str] = []
        attachments: list[str] = []
        async for m in repo.messages.find({"thread_id": t["_id"]}, {"source_id": 1, "attachments": 1}):
            if isinstance(m.get("source_id"), str):
                sources.append(m["source_id"])
            attachments += [a["id"] for a in m.get("attachments") or [] if isinstance(a, dict) and "id" in a]
        await repo.messages.update_many(
            {"thread_id": t["_id"]},
            {
                "$set": {
                    "text": None,
                    "html": None,
                    "subject": None,
                    "quoted": None,
                    "attachments": [],
                    "text_deleted": True,
                }
            },
        )
        if sources:
            await db["mail_raw"].update_many(
                {"_id": {"$in": sources}}, {"$set": {"raw": None, "text_deleted": True}}
            )
        if attachments:
            await db["mail_attachments"].update_many(
                {"_id": {"$in": attachments}},
                {"$set": {"data": None, "filename": None, "text_deleted": True}},
            )
        # Each consultation's case form, as the thread's latest copy of one.
        async for c in repo.consultations.find({"thread_id": t["_id"]}, {"case": 1}):
            if isinstance(c.get("case"), dict):
                await repo.consultations.update_one(
                    {"_id": c["_id"]}, {"$set": {"case": _categorical(c["case"])}}
                )
        done = await repo.threads.update_one(
            {"_id": t["_id"], "status": "closed"},
            {"$set": {"subject": None, "case": _categorical(t.get("case")), "text_deleted_at": utcnow()}},
        )
        cleared += done.modified_count
    return cleared


async def delete_case_free_text(repo: Repository, config: HotlineConfig, closed_before: datetime) -> int:
    """Clear the free text of cases closed before ``closed_before``; return how many."""
    return await CaseRepository(repo.db).delete_free_text(closed_before, config.cases.free_text_fields)


def _categorical(case: Any) -> Doc:
    """The answers of a case form that are categorical codes (free text dropped)."""
    return {k: v for k, v in (case if isinstance(case, dict) else {}).items() if categorical(v) is not None}


class RetentionSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STORE_", extra="ignore")
    mongo_url: SecretStr = Field(description="MongoDB URL")
    mongo_database: str = Field(default="hotline", description="MongoDB database name")
    retention_days: int = Field(
        default=365, ge=1, description="Free text of threads closed longer ago is deleted"
    )
    config_path: Path = Field(
        default=DEFAULT_CONFIG_PATH, description="Hotline configuration (YAML): which case answers are text"
    )


async def _run(days: int, settings: RetentionSettings) -> tuple[int, int]:
    config = load_config(settings.config_path)
    client = make_client(settings.mongo_url.get_secret_value())
    try:
        repo = Repository(client[settings.mongo_database])
        cut = utcnow() - timedelta(days=days)
        return await delete_free_text(repo, cut), await delete_case_free_text(repo, config, cut)
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.store.retention")
    parser.add_argument("--days", type=int, help="default: STORE_RETENTION_DAYS")
    args = parser.parse_args(argv)
    settings = RetentionSettings()
    days = args.days or settings.retention_days
    if days < 1:
        raise SystemExit("--days must be at least 1")
    threads, cases = asyncio.run(_run(days, settings))
    print(f"free text deleted from {threads} threads and {cases} cases closed over {days} days ago")


if __name__ == "__main__":
    main()
