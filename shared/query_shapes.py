"""Query-shape recording: a diagnostics switch that lists the queries a process makes, without
their values, so a test can hold them against the indexes the services declare.

The local stand-in database (FerretDB v1) never reads through a secondary index, so a query
no index serves is as fast there as any other and would only show on MongoDB with data.
With ``HOTLINE_QUERY_SHAPES=<file>`` in a service's environment, :func:`shapes_listener`
gives :func:`shared.mongo.make_client` a command listener that appends one JSON line per
new shape to that file: the collection, the command, the filter's field names with their
operators (every value replaced), the sort keys. Off by default; meant for tests and for an
operator checking a deployment, not for production traffic.

A shape never holds a value: a filter's values may be a person's words or address
(QUALITY.md section 4). Equality is written ``$eq``, an operator by its name, and each part
of a field name that is not a plain identifier (letters, digits, ``_``) is written ``?``, so
an address or a phrase used as a field name does not reach the file either.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from typing import Any

from pymongo import monitoring

from shared.logs import get_logger

log = get_logger(__name__)

ENV = "HOTLINE_QUERY_SHAPES"

# Commands that read documents through a filter (writes find theirs the same way).
_FILTERED = {"find", "aggregate", "count", "distinct", "update", "delete", "findAndModify"}
_CLAUSES = {"$and", "$or", "$nor"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}|[0-9]{1,6}")
_OPERATOR = re.compile(r"\$[A-Za-z]{1,30}")


def field_name(path: str) -> str:
    """``path`` with every segment that is not an identifier (or an array index) as ``?``."""
    return ".".join(s if _NAME.fullmatch(s) else "?" for s in str(path).split("."))


def operator(name: str) -> str:
    """``name`` when it is an operator (``$in``, ``$match``), else ``?``."""
    return name if _OPERATOR.fullmatch(name) else "?"


def filter_shape(query: Any) -> dict[str, Any]:
    """The shape of a query filter: ``{field: [operators]}``, ``$and``/``$or``/``$nor`` as lists
    of shapes; no value of ``query`` is kept."""
    shape: dict[str, Any] = {}
    if not isinstance(query, Mapping):
        return shape
    for key, value in query.items():
        key = str(key)
        if key in _CLAUSES:
            clauses = value if isinstance(value, list) else []
            shape[key] = [filter_shape(c) for c in clauses]
        elif key.startswith("$"):  # $expr, $text, $where...: the operator alone
            shape[operator(key)] = ["?"]
        elif isinstance(value, Mapping) and value and all(str(k).startswith("$") for k in value):
            shape[field_name(key)] = sorted({operator(str(k)) for k in value})
        else:  # a literal (a subdocument included) is an equality
            shape[field_name(key)] = ["$eq"]
    return shape


def sort_shape(sort: Any) -> list[list[Any]]:
    """Sort keys and directions (1, -1; anything else, such as ``$meta``, as ``?``)."""
    if not isinstance(sort, Mapping):
        return []
    return [
        [field_name(k), v if isinstance(v, int) and not isinstance(v, bool) else "?"] for k, v in sort.items()
    ]


def command_shapes(name: str, command: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The query shapes of one command as sent to the server ([] for other commands)."""
    if name not in _FILTERED:
        return []
    collection = command.get(name)
    if not isinstance(collection, str):  # aggregate on a whole database
        return []
    base = {"collection": collection, "command": name}
    if name == "find":
        return [
            {**base, "filter": filter_shape(command.get("filter")), "sort": sort_shape(command.get("sort"))}
        ]
    if name == "findAndModify":
        return [
            {**base, "filter": filter_shape(command.get("query")), "sort": sort_shape(command.get("sort"))}
        ]
    if name in {"count", "distinct"}:
        return [{**base, "filter": filter_shape(command.get("query")), "sort": []}]
    if name == "aggregate":
        pipeline = [s for s in command.get("pipeline") or [] if isinstance(s, Mapping) and s]
        stages = [str(next(iter(s))) for s in pipeline]
        match = pipeline[0].get("$match") if stages[:1] == ["$match"] else None
        sort_at = 1 if match is not None else 0
        sort = pipeline[sort_at].get("$sort") if stages[sort_at : sort_at + 1] == ["$sort"] else None
        return [
            {
                **base,
                "filter": filter_shape(match),
                "sort": sort_shape(sort),
                "stages": [operator(s) for s in stages],
            }
        ]
    statements = command.get("updates" if name == "update" else "deletes") or []
    return [
        {**base, "filter": filter_shape(s.get("q")), "sort": []} for s in statements if isinstance(s, Mapping)
    ]


def origin() -> str:
    """Which program this is: ``store`` for ``python -m services.store``, else the main module."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    name = getattr(spec, "name", None) or os.path.basename(sys.argv[0] if sys.argv else "") or "?"
    parts = name.split(".")
    if len(parts) == 3 and parts[0] == "services" and parts[2] == "__main__":
        return parts[1]
    return name.removesuffix(".__main__")


class ShapeRecorder(monitoring.CommandListener):
    """Appends each query shape this process has not recorded yet to ``path``, one JSON line
    written with one ``write`` in append mode (processes sharing the file do not interleave).
    Nothing is written for a shape seen before, so the cost per command is building its shape."""

    def __init__(self, path: str, program: str) -> None:
        self.path = path
        self.program = program
        self._seen: set[str] = set()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        try:
            for shape in command_shapes(event.command_name, event.command):
                line = json.dumps({"origin": self.program, **shape}, sort_keys=True)
                if line not in self._seen:
                    self._seen.add(line)
                    self._append(line + "\n")
        except Exception as exc:  # diagnostics must never fail the query they watch
            log.warning("query_shape_not_recorded", error=type(exc).__name__)

    def _append(self, line: str) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def shapes_listener(environ: Mapping[str, str] | None = None) -> list[monitoring.CommandListener]:
    """The recorder when ``HOTLINE_QUERY_SHAPES`` names a file (in ``environ``, by default the
    process's environment), else nothing: the default."""
    path = (os.environ if environ is None else environ).get(ENV, "")
    return [ShapeRecorder(path, origin())] if path else []
