"""The query-shape recorder (HOTLINE_QUERY_SHAPES) keeps field names and operators, never a value."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pymongo import monitoring

from shared.mongo import make_client
from shared.query_shapes import ENV, ShapeRecorder, shapes_listener

CANARY = "CANARY-7f3a9c"
ADDRESS = "survivor@example.org"


def started(command: dict[str, Any]) -> monitoring.CommandStartedEvent:
    return monitoring.CommandStartedEvent(command, "hotline", 1, ("127.0.0.1", 27017), 1)


# Commands as PyMongo sends them, a canary in every place a value can stand.
COMMANDS: list[dict[str, Any]] = [
    {
        "find": "threads",
        "filter": {
            "queue": {"$in": [CANARY, ADDRESS]},
            "status": CANARY,
            "$nor": [{"facts.organisation": {"$in": [CANARY]}}],
            "$or": [{"priority": {"$gt": 3}}, {"priority": 3, "waiting_since": {"$lt": CANARY}}],
        },
        "sort": {"priority": -1, "_id": 1},
        "projection": {CANARY: 1},
        "limit": 5,
        "comment": CANARY,
    },
    {
        "update": "threads",
        "updates": [
            {"q": {"_id": ADDRESS, f"auto.{CANARY}": CANARY}, "u": {"$set": {"subject": CANARY}}},
            {"q": {"email": {"from": ADDRESS}}, "u": {"$set": {"x": ADDRESS}}, "upsert": True},
        ],
    },
    {"delete": "sessions", "deletes": [{"q": {"login": CANARY}, "limit": 0}]},
    {
        "findAndModify": "messages",
        "query": {"_id": CANARY, "delivery.status": {"$ne": CANARY}},
        "update": {"$set": {"text": CANARY}},
        "sort": {"created_at": 1},
    },
    {
        "aggregate": "threads",
        "pipeline": [
            {"$match": {"reply_token": {"$elemMatch": {"$eq": CANARY}}, "$expr": {"$eq": ["$a", CANARY]}}},
            {"$sort": {"at": -1}},
            {"$group": {"_id": 1, "n": {"$sum": 1}}},
        ],
        "cursor": {},
    },
    {"distinct": "messages", "key": "thread_id", "query": {"author": f"consultant:{CANARY}"}},
    {"count": "threads", "query": {"key": {"$regex": CANARY, "$options": "i"}}},
    {"insert": "messages", "documents": [{"_id": CANARY, "text": CANARY}]},  # no query: nothing recorded
]


def test_shapes_keep_names_and_operators_never_values(tmp_path: Path) -> None:
    path = tmp_path / "shapes.jsonl"
    recorder = ShapeRecorder(str(path), "store")
    for command in COMMANDS * 2:  # a shape seen before is not written again
        recorder.started(started(command))
    text = path.read_text()
    assert CANARY not in text and ADDRESS not in text and "example" not in text
    shapes = [json.loads(line) for line in text.splitlines()]
    assert len(shapes) == 8
    find, by_id, by_email, delete, modify, aggregate, distinct, count = shapes
    assert find == {
        "origin": "store",
        "collection": "threads",
        "command": "find",
        "filter": {
            "queue": ["$in"],
            "status": ["$eq"],
            "$nor": [{"facts.organisation": ["$in"]}],
            "$or": [{"priority": ["$gt"]}, {"priority": ["$eq"], "waiting_since": ["$lt"]}],
        },
        "sort": [["priority", -1], ["_id", 1]],
    }
    # A field name built from data keeps only its identifier-like parts.
    assert by_id["filter"] == {"_id": ["$eq"], "auto.?": ["$eq"]}
    assert by_email["filter"] == {"email": ["$eq"]}  # a subdocument is an equality, its fields unsaid
    assert delete["collection"] == "sessions" and delete["filter"] == {"login": ["$eq"]}
    assert modify["filter"] == {"_id": ["$eq"], "delivery.status": ["$ne"]}
    assert modify["sort"] == [["created_at", 1]]
    assert aggregate["filter"] == {"reply_token": ["$elemMatch"], "$expr": ["?"]}
    assert aggregate["sort"] == [["at", -1]] and aggregate["stages"] == ["$match", "$sort", "$group"]
    assert distinct["filter"] == {"author": ["$eq"]}
    assert count["filter"] == {"key": ["$options", "$regex"]}


def test_a_failing_shape_never_fails_the_query(tmp_path: Path) -> None:
    recorder = ShapeRecorder(str(tmp_path / "missing-dir" / "shapes.jsonl"), "store")
    recorder.started(started(COMMANDS[0]))  # the file cannot be opened: logged, not raised


def test_off_unless_the_variable_names_a_file(tmp_path: Path, monkeypatch: Any) -> None:
    assert shapes_listener({}) == []
    assert shapes_listener({ENV: ""}) == []
    (recorder,) = shapes_listener({ENV: str(tmp_path / "s.jsonl")})
    assert isinstance(recorder, ShapeRecorder)
    monkeypatch.delenv(ENV, raising=False)
    assert make_client("mongodb://127.0.0.1:1").options.event_listeners == []
    monkeypatch.setenv(ENV, str(tmp_path / "s.jsonl"))
    client = make_client("mongodb://127.0.0.1:1")
    (listener,) = client.options.event_listeners
    assert isinstance(listener, ShapeRecorder)
