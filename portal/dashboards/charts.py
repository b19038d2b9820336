"""Server-rendered SVG charts: the geometry is computed here, templates/partials/dashboard_chart.html
draws it. No chart library runs in the browser.

Every chart is an <svg role="img"> whose <title> names it and whose <desc> says in words what it
shows (totals, the largest values); the table beneath it holds every number. Colours have at
least 3:1 contrast on white, and stacked segments are separated by a white edge.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from portal.dashboards.queries import Table

PALETTE = ("#0b5394", "#b35806", "#1b7837", "#762a83", "#c51b7d", "#2c7f77", "#8c510a", "#4a5560")
WIDTH = 720
LABEL_MAX = 32
LISTED = 8  # how many values the description names before "and N more"


@dataclass
class Chart:
    title: str
    desc: str
    width: int
    height: int
    rects: list[dict] = field(default_factory=list)  # x, y, w, h, fill, tip
    lines: list[dict] = field(default_factory=list)  # x1, y1, x2, y2
    texts: list[dict] = field(default_factory=list)  # x, y, text, anchor


def for_table(table: Table) -> Chart:
    series = [(table.columns[c], [row[c] for row in table.rows]) for c in table.charted]
    labels = [row[0] for row in table.rows]
    if table.chart == "stacked":
        return stacked(table.title, labels, series, table.unit, table.columns[0].lower())
    return bars(table.title, labels, series, table.unit)


def _scale(maximum: float, integer: bool) -> tuple[float, list[float]]:
    """A round top value and 2–5 evenly spaced ticks from 0 to it."""
    if not maximum or maximum <= 0:
        return 1, [0, 1]
    raw = maximum / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    if integer:
        step = max(1, round(step))
    count = math.ceil(maximum / step - 1e-9)
    return step * count, [step * i for i in range(count + 1)]


def _number(value) -> str:
    if value is None:
        return "—"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _short(text: str) -> str:
    return text if len(text) <= LABEL_MAX else text[:LABEL_MAX - 1] + "…"


def _listing(pairs: list[tuple[str, object]], unit: str) -> str:
    suffix = "%" if unit == "%" else ""
    named = "; ".join(f"{label} {_number(value)}{suffix}" for label, value in pairs[:LISTED])
    more = f"; and {len(pairs) - LISTED} more" if len(pairs) > LISTED else ""
    return named + more


def stacked(title: str, categories: list[str], series: list[tuple[str, list]], unit: str, period: str) -> Chart:
    """Vertical bars, one per period, stacked by series. Series that are zero throughout are left out."""
    series = [(name, values) for name, values in series if any(values)]
    left, right, top, plot_h, axis_h = 48, 12, 12, 220, 36
    per_row = 3
    legend_h = math.ceil(len(series) / per_row) * 22
    totals = [sum(values[i] for _, values in series) for i in range(len(categories))]
    grand = sum(totals)
    if grand:
        busiest = max(range(len(categories)), key=lambda i: totals[i])
        by_size = sorted(((name, sum(values)) for name, values in series), key=lambda kv: -kv[1])
        desc = (f"{grand} {unit} across {len(categories)} periods ({period} {categories[0]} to {categories[-1]}). "
                f"Highest: {categories[busiest]} with {totals[busiest]}. By group: {_listing(by_size, '')}.")
    else:
        desc = f"No {unit} match these filters."
    chart = Chart(title, desc, WIDTH, top + plot_h + axis_h + legend_h)
    plot_w = WIDTH - left - right
    top_value, ticks = _scale(max(totals, default=0), integer=True)
    base = top + plot_h
    for tick in ticks:
        y = round(base - tick / top_value * plot_h, 1)
        chart.lines.append({"x1": left, "y1": y, "x2": WIDTH - right, "y2": y})
        chart.texts.append({"x": left - 6, "y": y + 4, "text": _number(tick), "anchor": "end"})
    band = plot_w / max(len(categories), 1)
    width = round(max(band * 0.7, 1), 1)
    every = math.ceil(len(categories) / 8) or 1
    for i, category in enumerate(categories):
        x = round(left + i * band + (band - width) / 2, 1)
        y = base
        for j, (name, values) in enumerate(series):
            if values[i]:
                h = values[i] / top_value * plot_h
                y -= h
                chart.rects.append({"x": x, "y": round(y, 1), "w": width, "h": round(h, 1),
                                    "fill": PALETTE[j % len(PALETTE)], "tip": f"{category} · {name}: {values[i]}"})
        if i % every == 0:
            chart.texts.append({"x": round(x + width / 2, 1), "y": base + 18, "text": category, "anchor": "middle"})
    _legend(chart, series, base + axis_h, left, per_row)
    return chart


def bars(title: str, labels: list[str], series: list[tuple[str, list]], unit: str) -> Chart:
    """Horizontal bars, one group per row, one bar per series; a missing value is drawn as "—"."""
    label_w, value_w, top, bar_h = 210, 70, 8, 14
    left = label_w + 8
    plot_w = WIDTH - left - value_w
    group_h = len(series) * (bar_h + 2) + 10
    legend_h = 22 if len(series) > 1 else 0
    values = [v for _, vs in series for v in vs if v is not None]
    if labels and values:
        parts = [_listing([(label, vs[i]) for i, label in enumerate(labels)], unit) for _, vs in series]
        desc = " ".join(f"{name}: {part}." for (name, _), part in zip(series, parts))
    else:
        desc = "Nothing to show for these filters."
    chart = Chart(title, desc, WIDTH, top + max(len(labels), 1) * group_h + 24 + legend_h)
    top_value, ticks = _scale(100 if unit == "%" else max(values, default=0), integer=unit != "hours")
    base = top + max(len(labels), 1) * group_h
    for tick in ticks:
        x = round(left + tick / top_value * plot_w, 1)
        chart.lines.append({"x1": x, "y1": top, "x2": x, "y2": base})
        chart.texts.append({"x": x, "y": base + 16, "text": _number(tick) + ("%" if unit == "%" else ""),
                            "anchor": "middle"})
    for i, label in enumerate(labels):
        y0 = top + i * group_h
        chart.texts.append({"x": label_w, "y": round(y0 + group_h / 2, 1), "text": _short(label), "anchor": "end"})
        for j, (name, vs) in enumerate(series):
            y = y0 + j * (bar_h + 2)
            w = round((vs[i] or 0) / top_value * plot_w, 1)
            if w:
                chart.rects.append({"x": left, "y": y, "w": w, "h": bar_h, "fill": PALETTE[j % len(PALETTE)],
                                    "tip": f"{label} · {name}: {_number(vs[i])}"})
            chart.texts.append({"x": round(left + w + 4, 1), "y": y + bar_h - 3,
                                "text": _number(vs[i]) + ("%" if unit == "%" and vs[i] is not None else ""),
                                "anchor": "start"})
    if len(series) > 1:
        _legend(chart, series, base + 26, left, 3)
    return chart


def _legend(chart: Chart, series: list, y: float, left: int, per_row: int) -> None:
    column_w = (WIDTH - left) / per_row
    for j, (name, _) in enumerate(series):
        x = round(left + (j % per_row) * column_w, 1)
        row_y = y + (j // per_row) * 22
        chart.rects.append({"x": x, "y": row_y, "w": 12, "h": 12, "fill": PALETTE[j % len(PALETTE)], "tip": name})
        chart.texts.append({"x": x + 18, "y": row_y + 11, "text": _short(name), "anchor": "start"})
