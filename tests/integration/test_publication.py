"""Figures for publication, tried as an attacker on the running store (issue: figures fit to
publish). For one year that is over, the attacker downloads every table the publication
switch gives, for each line and for both lines together, and the yearly report; then, for
each hidden cell, solves the two linear programmes (HiGHS, through scipy) for the smallest and
the largest value it can take given every number published.
"""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import date
from zoneinfo import ZoneInfo

from conversations.repository import Repository
from services.store.reports import ReportOptions, StatsReader, build_report, form_fields
from shared.config import load_config
from shared.mongo import make_client
from shared.settings import DEFAULT_CONFIG_PATH
from tests.attacker import interval
from tests.conftest import Gateway
from tests.integration.helpers import add_account, logged_in
from tests.integration.test_stats_api import AGES, COUNTRIES, GENDERS, YEAR, generated_threads, insert

MINSK = ZoneInfo("Europe/Minsk")
THRESHOLD = 5
CHANNELS = ["email", "chat", "telegram"]
TABLES = [  # every table the catalogue holds on these dimensions
    "",
    "gender",
    "age_group",
    "channel",
    "destination_country",
    "gender,age_group",
    "destination_country,gender",
]
# A published cell: (scope, {dimension: value}), with its count (None: hidden).
Cell = tuple[str, tuple[tuple[str, str | None], ...]]


def bounds(published: dict[Cell, int | None], atoms: list[dict[str, str]]) -> dict[Cell, tuple[float, float]]:
    """(min, max) of each hidden cell over non-negative atoms (one per combination of
    line, gender, age group, country and channel), every shown cell the sum of the
    atoms it counts."""

    def covers(cell: Cell, atom: dict[str, str]) -> bool:
        scope, dims = cell
        return scope in ("all", atom["line"]) and all(atom[d] == v for d, v in dims)

    shown = [(c, n) for c, n in published.items() if n is not None]
    a_eq = [[1.0 if covers(c, a) else 0.0 for a in atoms] for c, _ in shown]
    b_eq = [float(n) for _, n in shown]
    return {
        cell: interval([1.0 if covers(cell, a) else 0.0 for a in atoms], a_eq, b_eq)
        for cell in [c for c, n in published.items() if n is None]
    }


async def test_no_hidden_cell_can_be_worked_out_from_every_download_of_a_year(gateway: Gateway) -> None:
    gateway.seed_demo_accounts()
    docs = generated_threads(51, YEAR, 260, over_60=3)
    for d in generated_threads(52, YEAR, 140, over_60=1):  # the same form, taken on the DV line
        d.update(line="dv", queue="gp-dv", organisations=["gp"])
        d["facts"].update(line="dv", organisation="gp")
        docs.append(d)
    await insert(gateway, docs)
    client = make_client(gateway.urls.mongo_url)
    try:
        repo = Repository(client[gateway.database])
        await add_account(repo, "lara", "supervisor", "lastrada", ["113"])
        await add_account(repo, "bea", "supervisor", "bwc", ["113"])
    finally:
        await client.close()

    published: dict[Cell, int | None] = {}
    base = f"/api/stats?from={YEAR}-01-01&to={YEAR}-12-31&publish=1"
    sofia = await logged_in(gateway.store_url, "sofia")
    try:
        for scope, extra in [("all", ""), ("113", "&line=113"), ("dv", "&line=dv")]:
            for by in TABLES:
                status, result = await sofia.call("GET", f"{base}&by={by}{extra}")
                assert status == 200, result
                dims = [d for d in by.split(",") if d]
                for row in result["rows"]:
                    cell = (scope, tuple(sorted((d, row[d]) for d in dims)))
                    assert published.setdefault(cell, row["count"]) == row["count"]  # one answer
                published[(scope, ())] = result["total"]["count"]
        status, result = await sofia.call("GET", f"{base}&by=line")
        assert status == 200, result
        for row in result["rows"]:
            assert published[(row["line"], ())] == row["count"]  # the same cells, not new ones
        # A year in progress cannot be published: two downloads would give a day away.
        status, refused = await sofia.call("GET", f"/api/stats?from={date.today().year}-01-01&publish=1")
        assert status == 422 and "a year that is over" in refused["detail"]
    finally:
        await sofia.close()
    # An organisation's own figures are for internal use: published per line only.
    for who in ("lara", "bea"):
        person = await logged_in(gateway.store_url, who)
        try:
            status, refused = await person.call("GET", f"{base}&by=gender")
            assert status == 422 and "per line" in refused["detail"], refused
            status, exact_figures = await person.call("GET", base.replace("&publish=1", "&by=gender"))
            assert status == 200 and not exact_figures["published"]
        finally:
            await person.close()

    exact: Counter[tuple[str, ...]] = Counter(
        (
            d["line"],
            d["case"]["gender"],
            d["case"]["age_group"],
            d["case"]["destination_country"],
            d["channel"],
        )
        for d in docs
    )
    names = ["line", "gender", "age_group", "destination_country", "channel"]
    atoms = [
        dict(zip(names, a, strict=True))
        for a in itertools.product(["113", "dv"], GENDERS, [*AGES, "60+"], COUNTRIES, CHANNELS)
    ]
    for (scope, dims), n in published.items():
        true = sum(
            v
            for key, v in exact.items()
            if scope in ("all", key[0]) and all(key[names.index(d)] == value for d, value in dims)
        )
        assert n is None or (n == true and not 0 < n < THRESHOLD), (scope, dims, n, true)
        assert n is not None or 0 < true  # a zero is never hidden: its absence says it anyway
    hidden = [c for c, n in published.items() if n is None]
    assert any(dict(dims).get("age_group") == "60+" for _, dims in hidden), "the small cells are hidden"
    for cell, (low, high) in bounds(published, atoms).items():
        assert high - low >= THRESHOLD - 1e-6, (cell, low, high)


async def test_the_yearly_report_gives_no_hidden_cell_away(gateway: Gateway) -> None:
    """The report's own tables (months by channel against channels, every section against the
    total), as a reader of the printed report would link them."""
    gateway.seed_demo_accounts()
    await insert(gateway, generated_threads(61, YEAR, 240, over_60=2) + generated_threads(62, YEAR - 1, 90))
    config = load_config(DEFAULT_CONFIG_PATH)
    client = make_client(gateway.urls.mongo_url)
    try:
        reader = StatsReader(Repository(client[gateway.database]), list(config.lines), form_fields(config))
        opts = ReportOptions(YEAR, ["113"], None, True)
        report = await build_report(reader, config, opts, MINSK, THRESHOLD, date(YEAR + 1, 3, 1))
    finally:
        await client.close()

    # The unknowns: every cell of every table the report prints, hidden or not.
    cells: dict[str, int | None] = {"total": report["total"]["total"]["count"]}
    equal: list[tuple[str, list[str]]] = []
    cover: list[tuple[str, list[str]]] = []
    for section, table in report["sections"]:
        keys = []
        for row in table["rows"]:
            key = f"{section.by}={row[section.by]}"
            cells[key] = row["count"]
            keys.append(key)
        multiple = config.case_form.fields.get(section.by) if config.case_form.fields else None
        (cover if multiple is not None and multiple.multiple else equal).append(("total", keys))
    months = report["months"]
    for period in months["periods"]:
        cells[f"month={period['period']}"] = period["count"]
    equal.append(("total", [f"month={p['period']}" for p in months["periods"]]))
    by_month: dict[str, list[str]] = {}
    by_channel: dict[str, list[str]] = {}
    for row in months["rows"]:
        key = f"month={row['period']},channel={row['channel']}"
        cells[key] = row["count"]
        by_month.setdefault(f"month={row['period']}", []).append(key)
        by_channel.setdefault(f"channel={row['channel']}", []).append(key)
    equal += list(by_month.items()) + list(by_channel.items())

    names = list(cells)
    index = {k: i for i, k in enumerate(names)}

    def row(total: str, parts: list[str], sign: float = 1.0) -> list[float]:
        r = [0.0] * len(names)
        r[index[total]] = sign
        for p in parts:
            r[index[p]] -= sign
        return r

    a_eq = [row(t, ps) for t, ps in equal] + [
        [1.0 if i == index[k] else 0.0 for i in range(len(names))] for k, n in cells.items() if n is not None
    ]
    b_eq = [0.0] * len(equal) + [float(n) for n in cells.values() if n is not None]
    a_ub, b_ub = [], []
    for total, parts in cover:  # each part at most the total, together at least the total
        a_ub.append(row(total, parts))
        b_ub.append(0.0)
        for p in parts:
            a_ub.append(row(p, [total]))
            b_ub.append(0.0)
    hidden = [k for k, n in cells.items() if n is None]
    assert "age_group=60+" in hidden
    for key in hidden:
        objective = [1.0 if i == index[key] else 0.0 for i in range(len(names))]
        low, top = interval(objective, a_eq, b_eq, a_ub, b_ub)
        assert top - low >= THRESHOLD - 1e-6, (key, low, top)
