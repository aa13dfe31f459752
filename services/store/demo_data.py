"""Sample statistics for ``make demo``: closed consultations of every line, spread from the
first of January last year to today, so a newcomer's report page shows this year against the
last one, alive.

Demo data only, and marked as such: every sample thread has the key ``demo:<line>:<n>``,
``demo: true``, no client address and no text; only its case form and the facts statistics
count. Its answers are drawn from each line's configured case form, so the sample follows the
configuration. Some contacts are closed without a consultation (a configured reason), and
the consultations of e-mail and Telegram (and a few linked chats) belong to sample people
(``demo-<line>-<k>``), some of whom come back, so "people" and "contacts without a
consultation" are filled too. Written once: the keys are fixed, and running it again adds
nothing.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from conversations.identity import new_reply_token, thread_id_for
from conversations.repository import Doc, Repository
from services.store.stats import facts_for, no_consultation_facts_for
from shared.config import HotlineConfig

PER_LINE = 1000
SEED = 2026
CHANNELS = ["email", "chat", "telegram", "phone"]
NO_CONSULTATION_SHARE = 0.06
# Sample people per line, as a share of its contacts: fewer people than consultations, so
# some come back.
PEOPLE_SHARE = 0.45


def _answer(rnd: random.Random, spec: dict[str, Any]) -> Any:
    options = list(spec["options"])
    if spec["multiple"]:
        return sorted(rnd.sample(options, rnd.randint(1, min(2, len(options)))))
    # Women write to these lines far more often than men (the hotlines' own reports).
    weights = [4 if o in {"female", "woman", "f"} else 1 for o in options]
    return rnd.choices(options, weights=weights)[0]


def sample_year(config: HotlineConfig, now: datetime, per_line: int = PER_LINE) -> list[Doc]:
    """The sample threads (pure: the same configuration and ``now`` give the same answers)."""
    rnd = random.Random(SEED)  # noqa: S311 (a sample, not a secret)
    first = datetime(now.year - 1, 1, 1, tzinfo=now.tzinfo)
    span_minutes = int((now - first).total_seconds() // 60)
    reasons = list(config.close_reasons)
    docs: list[Doc] = []
    for line in config.lines:
        queues = [name for name, q in config.queues.items() if q.line == line]
        fields = config.case_fields(line)
        for n in range(per_line):
            created = now - timedelta(minutes=rnd.randrange(1, span_minutes))
            queue = rnd.choice(queues)
            organisation = rnd.choice(config.queues[queue].organisations)
            case, _, _ = config.check_case(line, {name: _answer(rnd, spec) for name, spec in fields.items()})
            key = f"demo:{line}:{n}"
            channel = rnd.choice(CHANNELS)
            named = channel in {"email", "telegram"} or (channel == "chat" and rnd.random() < 0.2)
            person = f"demo-{line}-{rnd.randrange(int(per_line * PEOPLE_SHARE))}" if named else None
            thread: Doc = {
                "_id": thread_id_for(key),
                "key": key,
                "demo": True,
                "channel": channel,
                "client_id": person,
                "line": line,
                "queue": queue,
                "organisations": config.queues[queue].organisations,
                "status": "closed",
                "priority": 0,
                "client": {"address": ""},
                "subject": None,
                "reply_token": new_reply_token(),
                "assignee": None,
                "claim_seq": 0,
                "created_at": created,
                "waiting_since": created,
                "closed_at": created + timedelta(minutes=rnd.randrange(5, 120)),
                "closed_by": None,
                "updated_at": created,
                "case": case,
            }
            if reasons and channel != "phone" and rnd.random() < NO_CONSULTATION_SHARE:
                reason = rnd.choice(reasons)
                del thread["case"]
                thread.update(outcome="no_consultation", no_consultation_reason=reason)
                thread["facts"] = no_consultation_facts_for(config, thread, organisation, reason)
            else:
                thread["outcome"] = "consultation"
                thread["facts"] = facts_for(config, thread, organisation, case)
            docs.append(thread)
    return docs


async def seed_sample_year(repo: Repository, config: HotlineConfig, now: datetime) -> int:
    """Write the sample year (once); returns how many threads were added."""
    return await repo.add_closed_threads(sample_year(config, now))
