"""The figures of one `make bench` run: each the median of its repetitions with the spread
(min-max), the target of QUALITY.md 1, the ceiling measured in the same run, the machine's
load average while it was measured; printed as a table and written as JSON.

A figure that a run shortened (``make bench QUICK=1``: fewer or shorter repetitions) says
how in its ``shortened`` field, and the table prints it.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def load_average() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return round(one, 2), round(five, 2), round(fifteen, 2)


@dataclass
class Figure:
    """One figure: ``values`` are the repetitions (the median is the figure), ``unit`` their
    unit; ``ceiling`` the same operation against the bare broker / database / IMAP server in
    the same run (its own repetitions), ``target`` QUALITY.md 1's bar in words, ``met`` whether
    the median meets it (None where a machine cannot say: e.g. a ratio to a ceiling not measured)."""

    key: str
    what: str
    unit: str
    values: list[float]
    target: str
    met: bool | None = None
    ceiling: list[float] = field(default_factory=list)
    ceiling_what: str = ""
    shortened: str = ""
    note: str = ""
    load: tuple[float, float, float] = field(default_factory=load_average)

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    @property
    def ceiling_median(self) -> float | None:
        return statistics.median(self.ceiling) if self.ceiling else None

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["median"] = self.median
        out["spread"] = [min(self.values), max(self.values)] if self.values else None
        out["ceiling_median"] = self.ceiling_median
        out["ceiling_spread"] = [min(self.ceiling), max(self.ceiling)] if self.ceiling else None
        return out


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _spread(values: list[float]) -> str:
    if not values:
        return ""
    if len(values) == 1:
        return f"{_num(values[0])} (once)"
    return f"{_num(statistics.median(values))} ({_num(min(values))}-{_num(max(values))}, n={len(values)})"


def machine() -> dict[str, Any]:
    """What `env` says of this machine, without the environment itself."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_mib": mem_kib // 1024,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "commit": commit,
    }


@dataclass
class Report:
    quick: bool
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    began: float = field(default_factory=time.monotonic)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        print(
            f"figure   {figure.what}: {_spread(figure.values)} {figure.unit}; target {figure.target}",
            flush=True,
        )
        return figure

    def as_json(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "seconds": round(time.monotonic() - self.began),
            "quick": self.quick,
            "machine": machine(),
            "load_average_end": load_average(),
            "notes": self.notes,
            "figures": [f.as_json() for f in self.figures],
        }

    def table(self) -> str:
        rows = [
            ("figure", "median (min-max, n)", "unit", "target", "met", "ceiling, same run", "load 1/5/15")
        ]
        for f in self.figures:
            met = "-" if f.met is None else ("yes" if f.met else "NO")
            ceiling = f"{f.ceiling_what}: {_spread(f.ceiling)}" if f.ceiling else (f.ceiling_what or "-")
            rows.append(
                (
                    f.what + (f" [{f.shortened}]" if f.shortened else ""),
                    _spread(f.values) or "not measured",
                    f.unit,
                    f.target,
                    met,
                    ceiling,
                    "/".join(f"{x:.1f}" for x in f.load),
                )
            )
        return "\n".join(
            "| " + " | ".join(r) + " |" for r in [rows[0], tuple("---" for _ in rows[0]), *rows[1:]]
        )

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_json(), indent=2, default=str) + "\n")


def from_json(data: dict[str, Any]) -> Report:
    """A report read back from its JSON (to print its table again, e.g. into docs/performance.md)."""
    report = Report(quick=data["quick"], notes=data["notes"], started=data["started"])
    names = {f.name for f in fields(Figure)}
    for f in data["figures"]:
        kept: dict[str, Any] = {k: (tuple(v) if k == "load" else v) for k, v in f.items() if k in names}
        report.figures.append(Figure(**kept))
    return report


if __name__ == "__main__":
    import sys

    print(from_json(json.loads(Path(sys.argv[1]).read_text())).table())
