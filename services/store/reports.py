"""Statistics routes, phone consultations and the reports the hotlines publish.

Routes (registered by :func:`register`, called from the composition root):

- ``GET /api/stats``, ``GET /api/stats.csv`` and ``GET /api/stats.xlsx``: counts by any
  dimension (see :mod:`services.store.stats`); supervisors and admins only, scoped to their
  lines and, when they belong to one, their organisation. ``publish=1`` suppresses small
  cells; the XLSX takes ``lang`` for its labels.
- ``POST /api/consultations``: register a phone consultation with the case form: a
  closed thread with channel ``phone``, so statistics cover every channel.
- ``GET /reports``: the reports page (charts and tables for a year, drawn on the server
  as SVG: no script, the same drawing in the page, the yearly report and its PDF), in
  ``lang=ru|be|en`` (default English) like the yearly report.
- ``GET /reports/yearly``: the yearly report for stakeholders: publication figures only.

The PDF is printed by headless Chromium from the same HTML, outside the request path::

    python -m services.store.reports --year 2026 [--line 113] --out report.pdf

(reads ``STORE_MONGO_URL``/``STORE_MONGO_DATABASE``/``STORE_CONFIG_PATH``; ``--out x.html``
writes the HTML instead).

Statistics read only the ``facts`` (and the pseudonymous person) of consultations, never
message text, streaming one projected cursor per request (:meth:`StatsReader.tally`).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from html import escape
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from conversations.identity import phone_thread_key
from conversations.model import EventName, new_phone_consultation
from conversations.repository import Doc, Repository
from services.store import case_reports, charts, publication, spreadsheet, stats
from services.store.api import thread_view
from services.store.auth import COOKIE, SUPERVISORS, Sessions, User
from services.store.report_text import (
    CHANNELS,
    LANGUAGE_NAMES,
    LANGUAGES,
    MONTHS,
    SUPPRESSED,
    language,
    pick,
    text,
)
from services.store.settings import StoreSettings
from shared.config import HotlineConfig, load_config
from shared.envelope import utcnow
from shared.http import problem
from shared.logs import get_logger
from shared.settings import DEFAULT_CONFIG_PATH

log = get_logger(__name__)
STORE_FIELDS = StoreSettings.model_fields

STATIC = Path(__file__).parent / "static"


@dataclass(frozen=True)
class Scope:
    """Which threads a person's statistics cover: their lines, and their organisation if
    they belong to one (None: every organisation of those lines)."""

    lines: list[str]
    organisation: str | None


def scope_of(user: User, config: HotlineConfig) -> Scope | None:
    """Supervisors and admins see statistics of their lines and organisation (a national
    administrator of every organisation); consultants none (None)."""
    if user.role not in SUPERVISORS:
        return None
    return Scope([ln for ln in user.lines if ln in config.lines], user.organisation)


def form_fields(config: HotlineConfig) -> dict[str, Any]:
    """The configured case-form fields (empty when the configuration lists none)."""
    fields = getattr(config.case_form, "fields", None)
    return dict(fields) if fields else {}


class StatsReader:
    """Counts closed consultations' facts from the database."""

    def __init__(
        self, repo: Repository, all_lines: Sequence[str] = (), questions: Iterable[str] = ()
    ) -> None:
        """``all_lines`` and ``questions`` (the case form's): what a year's catalogue of
        publishable tables spans (:mod:`services.store.publication`)."""
        self.consultations = repo.consultations
        self.db = repo.db  # the yearly report's table of assistance reads cases too
        self.all_lines = list(all_lines)
        self.questions = list(questions)
        # The protection of each year's catalogue, kept while its counts stay the same.
        self._protected: dict[tuple[int, int], tuple[int, frozenset[publication.Key]]] = {}
        self._protecting = asyncio.Lock()

    async def tally(self, queries: list[stats.Query], scope: Scope) -> list[stats.Tally]:
        """One pass over the consultations of every query's window: memory holds the counts
        and the people, not the consultations (the cursor is read in batches)."""
        tallies = [stats.Tally(q) for q in queries]
        if not queries or not scope.lines:
            return tallies
        where: Doc = {
            "facts.at": {"$gte": min(q.start for q in queries), "$lt": max(q.end for q in queries)},
            "facts.line": {"$in": scope.lines},
        }
        if scope.organisation is not None:
            where["facts.organisation"] = scope.organisation
        projection = {"facts": 1, "client_id": 1, "_id": 0}
        async for doc in self.consultations.find(where, projection, batch_size=1000):
            facts = doc.get("facts")
            if isinstance(facts, dict):
                for t in tallies:
                    t.add(facts, doc.get("client_id"))
        return tallies

    async def table(self, query: stats.Query, scope: Scope, min_cell: int, today: date) -> Doc:
        """The table a query asks for: exact, or with ``publish`` the published form of it
        (raises :class:`publication.NotPublishable` for one outside the catalogue)."""
        request = self.publication_request(query, scope, today) if query.publish else None
        queries = [query, query.previous_year()] if query.compare else [query]
        tallies = await self.tally(queries, scope)
        exact = stats.build_table(tallies[0], tallies[1] if query.compare else None)
        if request is None:
            return exact
        return await self.published(exact, request, query, min_cell)

    def publication_request(self, query: stats.Query, scope: Scope, today: date) -> publication.Request:
        publication.whole_year(query, today)
        return publication.request_of(query, scope.lines, scope.organisation, self.all_lines)

    async def published(
        self, exact: Doc, request: publication.Request, query: stats.Query, min_cell: int
    ) -> Doc:
        now = await self.catalogue(query.first.year, query.tz, min_cell)
        before = await self.catalogue(query.first.year - 1, query.tz, min_cell) if query.compare else None
        return publication.publish_table(exact, request, now, before, min_cell)

    async def catalogue(self, year: int, tz: ZoneInfo, min_cell: int) -> publication.Catalogue:
        """Every publishable cell of a year, of every line and organisation (a publisher sees
        a part, but the parts must be protected together), protected for publication."""
        start = datetime(year, 1, 1, tzinfo=tz).astimezone(UTC)
        end = datetime(year + 1, 1, 1, tzinfo=tz).astimezone(UTC)
        cat = publication.Catalogue(year, tz, self.questions)
        where: Doc = {"facts.at": {"$gte": start, "$lt": end}}
        if self.all_lines:  # a line no longer configured is nobody's to publish
            where["facts.line"] = {"$in": self.all_lines}
        async for doc in self.consultations.find(
            where, {"facts": 1, "client_id": 1, "_id": 0}, batch_size=1000
        ):
            facts = doc.get("facts")
            if isinstance(facts, dict):
                cat.add(facts, doc.get("client_id"))
        digest = hash(frozenset(cat.counts.items()))
        async with self._protecting:  # one protection at a time: it is CPU work
            cached = self._protected.get((year, min_cell))
            if cached is not None and cached[0] == digest:
                cat.use(cached[1])
            else:
                hidden = await asyncio.to_thread(cat.protect, min_cell)
                self._protected[(year, min_cell)] = (digest, hidden)
        return cat


# --- labels ----------------------------------------------------------------------------------


class Labels:
    """Names of dimensions and values for people, in one language: the program's words from
    :mod:`services.store.report_text`, the configuration's names in that language (falls back
    to the id)."""

    def __init__(self, config: HotlineConfig, lang: str = "en") -> None:
        self.config = config
        self.lang = lang
        self.fields = form_fields(config)

    def text(self, key: str, **values: Any) -> str:
        return text(self.lang, key, **values)

    def pick(self, names: dict[str, str] | None, fallback: str) -> str:
        return pick(names, self.lang, fallback)

    def dimension(self, name: str) -> str:
        if name in {"channel", "line", "organisation", "period"}:
            return self.text(name.capitalize())
        f = self.fields.get(name)
        return self.pick(getattr(f, "label", None), name.replace("_", " ").capitalize())

    def value(self, name: str, value: str | None) -> str:
        if value is None:
            return self.text("not answered")
        if name == "channel":
            return CHANNELS[self.lang].get(value, value)
        if name == "line":
            line = self.config.lines.get(value)
            return line.name if line else value
        if name == "organisation":
            org = self.config.organisations.get(value)
            return org.name if org else value
        f = self.fields.get(name)
        source = getattr(f, "options_from", None)
        if name == "region" or source == "regions":
            return self.pick(self.config.regions.get(value), value)
        if name in {"topic", "topics"} or source == "topics":
            for line in self.config.lines.values():
                if value in line.topics:
                    return self.pick(line.topics[value].title, value)
        options = getattr(f, "options", None) or {}
        return self.pick(options.get(value), value.replace("_", " "))

    def reason(self, reason: str) -> str:
        return self.pick(self.config.close_reasons.get(reason), reason)

    def suppression_note(self, min_cell: int) -> str:
        if self.lang == "en":
            return stats.suppression_note(min_cell)
        return SUPPRESSED[self.lang].format(n=min_cell, m=min_cell - 1)


# --- the report ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    title: str
    by: str
    chart: str  # bar | pie
    top: int | None = None
    lines: tuple[str, ...] | None = None  # shown only when one of these lines is in scope


SECTIONS = [
    Section("Requests by channel", "channel", "pie"),
    Section("Women and men consulted", "gender", "bar"),
    Section("Age groups", "age_group", "bar"),
    Section("Who contacted us", "client_role", "bar"),
    Section("Topics", "topics", "bar"),
    Section("Top destination countries", "destination_country", "bar", top=10, lines=("113",)),
    Section("Regions", "region", "bar"),
    Section("Services given", "services", "bar"),
    Section("Referrals made", "referrals", "bar"),
    Section("Kinds of abuse", "abuse_kinds", "bar", lines=("dv",)),
    Section("Perpetrator's relation", "perpetrator_relation", "bar", lines=("dv",)),
    Section("Perpetrator's gender", "perpetrator_gender", "bar", lines=("dv",)),
    Section("Children affected", "children_affected", "bar", lines=("dv",)),
    Section("Police measures", "police_measures", "bar", lines=("dv",)),
    Section("Requests by line", "line", "bar"),
]


@dataclass(frozen=True)
class ReportOptions:
    year: int
    lines: list[str]  # the lines reported on (already within the reader's scope)
    organisation: str | None
    publish: bool
    lang: str = "en"


async def build_report(
    reader: StatsReader, config: HotlineConfig, opts: ReportOptions, tz: ZoneInfo, min_cell: int, today: date
) -> Doc:
    """The figures of a year's report: totals, a table per section and months by channel,
    each compared with the year before."""
    first = date(opts.year, 1, 1)
    last = min(date(opts.year, 12, 31), today) if opts.year == today.year else date(opts.year, 12, 31)
    fields = form_fields(config)
    sections = [
        s
        for s in SECTIONS
        if (not fields or s.by in fields or s.by in stats.THREAD_DIMENSIONS)
        and (s.lines is None or any(ln in opts.lines for ln in s.lines))
        and not (s.by == "line" and len(opts.lines) < 2)
    ]

    def query(by: tuple[str, ...], period: str | None) -> stats.Query:
        return stats.Query(first, last, tz, by, period, {}, True, opts.publish)

    queries = [query((), None), query(("channel",), "month")] + [query((s.by,), None) for s in sections]
    scope = Scope(opts.lines, opts.organisation)
    # Refused before anything is read when the year cannot be published (NotPublishable).
    requests = [reader.publication_request(q, scope, today) for q in queries] if opts.publish else []
    all_queries = [q for pair in ((q, q.previous_year()) for q in queries) for q in pair]
    tallies = await reader.tally(all_queries, scope)
    tables = [stats.build_table(tallies[2 * i], tallies[2 * i + 1]) for i in range(len(queries))]
    if opts.publish:
        now = await reader.catalogue(opts.year, tz, min_cell)
        before = await reader.catalogue(opts.year - 1, tz, min_cell)
        tables = [
            publication.publish_table(t, r, now, before, min_cell)
            for t, r in zip(tables, requests, strict=True)
        ]
    # Imported here: case_report_routes takes the reader's scope from this module.
    from services.store.case_report_routes import yearly_assistance

    assistance = await yearly_assistance(reader.db, config, scope, opts.year, opts.publish, tz, min_cell)
    return {
        "assistance": assistance,
        "options": opts,
        "from": first,
        "to": last,
        "total": tables[0],
        "months": tables[1],
        "sections": list(zip(sections, tables[2:], strict=True)),
        "min_cell": min_cell,
        "last_year_over": today.year - 1,  # the newest year that can be published
    }


def _num(v: Any, hidden: str) -> str:
    if v is None:
        return hidden
    return f"{v:+.1f} %" if isinstance(v, float) else str(v)


def render_report(report: Doc, config: HotlineConfig, *, page: bool, css: str | None = None) -> str:
    """The report as one HTML document. ``page``: the interactive reports page (with its
    filter form and the stylesheet linked); else the yearly report, with ``css`` inlined so
    the file stands alone (PDF, mail attachment)."""
    opts: ReportOptions = report["options"]
    labels = Labels(config, opts.lang)
    min_cell = report["min_cell"]
    hidden = "x" if opts.publish else "-"  # x: suppressed for publication, as statistical offices mark it
    t = labels.text
    lines_text = ", ".join(config.lines[ln].name for ln in opts.lines) or t("no line")
    org_text = config.organisations[opts.organisation].name if opts.organisation else t("all organisations")
    title = t("title", year=opts.year)
    out: list[str] = [
        f'<!doctype html><html lang="{opts.lang}"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title>",
    ]
    if css is not None:
        out.append(f"<style>{css}</style>")
    else:
        out.append('<link rel="stylesheet" href="/static/reports.css">')
    out.append('</head><body class="report">')
    out.append(f"<header><h1>{escape(title)}</h1>")
    scope = t(
        "scope",
        lines=lines_text,
        org=org_text,
        first=report["from"].isoformat(),
        last=report["to"].isoformat(),
        previous=opts.year - 1,
    )
    out.append(f'<p class="scope">{escape(scope)}</p>')
    if page:
        out.append(_filter_form(config, opts, report["last_year_over"]))
    if opts.publish:
        out.append(f'<p class="note" id="suppression">{escape(labels.suppression_note(min_cell))}</p>')
    else:
        out.append(f'<p class="note" id="suppression">{escape(t("internal"))}</p>')
    out.append("</header>")

    total = report["total"]["total"]
    out.append(f'<section id="total"><h2>{escape(t("All consultations"))}</h2><table class="figures">')
    out.append(f"<tr><th>{opts.year}</th><th>{opts.year - 1}</th><th>{escape(t('Change'))}</th></tr>")
    out.append(
        f"<tr><td>{_num(total['count'], hidden)}</td><td>{_num(total.get('previous'), hidden)}</td>"
        f"<td>{_num(total.get('change'), '-')}</td></tr></table>"
    )
    out.append(
        f'<table class="figures" id="people"><tr><th>{escape(t("people"))}</th>'
        f"<th>{escape(t('unknown people'))}</th></tr>"
        f"<tr><td>{_num(total.get('people'), hidden)}</td>"
        f"<td>{_num(total.get('without_known_person'), hidden)}</td></tr></table></section>"
    )
    out.append(_no_consultation_section(report["total"]["no_consultation"], labels, hidden))

    months = report["months"]
    keys = [f"{opts.year}-{m:02d}" for m in range(1, 13)]
    series: dict[str | None, list[int | None]] = {}
    for row in months["rows"]:
        if row["period"] in keys:
            series.setdefault(row["channel"], [0] * 12)[keys.index(row["period"])] = row["count"]
    previous = [0] * 12
    for p in months["periods"]:
        if p["period"] in keys:
            previous[keys.index(p["period"])] = p.get("previous") or 0
    lines_data: list[tuple[str, list[int | None]]] = [
        (labels.value("channel", ch), vals) for ch, vals in sorted(series.items(), key=lambda kv: kv[0] or "")
    ]
    lines_data.append((t("all, {year}", year=opts.year - 1), list(previous)))
    out.append(f'<section id="months"><h2>{escape(t("months"))}</h2>')
    out.append(charts.line_chart(t("months"), MONTHS[opts.lang], lines_data))
    out.append("</section>")

    for section, table in report["sections"]:
        rows = table["rows"]
        rows = sorted(rows, key=lambda r: (r["count"] is None, -(r["count"] or 0)))
        if section.top is not None:
            rows = rows[: section.top]
        items = [(labels.value(section.by, r[section.by]), r["count"]) for r in rows]
        draw = charts.pie_chart if section.chart == "pie" else charts.bar_chart
        heading = t(section.title)
        out.append(f'<section id="{section.by}"><h2>{escape(heading)}</h2>')
        out.append(draw(heading, items, hidden))
        out.append(
            f'<table class="figures"><tr><th>{escape(labels.dimension(section.by))}</th>'
            f"<th>{opts.year}</th><th>{escape(t('Share'))}</th><th>{opts.year - 1}</th>"
            f"<th>{escape(t('Change'))}</th></tr>"
        )
        for r, (label, _) in zip(rows, items, strict=True):
            share = "-" if r["share"] is None else f"{r['share']:.1f} %"
            out.append(
                f"<tr><td>{escape(label)}</td><td>{_num(r['count'], hidden)}</td><td>{share}</td>"
                f"<td>{_num(r.get('previous'), hidden)}</td><td>{_num(r.get('change'), '-')}</td></tr>"
            )
        out.append("</table></section>")
    if report.get("assistance"):
        out.append(case_reports.assistance_section(report["assistance"], config, labels, hidden))
    out.append(f"<footer><p>{escape(t('footer'))}</p></footer>")
    out.append("</body></html>")
    return "".join(out)


def _no_consultation_section(other: Doc, labels: Labels, hidden: str) -> str:
    """Contacts closed without a consultation, by reason: apart from every figure above."""
    t = labels.text
    out = [
        f'<section id="no-consultation"><h2>{escape(t("Contacts without a consultation"))}</h2>',
        f"<p>{escape(t('no consultation note'))}</p>",
        f'<table class="figures"><tr><th>{escape(t("Reason"))}</th><th>{escape(t("Contacts"))}</th></tr>',
    ]
    for row in other["rows"]:
        label = labels.reason(row["reason"])
        out.append(f"<tr><td>{escape(label)}</td><td>{_num(row['count'], hidden)}</td></tr>")
    out.append(
        f"<tr><th>{escape(t('All'))}</th><th>{_num(other['count'], hidden)}</th></tr></table></section>"
    )
    return "".join(out)


def _filter_form(config: HotlineConfig, opts: ReportOptions, last_year_over: int) -> str:
    def t(key: str) -> str:
        return escape(text(opts.lang, key))

    line_options = "".join(
        f'<option value="{escape(ln)}"{" selected" if opts.lines == [ln] else ""}>'
        f"{escape(config.lines[ln].name)}</option>"
        for ln in config.lines
    )
    lang_options = "".join(
        f'<option value="{code}"{" selected" if code == opts.lang else ""}>{LANGUAGE_NAMES[code]}</option>'
        for code in LANGUAGES
    )
    checked = " checked" if opts.publish else ""
    line = "&amp;line=" + escape(opts.lines[0]) if len(opts.lines) == 1 else ""
    export = (
        f"?from={opts.year}-01-01&amp;to={opts.year}-12-31&amp;by=channel&amp;period=month&amp;compare=1"
        f"{'&amp;publish=1' if opts.publish else ''}"
    )
    return (
        '<form class="filters" method="get" action="/reports">'
        f'<label>{t("Year")} <input name="year" type="number" min="2000" max="2100" '
        f'value="{opts.year}"></label>'
        f'<label>{t("Line")} <select name="line"><option value="">{t("all my lines")}</option>'
        f"{line_options}</select></label>"
        f'<label>{t("Language")} <select name="lang">{lang_options}</select></label>'
        f'<label><input type="checkbox" name="publish" value="1"{checked}> {t("for publication")}</label>'
        f'<button type="submit">{t("Show")}</button>'
        # A year is published once it is over: the yearly report of this year is last year's.
        f'<a href="/reports/yearly?year={min(opts.year, last_year_over)}{line}&amp;lang={opts.lang}">'
        f"{t('Yearly report')}</a>"
        f'<a href="/api/stats.csv{export}">{t("CSV by month")}</a>'
        f'<a href="/api/stats.xlsx{export}&amp;lang={opts.lang}">{t("XLSX by month")}</a>'
        "</form>"
    )


# --- HTTP --------------------------------------------------------------------------------------


class Reports:
    def __init__(
        self,
        config: HotlineConfig,
        repo: Repository,
        sessions: Sessions,
        tz: ZoneInfo,
        min_cell: int,
    ) -> None:
        self.config = config
        self.repo = repo
        self.sessions = sessions
        self.reader = StatsReader(repo, list(config.lines), form_fields(config))
        self.tz = tz
        self.min_cell = min_cell

    def _today(self) -> date:
        return utcnow().astimezone(self.tz).date()

    def _scope(self, user: User) -> Scope | web.Response:
        scope = scope_of(user, self.config)
        if scope is None:
            return problem(403, "Statistics are for supervisors and admins")
        return scope

    async def _stats(
        self, request: web.Request, params: Mapping[str, str] | None = None
    ) -> Doc | web.Response:
        scope = self._scope(request["user"])
        if isinstance(scope, web.Response):
            return scope
        fields = form_fields(self.config)
        try:
            query = stats.parse_query(
                request.query if params is None else params, self._today(), self.tz, fields or None
            )
        except stats.QueryError as exc:
            return problem(422, "Bad statistics request", str(exc))
        try:
            return await self.reader.table(query, scope, self.min_cell, self._today())
        except publication.NotPublishable as exc:
            return problem(422, "Not publishable", str(exc))

    async def stats_json(self, request: web.Request) -> web.Response:
        result = await self._stats(request)
        if isinstance(result, web.Response):
            return result
        return web.json_response(result)

    async def stats_csv(self, request: web.Request) -> web.Response:
        result = await self._stats(request)
        if isinstance(result, web.Response):
            return result
        name = (
            f"hotline-stats-{result['from']}-{result['to']}{'-published' if result['published'] else ''}.csv"
        )
        return web.Response(
            text=stats.to_csv(result),
            content_type="text/csv",
            charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    async def stats_xlsx(self, request: web.Request) -> web.Response:
        """The table of ``/api/stats.csv`` as an XLSX workbook, labelled in ``lang``."""
        lang = language(request.query.get("lang"))
        if lang is None:
            return problem(422, "Bad statistics request", "lang: ru, be or en")
        query = {k: v for k, v in request.query.items() if k != "lang"}
        result = await self._stats(request, query)
        if isinstance(result, web.Response):
            return result
        body = await asyncio.to_thread(spreadsheet.to_xlsx, result, Labels(self.config, lang))
        name = (
            f"hotline-stats-{result['from']}-{result['to']}{'-published' if result['published'] else ''}.xlsx"
        )
        return web.Response(
            body=body,
            content_type=spreadsheet.CONTENT_TYPE,
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    async def consultation(self, request: web.Request) -> web.Response:
        """Register a consultation that happened outside the gateway (a phone call)."""
        user: User = request["user"]
        key = request.headers.get("Idempotency-Key", "")
        if not 8 <= len(key) <= 100:
            return problem(400, "Idempotency-Key header of 8-100 characters is required")
        existing = await self.repo.thread_by_key(phone_thread_key(user.login, key))
        if existing is not None:  # a retried request: registered once
            return web.json_response(_public(existing), status=200)
        if request.content_type != "application/json":
            return problem(415, "send application/json")
        try:
            body = await request.json()
        except ValueError:
            return problem(400, "body is not JSON")
        if not isinstance(body, dict):
            return problem(400, "body must be a JSON object")
        line = body.get("line")
        if not isinstance(line, str) or line not in self.config.lines or line not in user.lines:
            return problem(422, "line must be one of your lines")
        at = _when(body.get("at"), utcnow())
        if at is None:
            return problem(422, "at must be an ISO date-time with time zone, not in the future")
        case = body.get("case")
        if not isinstance(case, dict):
            return problem(422, "case is required", "send the case form as an object")
        kept, missing, invalid = check_case(self.config, line, case)
        if missing or invalid:
            detail = "; ".join(
                p
                for p in (
                    "missing: " + ", ".join(missing) if missing else "",
                    "invalid: " + ", ".join(invalid),
                )
                if p and not p.endswith(": ")
            )
            return problem(422, "Case form incomplete", detail, missing=missing, invalid=invalid)
        org = user.organisation  # None for a national administrator only
        visible = self.config.queues_visible_to(org, [line])
        queue = self.config.lines[line].default_queue
        # A consultant's call belongs to their organisation: its own queue of the line, never a
        # queue shared with another NGO, whose consultants must not read it.
        own = self.config.own_queue(org, line, self.config.queues[queue].skill) if org else None
        if own is not None:
            queue = own
        elif queue not in visible and visible:
            queue = visible[0]
        thread: Doc = new_phone_consultation(
            user.login,
            key,
            line=line,
            queue=queue,
            organisations=self.config.queues[queue].organisations,
            case=kept,
            at=at,
            now=utcnow(),
        )
        thread["facts"] = stats.facts_for(self.config, thread, user.organisation, kept)
        thread, created = await self.repo.register_consultation(thread)
        if not created:
            return web.json_response(_public(thread), status=200)
        await self.repo.record_event(
            thread["_id"], EventName.CONSULTATION_REGISTERED, user.login, channel="phone"
        )
        log.info("consultation_registered", thread_id=thread["_id"], consultant=user.login)
        return web.json_response(_public(thread), status=201)

    # --- pages ---------------------------------------------------------------------------

    async def _page_user(self, request: web.Request) -> User | web.Response:
        resolved = await self.sessions.resolve(request.cookies.get(COOKIE))
        if resolved is None:
            return web.Response(
                status=401,
                content_type="text/html",
                text='<!doctype html><title>Log in</title><p>Log in at the <a href="/">console</a> first.',
            )
        return resolved[0]

    async def _report(
        self, request: web.Request, publish: bool | None
    ) -> tuple[Doc, ReportOptions] | web.Response:
        user = await self._page_user(request)
        if isinstance(user, web.Response):
            return user
        scope = self._scope(user)
        if isinstance(scope, web.Response):
            return scope
        today = self._today()
        # The yearly report publishes a year that is over: by default, the last one.
        default_year = today.year - 1 if publish else today.year
        try:
            year = int(request.query.get("year") or default_year)
        except ValueError:
            return problem(422, "year must be a number")
        if not 2000 <= year <= today.year:
            return problem(422, f"year: 2000 to {today.year}")
        line = request.query.get("line") or None
        if line is not None and line not in scope.lines:
            return problem(404, "no such line")
        lang = language(request.query.get("lang"))
        if lang is None:
            return problem(422, "lang: ru, be or en")
        opts = ReportOptions(
            year,
            [line] if line else scope.lines,
            scope.organisation,
            publish if publish is not None else request.query.get("publish") == "1",
            lang,
        )
        try:
            report = await build_report(self.reader, self.config, opts, self.tz, self.min_cell, today)
        except publication.NotPublishable as exc:
            return problem(422, "Not publishable", str(exc))
        return report, opts

    async def page(self, request: web.Request) -> web.Response:
        got = await self._report(request, None)
        if isinstance(got, web.Response):
            return got
        return web.Response(text=render_report(got[0], self.config, page=True), content_type="text/html")

    async def yearly(self, request: web.Request) -> web.Response:
        """The yearly report for stakeholders: always with small cells suppressed."""
        got = await self._report(request, True)
        if isinstance(got, web.Response):
            return got
        html = render_report(got[0], self.config, page=False)
        resp = web.Response(text=html, content_type="text/html")
        resp.headers["X-Report-Year"] = str(got[1].year)
        return resp


def _public(thread: Doc) -> Doc:
    return thread_view(thread)


EARLIEST = datetime.combine(stats.FIRST_DATE, time(), UTC)


def _when(raw: Any, now: datetime) -> datetime | None:
    """A consultation's time: given (aware, not in the future), or now."""
    if raw is None:
        return now
    if not isinstance(raw, str):
        return None
    try:
        at = datetime.fromisoformat(raw)
        # Within the range statistics accept (stats.py); its UTC form must exist too, which
        # 0001-01-01 east of Greenwich does not (an OverflowError the driver would raise).
        if at.tzinfo is None or not EARLIEST <= at.astimezone(UTC) <= now + timedelta(minutes=5):
            return None
    except (ValueError, OverflowError):
        return None
    return at


def check_case(config: HotlineConfig, line: str, case: Doc) -> tuple[Doc, list[str], list[str]]:
    """(answers kept, missing fields, invalid fields), by the configuration's own check when
    it has a questionnaire, else only the required fields."""
    checker = getattr(config, "check_case", None)
    if checker is not None:
        kept, missing, invalid = checker(line, case)
        return dict(kept), list(missing), list(invalid)
    missing = [f for f in config.case_form.required if case.get(f) in (None, "", [])]
    return case, missing, []


def register(
    app: web.Application, config: HotlineConfig, repo: Repository, sessions: Sessions, tz: str, min_cell: int
) -> None:
    """Add the statistics, consultation and report routes to the store's application."""
    reports = Reports(config, repo, sessions, ZoneInfo(tz), min_cell)
    r = app.router
    r.add_get("/api/stats", reports.stats_json)
    r.add_get("/api/stats.csv", reports.stats_csv)
    r.add_get("/api/stats.xlsx", reports.stats_xlsx)
    r.add_post("/api/consultations", reports.consultation)
    r.add_get("/reports", reports.page)
    r.add_get("/reports/yearly", reports.yearly)


# --- command: the yearly report as HTML or PDF ---------------------------------------------------


class ReportSettings(BaseSettings):
    """What the report command reads, from the store's own variables (``STORE_MONGO_URL`` and
    so on): the database, the configuration and the statistics' time zone and threshold; not
    the broker's URL nor the console's secrets, which a report does not need."""

    model_config = SettingsConfigDict(env_prefix="STORE_", extra="ignore")
    mongo_url: SecretStr = Field(description="MongoDB URL")
    mongo_database: str = Field(default="hotline", description="MongoDB database name")
    config_path: Path = Field(default=DEFAULT_CONFIG_PATH, description="Hotline configuration (YAML)")
    stats_timezone: str = Field(default=STORE_FIELDS["stats_timezone"].default, description="as the store's")
    stats_min_cell: int = Field(
        default=STORE_FIELDS["stats_min_cell"].default, ge=1, description="as the store's"
    )


async def _write_report(args: argparse.Namespace) -> str:
    from shared.mongo import make_client

    settings = ReportSettings()  # from the environment
    config = load_config(settings.config_path)
    tz = ZoneInfo(settings.stats_timezone)
    client = make_client(settings.mongo_url.get_secret_value())
    try:
        reader = StatsReader(
            Repository(client[settings.mongo_database]), list(config.lines), form_fields(config)
        )
        lines = [args.line] if args.line else list(config.lines)
        opts = ReportOptions(args.year, lines, args.organisation, True, args.lang)
        today = utcnow().astimezone(tz).date()
        report = await build_report(reader, config, opts, tz, settings.stats_min_cell, today)
    finally:
        await client.close()
    css = (STATIC / "reports.css").read_text(encoding="utf-8")
    html = render_report(report, config, page=False, css=css)
    out = Path(args.out)
    if out.suffix.lower() == ".pdf":
        await print_pdf(html, out, args.chromium)
    else:
        await asyncio.to_thread(out.write_text, html, encoding="utf-8")
    return str(out)


async def print_pdf(html: str, out: Path, chromium: str | None = None) -> None:
    """Print ``html`` to an A4 PDF with headless Chromium (the browser the tests use)."""
    from playwright.async_api import async_playwright

    executable = chromium or shutil.which("chromium") or "/usr/bin/chromium"
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
        )
        try:
            page = await browser.new_page()
            await page.set_content(html, wait_until="load")
            await page.pdf(
                path=str(out), format="A4", print_background=True, margin={"top": "15mm", "bottom": "15mm"}
            )
        finally:
            await browser.close()


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.store.reports", description=__doc__)
    parser.add_argument("--year", type=int, required=True)
    parser.add_argument("--line", help="one line id; default: every line")
    parser.add_argument("--organisation", help="one organisation id; default: all")
    parser.add_argument("--out", required=True, help="report.pdf or report.html")
    parser.add_argument("--lang", choices=LANGUAGES, default="en", help="ru, be or en; default en")
    parser.add_argument("--chromium", help="Chromium executable; default: chromium on PATH")
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        print(asyncio.run(_write_report(args)), file=sys.stdout)
    except publication.NotPublishable as exc:
        parser.exit(2, f"{parser.prog}: {exc}\n")


if __name__ == "__main__":
    main()
