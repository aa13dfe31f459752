"""A statistics table as an XLSX workbook (openpyxl): what ``/api/stats.csv`` gives, for people
who open it in a spreadsheet.

One sheet: a header, one row per cell of the table, a blank row, then the note (suppression
for publication, or "not for publication"), the consultations, people, consultations of people
not known, with ``compare`` the previous year and the change, the contacts without a
consultation (all, then per reason), the dates and the filters. Counts, shares and changes are
numbers; a suppressed cell is the text ``<5`` (the threshold), a missing value an empty cell, as
in the CSV. Labels (headers, dimension values, reasons) are in the language asked for.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from openpyxl import Workbook
from openpyxl.styles import Font

from services.store.report_text import text

if TYPE_CHECKING:
    from services.store.reports import Labels

CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def to_xlsx(result: Mapping[str, Any], labels: Labels) -> bytes:
    """The table ``result`` (as :func:`services.store.stats.build_table` makes it) as the bytes
    of an XLSX file, labelled in ``labels``' language. A suppressed figure (None) is an empty
    cell, as in the CSV."""
    lang = labels.lang
    book = Workbook()
    sheet = book.active
    assert sheet is not None  # a new workbook has its sheet
    sheet.title = text(lang, "Consultations")
    dims = (["period"] if result["period"] else []) + list(result["by"])
    head = [labels.dimension(d) for d in dims] + [text(lang, "Count"), text(lang, "Share, %")]
    if result["compare"]:
        head += [text(lang, "Previous year"), text(lang, "Change, %")]
    sheet.append(head)
    for c in sheet[1]:
        c.font = Font(bold=True)
    min_cell = result.get("min_cell")
    for row in result["rows"]:
        line: list[Any] = [row[d] if d == "period" else labels.value(d, row[d]) for d in dims]
        line += [row["count"], row["share"]]
        if result["compare"]:
            line += [row["previous"], row["change"]]
        sheet.append(line)
    sheet.append([])
    total = result["total"]
    if result["published"]:
        note = labels.suppression_note(min_cell or 0)
    else:
        note = result["note"] if lang == "en" else text(lang, "not for publication")
    sheet.append([text(lang, "Note"), note])
    sheet.append([text(lang, "Consultations"), total["count"]])
    sheet.append([text(lang, "People"), total.get("people")])
    sheet.append(
        [
            text(lang, "unknown people"),
            total.get("without_known_person"),
        ]
    )
    if result["compare"]:
        sheet.append([text(lang, "Consultations, previous year"), total.get("previous")])
        sheet.append([text(lang, "Change, %"), total.get("change")])
    other = result.get("no_consultation") or {"count": 0, "rows": []}
    heading = text(lang, "Contacts without a consultation")
    sheet.append([heading, other["count"]])
    for row in other["rows"]:
        period = [row["period"]] if result["period"] else []
        count = row["count"]
        sheet.append([heading, *period, labels.reason(row["reason"]), count])
    sheet.append([text(lang, "Period"), text(lang, "dates", first=result["from"], last=result["to"])])
    for name, values in result["filters"].items():
        shown = " / ".join(labels.value(name, v) for v in values)
        sheet.append([text(lang, "Filter"), f"{labels.dimension(name)} = {shown}"])
    sheet.column_dimensions["A"].width = 36
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
