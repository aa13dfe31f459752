"""Routing by skill and language (services/store/skills.py) and the database copy of canned
answers and the directory (conversations/reference.py): the pure rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from conversations.reference import directory_of, yaml_canned, yaml_directory
from services.store import skills
from services.store.auth import User
from shared.config import HotlineConfig

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def on(config: HotlineConfig, minutes: float = 3, common: list[str] | None = None) -> HotlineConfig:
    policy = config.queue_policy.model_copy(
        update={"skill_wait_minutes": minutes, "common_languages": ["ru", "be"] if common is None else common}
    )
    return config.model_copy(update={"queue_policy": policy})


def person(languages: tuple[str, ...] = (), skills_: tuple[str, ...] = ()) -> User:
    return User("anna", "Anna", "consultant", "lastrada", ["113", "dv"], (), skills_, languages)


def thread(**fields: object) -> dict[str, object]:
    return {
        "_id": "t",
        "status": "waiting",
        "line": "113",
        "waiting_since": NOW - timedelta(minutes=1),
        **fields,
    }


def test_a_mail_or_chat_in_a_language_not_everyone_speaks_needs_a_speaker(config: HotlineConfig) -> None:
    c = on(config)
    assert skills.needs(c, thread(channel="email", language="en")) == {"language": "en"}
    assert skills.needs(c, thread(channel="chat", language="be")) == {}
    assert skills.needs(c, thread(channel="email", language=None)) == {}
    # Without common_languages, the first configured language is everyone's.
    assert skills.needs(on(config, common=[]), thread(language="be")) == {"language": "be"}


def test_a_topic_with_a_skill_needs_it(config: HotlineConfig) -> None:
    assert skills.needs(on(config), thread(line="dv", topic="legal")) == {"skill": "legal"}
    assert skills.needs(on(config), thread(line="dv", topic="psychological")) == {}


def test_kept_until_the_wait_ends_and_never_for_who_has_it(config: HotlineConfig) -> None:
    c = on(config)
    english = thread(language="en")
    kept = skills.reservation(c, person(), english, NOW)
    assert kept == {"for": {"language": "en"}, "until": (NOW + timedelta(minutes=2)).isoformat()}
    assert skills.reservation(c, person(languages=("en",)), english, NOW) is None
    assert skills.reservation(c, person(), english, NOW + timedelta(minutes=2)) is None
    assert skills.reservation(c, person(), {**english, "status": "active"}, NOW) is None
    legal = thread(line="dv", topic="legal", language="en")
    assert skills.reservation(c, person(languages=("en",)), legal, NOW) == {
        "for": {"skill": "legal"},
        "until": (NOW + timedelta(minutes=2)).isoformat(),
    }


def test_off_by_default(config: HotlineConfig) -> None:
    assert config.queue_policy.skill_wait_minutes == 0
    assert skills.reservation(config, person(), thread(language="en", line="dv", topic="legal"), NOW) is None
    assert skills.reserved_filter(config, person(), NOW) is None


def test_the_filter_names_what_the_person_lacks(config: HotlineConfig) -> None:
    c = on(config)
    found = skills.reserved_filter(c, person(languages=("en",)), NOW)
    assert found == {
        "status": "waiting",
        "waiting_since": {"$gt": NOW - timedelta(minutes=3)},
        "$or": [{"line": "dv", "topic": {"$in": ["legal"]}}],
    }
    assert skills.reserved_filter(c, person(languages=("en",), skills_=("legal",)), NOW) is None


def test_the_seed_is_the_configuration(config: HotlineConfig) -> None:
    seeded = directory_of(yaml_directory(config))
    assert [e.model_dump() for e in seeded.emergency] == [e.model_dump() for e in config.directory.emergency]
    assert {r: len(es) for r, es in seeded.regions.items()} == {
        r: len(es) for r, es in config.directory.regions.items()
    }
    ids = [d["_id"] for d in yaml_directory(config)]
    assert len(ids) == len(set(ids))
    canned = yaml_canned(config)
    assert [(d["line"], d["title"]) for d in canned] == [
        (line, a.title) for line, answers in config.canned_answers.items() for a in answers
    ]
