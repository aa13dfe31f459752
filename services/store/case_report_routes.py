"""Case report routes (docs/statistics.md, "Case reports"); the counting is in case_reports.py.

- ``GET /api/case-reports/{report}`` and ``GET /api/case-reports/{report}.csv``, ``report``
  one of ``assistance``, ``cases``, ``referrals``: scoped like ``/api/stats``: supervisors and
  admins only (others 403), to their lines and, when they belong to one, their organisation.
  ``year`` (default this year), ``publish=1`` (small cells suppressed), filters ``kind``,
  ``line``, ``organisation``.

The reports read the categorical parts of cases (kinds, statuses, dates, services' kinds,
dates and amounts, referrals' destinations and dates) and never show a note or an intake
answer.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from conversations.cases import CaseRepository
from services.store import case_reports
from services.store.api import ConsultantApi
from services.store.auth import User
from services.store.reports import Scope, scope_of
from shared.config import HotlineConfig
from shared.envelope import utcnow
from shared.http import Handler, problem

Doc = dict[str, Any]
MAX_CASES = 200_000  # read per report at most: years of a national hotline's cases


class CaseReportRoutes:
    def __init__(self, api: ConsultantApi) -> None:
        self.config = api.config
        self.cases = CaseRepository(api.repo.db, api.repo.vault, api.config.cases.free_text_fields)
        self.tz = ZoneInfo(api.s.stats_timezone)
        self.min_cell = api.s.stats_min_cell

    def add_routes(self, app: web.Application) -> None:
        for name in case_reports.REPORTS:
            app.router.add_get(f"/api/case-reports/{name}", self._handler(name, csv=False))
            app.router.add_get(f"/api/case-reports/{name}.csv", self._handler(name, csv=True))

    def _handler(self, name: str, *, csv: bool) -> Handler:
        async def handle(request: web.Request) -> web.Response:
            return await self.answer(request, name, csv)

        handle.__doc__ = f"Case report {name} ({'CSV' if csv else 'JSON'}): supervisors and admins"
        return handle

    async def report(self, user: User, name: str, params: Any) -> Doc | web.Response:
        """The report ``name`` for ``user``, or the problem answer."""
        scope = scope_of(user, self.config)
        if scope is None:
            return problem(403, "Case reports are for supervisors and admins")
        now = utcnow()
        orgs = [scope.organisation] if scope.organisation else list(self.config.organisations)
        try:
            q = case_reports.parse_case_query(
                params,
                now.astimezone(self.tz).date(),
                self.tz,
                kinds=self.config.cases.kinds,
                lines=scope.lines,
                organisations=orgs,
            )
        except case_reports.QueryError as exc:
            return problem(422, "Bad case report request", str(exc))
        if not q.publish:
            return self.count(name, await self.read(scope), q, now, orgs)
        if q.year >= now.astimezone(self.tz).year:
            return problem(422, "Not publishable", f"for publication: a year that is over ({q.year} is not)")
        if q.kinds or q.lines:
            return problem(422, "Not publishable", "for publication: per organisation only (no kind or line)")
        # Protected over every organisation together, then shown for the reader's ones.
        everyone = list(self.config.organisations)
        every_case = await self.read(Scope(list(self.config.lines), None))
        whole = self.count(name, every_case, replace(q, organisations=frozenset()), now, everyone)
        return case_reports.restricted(whole, q.organisations or frozenset(orgs), frozenset(everyone))

    def count(
        self, name: str, cases: list[Doc], q: case_reports.CaseQuery, now: datetime, orgs: list[str]
    ) -> Doc:
        if name == "assistance":
            offered = {o: list(self.config.cases.assistance_of(o)) for o in orgs}
            return case_reports.assistance(cases, q, self.min_cell, offered)
        if name == "cases":
            return case_reports.case_counts(cases, q, now, self.min_cell)
        return case_reports.referral_counts(cases, q, self.min_cell)

    async def read(self, scope: Scope) -> list[Doc]:
        return await cases_in(self.cases, scope)

    async def answer(self, request: web.Request, name: str, csv: bool) -> web.Response:
        result = await self.report(request["user"], name, request.query)
        if isinstance(result, web.Response):
            return result
        if not csv:
            return web.json_response(result)
        filename = f"case-report-{name}-{result['year']}{'-published' if result['published'] else ''}.csv"
        return web.Response(
            text=case_reports.to_csv(result),
            content_type="text/csv",
            charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )


# --- the section of the reports page and the yearly report ---------------------------------------


async def cases_in(cases: CaseRepository, scope: Scope) -> list[Doc]:
    """The cases of ``scope``: its lines, and its organisation if it has one."""
    if not scope.lines:
        return []
    query: Doc = {"line": {"$in": scope.lines}}
    if scope.organisation is not None:
        query = {"organisation": scope.organisation, **query}
    return await cases.listed(query, MAX_CASES)


async def yearly_assistance(
    db: Any, config: HotlineConfig, scope: Scope, year: int, publish: bool, tz: ZoneInfo, min_cell: int
) -> Doc | None:
    """The assistance table of ``year`` for the reports page and the yearly report, or None
    when no assistance kinds are configured."""
    if not config.cases.assistance_kinds:
        return None
    orgs = [scope.organisation] if scope.organisation else list(config.organisations)
    if not publish:
        cases = await cases_in(CaseRepository(db), scope)
        offered = {o: list(config.cases.assistance_of(o)) for o in orgs}
        q = case_reports.CaseQuery(year, tz, publish, lines=frozenset(scope.lines))
        return case_reports.assistance(cases, q, min_cell, offered)
    # As the route publishes it: every organisation protected together, then the reader's.
    everyone = list(config.organisations)
    every_case = await cases_in(CaseRepository(db), Scope(list(config.lines), None))
    offered = {o: list(config.cases.assistance_of(o)) for o in everyone}
    whole = case_reports.assistance(every_case, case_reports.CaseQuery(year, tz, True), min_cell, offered)
    return case_reports.restricted(whole, frozenset(orgs), frozenset(everyone))
