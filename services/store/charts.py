"""Bar, pie and line charts as inline SVG, drawn here (no third-party code, no script).

Pure functions from figures to SVG text. Every chart names itself (``<title>``, an
``aria-label``) and writes every label and value as text, so it reads in a PDF, with a
screen reader and without the colours. A suppressed figure (None) is drawn as no bar or
slice and labelled ``<n`` where ``n`` is the suppression threshold.
"""

from __future__ import annotations

import math
from html import escape

# Distinguishable for the common colour-vision deficiencies (Okabe-Ito).
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
FONT = 'font-family="DejaVu Sans, Arial, sans-serif"'


def _value(v: int | None, hidden: str) -> str:
    return hidden if v is None else f"{v:,}".replace(",", " ")


def _open(kind: str, title: str, width: int, height: int) -> str:
    t = escape(title)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {kind}" role="img" aria-label="{t}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" {FONT} font-size="13">'
        f'<title>{t}</title><rect width="{width}" height="{height}" fill="#ffffff"/>'
        f'<text x="8" y="20" font-size="15" font-weight="bold" fill="#222">{t}</text>'
    )


def bar_chart(title: str, items: list[tuple[str, int | None]], hidden: str = "<5", width: int = 640) -> str:
    """Horizontal bars, one per (label, count), in the order given."""
    row, top, label_w = 24, 34, 220
    height = top + row * max(len(items), 1) + 10
    most = max((v for _, v in items if v), default=0)
    bar_w = width - label_w - 70
    parts = [_open("bar", title, width, height)]
    if not items:
        parts.append(f'<text x="8" y="{top + 16}" fill="#555">no consultations</text>')
    for i, (label, v) in enumerate(items):
        y = top + i * row
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end" fill="#222">{escape(label[:40])}</text>'
        )
        w = 0 if not v or not most else max(1, round(bar_w * v / most))
        if w:
            parts.append(
                f'<rect x="{label_w}" y="{y + 4}" width="{w}" height="{row - 8}" '
                f'fill="{PALETTE[0]}"><title>{escape(label)}: {v}</title></rect>'
            )
        parts.append(f'<text x="{label_w + w + 6}" y="{y + 16}" fill="#222">{_value(v, hidden)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def pie_chart(title: str, items: list[tuple[str, int | None]], hidden: str = "<5", width: int = 640) -> str:
    """A pie of the shares of (label, count); suppressed items appear only in the legend."""
    r, cx = 90, 120
    height = max(2 * r + 60, 40 + 22 * len(items) + 10)
    cy = 40 + r
    total = sum(v for _, v in items if v)
    parts = [_open("pie", title, width, height)]
    angle = -math.pi / 2
    shown = [(i, label, v) for i, (label, v) in enumerate(items) if v]
    for i, label, count in shown:
        v = count or 0
        colour = PALETTE[i % len(PALETTE)]
        if len(shown) == 1:
            parts.append(f'<circle cx="{cx}" cy="{cy}" r="{r}" fill="{colour}"/>')
            continue
        sweep = 2 * math.pi * v / total
        x1, y1 = cx + r * math.cos(angle), cy + r * math.sin(angle)
        angle += sweep
        x2, y2 = cx + r * math.cos(angle), cy + r * math.sin(angle)
        large = 1 if sweep > math.pi else 0
        parts.append(
            f'<path d="M{cx},{cy} L{x1:.2f},{y1:.2f} A{r},{r} 0 {large} 1 {x2:.2f},{y2:.2f} Z" '
            f'fill="{colour}" stroke="#fff"><title>{escape(label)}: {v}</title></path>'
        )
    if not shown:
        parts.append(f'<circle cx="{cx}" cy="{cy}" r="{r}" fill="none" stroke="#bbb"/>')
    for i, (label, n) in enumerate(items):
        y = 40 + 22 * i
        share = f" ({100 * n / total:.1f} %)" if n and total else ""
        parts.append(
            f'<rect x="{2 * r + 60}" y="{y}" width="14" height="14" fill="{PALETTE[i % len(PALETTE)]}"/>'
            f'<text x="{2 * r + 82}" y="{y + 12}" fill="#222">'
            f"{escape(label[:40])}: {_value(n, hidden)}{share}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def line_chart(
    title: str, x_labels: list[str], series: list[tuple[str, list[int | None]]], width: int = 640
) -> str:
    """One line per (name, values by x); a suppressed value breaks its line."""
    height, left, top, bottom = 300, 50, 56, 40
    plot_w, plot_h = width - left - 20, height - top - bottom
    most = max((v for _, vs in series for v in vs if v), default=0)
    scale = _nice(most)
    parts = [_open("line", title, width, height)]
    for k in range(5):
        value = scale * k / 4
        y = top + plot_h - plot_h * k / 4
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#555">'
            f"{value:g}</text>"
        )
    step = plot_w / max(len(x_labels) - 1, 1)
    for i, label in enumerate(x_labels):
        parts.append(
            f'<text x="{left + i * step:.1f}" y="{height - bottom + 16}" text-anchor="middle" '
            f'font-size="11" fill="#555">{escape(label)}</text>'
        )
    for n, (name, values) in enumerate(series):
        colour = PALETTE[n % len(PALETTE)]
        segment: list[str] = []
        segments: list[list[str]] = []
        for i, v in enumerate(values):
            if v is None:
                if segment:
                    segments.append(segment)
                segment = []
                continue
            y = top + plot_h - (plot_h * v / scale if scale else 0)
            segment.append(f"{left + i * step:.1f},{y:.1f}")
            parts.append(
                f'<circle cx="{left + i * step:.1f}" cy="{y:.1f}" r="3" fill="{colour}">'
                f"<title>{escape(name)} {escape(x_labels[i])}: {v}</title></circle>"
            )
        if segment:
            segments.append(segment)
        for seg in segments:
            parts.append(
                f'<polyline points="{" ".join(seg)}" fill="none" stroke="{colour}" stroke-width="2"/>'
            )
        lx = left + n * 150
        parts.append(
            f'<rect x="{lx}" y="30" width="14" height="4" fill="{colour}"/>'
            f'<text x="{lx + 20}" y="36" font-size="12" fill="#222">{escape(name[:20])}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _nice(most: int) -> float:
    """A round upper bound for an axis (1, 2 or 5 times a power of ten)."""
    if most <= 0:
        return 1
    power = 10 ** math.floor(math.log10(most))
    for factor in (1, 2, 5, 10):
        if most <= factor * power:
            return float(factor * power)
    return float(10 * power)
