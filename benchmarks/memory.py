"""Resident memory of the idle stack (QUALITY.md 1: 4 services + broker + database <= 600 MiB):
the RSS (``VmRSS`` in /proc) of every process the stack started, each server's whole process
group (RabbitMQ's Erlang VM with epmd and its helpers, FerretDB, Dovecot's master and
workers) and each service process, summed per part. The IMAP server and the SMTP relay are
reported beside the target's sum: production uses the organisation's mail server.

RSS counts shared pages (the Python interpreter's libraries) once per process, so the sum
is an upper bound of what the machine gives the stack; PSS (``/proc/<pid>/smaps_rollup``)
shares them out and is given too.
"""

from __future__ import annotations

import os
from pathlib import Path

TARGET_PARTS = ("rabbitmq", "epmd", "ferretdb", "store", "dispatcher", "email_ingest", "chat_ingest")


def _kib(pid: int, path: str, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/{path}").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def sample(parts: dict[str, list[int]]) -> dict[str, dict[str, float]]:
    """MiB of RSS and PSS per part (a part: a list of pids)."""
    out = {}
    for name, pids in parts.items():
        rss = sum(_kib(p, "status", "VmRSS:") for p in pids)
        pss = sum(_kib(p, "smaps_rollup", "Pss:") for p in pids)
        out[name] = {"rss_mib": rss / 1024, "pss_mib": pss / 1024, "processes": len(pids)}
    return out


def totals(s: dict[str, dict[str, float]]) -> tuple[float, float, float]:
    """(RSS of the target's parts, their PSS, RSS of everything incl. the mail servers), MiB."""
    rss = sum(v["rss_mib"] for k, v in s.items() if k in TARGET_PARTS)
    pss = sum(v["pss_mib"] for k, v in s.items() if k in TARGET_PARTS)
    return rss, pss, sum(v["rss_mib"] for v in s.values())


def cpu_seconds(parts: dict[str, list[int]]) -> dict[str, float]:
    """CPU time (user + system) each part has used so far, in seconds: a cost that other work on
    the machine does not inflate, unlike the wall-clock time of the same work."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for name, pids in parts.items():
        total = 0
        for pid in pids:
            try:
                raw = Path(f"/proc/{pid}/stat").read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue
            fields = raw[raw.rindex(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
        out[name] = total / tick
    return out


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after}
