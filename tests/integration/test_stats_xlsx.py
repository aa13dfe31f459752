"""GET /api/stats.xlsx through the real store: the workbook read back with openpyxl holds exactly
the figures of GET /api/stats with the same parameters, labelled in the language asked for."""

from __future__ import annotations

import io

from openpyxl import load_workbook

from services.store.reports import Labels
from shared.config import load_config
from shared.settings import DEFAULT_CONFIG_PATH
from tests.conftest import Gateway
from tests.integration.test_stats_api import (
    YEAR,
    closed_without_consultation,
    generated_threads,
    insert,
    login,
)

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# A cell holds what the JSON holds: a number, or nothing (None) where it is hidden or missing.


async def test_the_xlsx_holds_the_json_figures_exactly_in_each_language(gateway: Gateway) -> None:
    gateway.seed_demo_accounts()
    this_year = generated_threads(31, YEAR, 300, over_60=3)  # three people over 60: too few to publish
    contacts = closed_without_consultation(32, YEAR, ["spam"] * 2 + ["test"] * 6)
    await insert(gateway, this_year + contacts + generated_threads(33, YEAR - 1, 200))
    config = load_config(DEFAULT_CONFIG_PATH)

    sofia = await login(gateway, "sofia")
    anna = await login(gateway, "anna")
    try:
        base = f"from={YEAR}-01-01&to={YEAR}-12-31"
        for query, lang in [
            (f"{base}&by=age_group,gender&compare=1&publish=1", "be"),
            (f"{base}&by=channel&period=month&channel=email,chat", "ru"),
            (f"{base}&by=topics&compare=1", "en"),
        ]:
            status, table = await sofia.call("GET", f"/api/stats?{query}")
            assert status == 200, table
            async with sofia.http.get(f"{sofia.base}/api/stats.xlsx?{query}&lang={lang}") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"] == XLSX
                published = "-published" if table["published"] else ""
                assert resp.headers["Content-Disposition"] == (
                    f'attachment; filename="hotline-stats-{YEAR}-01-01-{YEAR}-12-31{published}.xlsx"'
                )
                data = await resp.read()
            labels = Labels(config, lang)
            sheet = load_workbook(io.BytesIO(data)).active
            assert sheet is not None
            got = [list(r) for r in sheet.iter_rows(values_only=True)]
            dims = (["period"] if table["period"] else []) + table["by"]
            head = [labels.dimension(d) for d in dims] + [labels.text("Count"), labels.text("Share, %")]
            if table["compare"]:
                head += [labels.text("Previous year"), labels.text("Change, %")]
            assert got[0] == head
            min_cell = table.get("min_cell")
            assert min_cell == (5 if table["published"] else None)
            want = []
            for row in table["rows"]:
                line = [row[d] if d == "period" else labels.value(d, row[d]) for d in dims]
                line += [
                    row["count"],
                    row["share"],
                ]
                if table["compare"]:
                    line += [row["previous"], row["change"]]
                want.append(line)
            assert got[1 : 1 + len(want)] == want
            assert len(want) > 3
            assert all(v is None for v in got[1 + len(want)])
            tail = {r[0]: r[1] for r in got[2 + len(want) :]}
            total = table["total"]
            assert tail[labels.text("Consultations")] == total["count"]
            assert tail[labels.text("People")] == total["people"]
            assert tail[labels.text("unknown people")] == total["without_known_person"]
            other = [r[1:] for r in got if r[0] == labels.text("Contacts without a consultation")]
            assert other[0][0] == table["no_consultation"]["count"]
            assert [r[: 3 if table["period"] else 2] for r in other[1:]] == [
                [
                    *([r["period"]] if table["period"] else []),
                    labels.reason(r["reason"]),
                    r["count"],
                ]
                for r in table["no_consultation"]["rows"]
            ]
            note = tail[labels.text("Note")]
            if table["published"]:
                assert note == labels.suppression_note(min_cell)
            else:
                assert note == labels.text("not for publication")
            if lang == "be":  # the three people over 60 are hidden, and the note says why
                assert head[:2] == ["Узрост", "Пол"]
                assert any(r[0] == "60+" and r[2] is None for r in got)
                assert "ад 1 да 4" in note

        # Numbers are numbers: the exact counts of one question add up to the total in the sheet.
        async with sofia.http.get(f"{sofia.base}/api/stats.xlsx?{base}&by=gender&lang=ru") as resp:
            sheet = load_workbook(io.BytesIO(await resp.read())).active
        assert sheet is not None
        rows = [list(r) for r in sheet.iter_rows(min_row=2, values_only=True)]
        counts = [r[1] for r in rows[: rows.index([None] * len(rows[0]))]]
        assert all(isinstance(c, int) for c in counts) and sum(counts) == 300
        assert {r[0]: r[1] for r in rows}["Консультации"] == 300

        for path in (f"/api/stats.xlsx?{base}&lang=de", f"/api/stats.xlsx?{base}&by=nonsense"):
            status, _ = await sofia.call("GET", path)
            assert status == 422, path
        status, _ = await anna.call("GET", f"/api/stats.xlsx?{base}")
        assert status == 403
    finally:
        await sofia.close()
        await anna.close()
