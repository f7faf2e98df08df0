"""Pictures drawn on the server as inline SVG: bars, stacked day columns and a coverage meter.

Sizes and positions are SVG presentation attributes (width, height, x, y) and colours come from CSS classes,
so the pages need no inline style and no script under the Content-Security-Policy. Every chart carries a
<title> and an aria-label so that a screen reader gets the numbers too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django import template
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

register = template.Library()

ROW = 26
LABEL_WIDTH = 170
BAR_WIDTH = 360
VALUE_WIDTH = 60


@register.simple_tag
def hbars(bars: Sequence[Any], *, label: str = "", link: str = "") -> SafeString:
    """Horizontal bars, one row per Bar(label, value, css, hint), scaled to the largest value.

    With `link`, each row links to `link` + the bar's hint (a filter value for the partner list).
    """
    top = max((b.value for b in bars), default=0) or 1
    height = ROW * len(bars) + 4
    width = LABEL_WIDTH + BAR_WIDTH + VALUE_WIDTH
    rows = []
    for i, bar in enumerate(bars):
        y = i * ROW + 2
        length = round(BAR_WIDTH * bar.value / top) if bar.value else 0
        row = format_html(
            '<g class="row {}"><title>{}: {}{}</title>'
            '<text x="0" y="{}" class="label">{}</text>'
            '<rect x="{}" y="{}" width="{}" height="{}" rx="3" class="track"></rect>'
            '<rect x="{}" y="{}" width="{}" height="{}" rx="3" class="bar"></rect>'
            '<text x="{}" y="{}" class="value">{}</text></g>',
            bar.css,
            bar.label,
            bar.value,
            f" ({bar.hint})" if bar.hint and not link else "",
            y + 17,
            bar.label,
            LABEL_WIDTH,
            y + 3,
            BAR_WIDTH,
            ROW - 8,
            LABEL_WIDTH,
            y + 3,
            length,
            ROW - 8,
            LABEL_WIDTH + BAR_WIDTH + 8,
            y + 17,
            bar.value,
        )
        if link:
            row = format_html('<a href="{}{}">{}</a>', link, bar.hint, row)
        rows.append(row)
    return format_html(
        '<svg class="chart hbars" viewBox="0 0 {} {}" width="{}" height="{}" role="img" aria-label="{}">{}</svg>',
        width,
        height,
        width,
        height,
        label,
        SafeString("".join(rows)),
    )


@register.simple_tag
def day_columns(series: Sequence[Any], kinds: Sequence[tuple[str, str, str]], *, label: str = "") -> SafeString:
    """Stacked columns, one per day (DaySeries with values per kind), with a legend and a baseline."""
    height = 140
    plot = 110
    step = max(6, min(22, 640 // max(1, len(series))))
    width = step * len(series) + 40
    top = max((s.total for s in series), default=0) or 1
    parts = []
    for i, day in enumerate(series):
        x = 30 + i * step
        y = plot
        tip = ", ".join(f"{name}: {day.values.get(key, 0)}" for key, name, _ in kinds)
        stack = []
        for key, _, css in kinds:
            value = day.values.get(key, 0)
            if not value:
                continue
            h = max(1, round(plot * value / top))
            y -= h
            stack.append(
                format_html('<rect x="{}" y="{}" width="{}" height="{}" class="{}"></rect>', x, y, step - 2, h, css)
            )
        parts.append(
            format_html(
                '<g><title>{}: {}</title><rect x="{}" y="0" width="{}" height="{}" class="hit"></rect>{}</g>',
                day.day.isoformat(),
                tip,
                x,
                step - 2,
                plot,
                SafeString("".join(stack)),
            )
        )
    axis = format_html(
        '<line x1="28" y1="{}" x2="{}" y2="{}" class="axis"></line>'
        '<text x="0" y="12" class="value">{}</text><text x="0" y="{}" class="value">0</text>'
        '<text x="30" y="{}" class="label">{}</text><text x="{}" y="{}" class="label end">{}</text>',
        plot + 0.5,
        width,
        plot + 0.5,
        top,
        plot,
        height - 8,
        series[0].day.isoformat() if series else "",
        width,
        height - 8,
        series[-1].day.isoformat() if series else "",
    )
    key = (
        '<span class="key"><svg width="12" height="12"><rect width="12" height="12" class="{}"></rect></svg> {}</span>'
    )
    legend = format_html_join("", key, ((css, name) for _, name, css in kinds))
    return format_html(
        '<svg class="chart columns" viewBox="0 0 {} {}" width="{}" height="{}" role="img" aria-label="{}">{}{}</svg>'
        '<p class="legend">{}</p>',
        width,
        height,
        width,
        height,
        label,
        SafeString("".join(parts)),
        axis,
        legend,
    )


@register.simple_tag
def meter(done: int, total: int, *, failed: int = 0, label: str = "") -> SafeString:
    """A horizontal meter: `done` of `total` in green, `failed` in red, the rest grey."""
    width = 420
    ok_width = round(width * done / total) if total else 0
    bad_width = round(width * failed / total) if total else 0
    return format_html(
        '<svg class="chart meter" viewBox="0 0 {} 18" width="{}" height="18" role="img" aria-label="{}">'
        "<title>{}: {} of {}{}</title>"
        '<rect x="0" y="0" width="{}" height="18" rx="4" class="track"></rect>'
        '<rect x="0" y="0" width="{}" height="18" rx="4" class="ok"></rect>'
        '<rect x="{}" y="0" width="{}" height="18" class="bad"></rect></svg>',
        width,
        width,
        label,
        label,
        done,
        total,
        f", {failed} failing" if failed else "",
        width,
        ok_width,
        ok_width,
        bad_width,
    )


@register.simple_tag
def lifebar(percent: int, *, label: str = "") -> SafeString:
    """A token's age against the 90-day limit: the used part coloured by how close it is to the end."""
    width = 300
    used = round(width * min(100, max(0, percent)) / 100)
    css = "ok" if percent < 66 else ("warn" if percent < 85 else "bad")
    return format_html(
        '<svg class="chart meter" viewBox="0 0 {} 14" width="{}" height="14" role="img" aria-label="{}">'
        '<title>{}</title><rect x="0" y="0" width="{}" height="14" rx="3" class="track"></rect>'
        '<rect x="0" y="0" width="{}" height="14" rx="3" class="{}"></rect></svg>',
        width,
        width,
        label,
        label,
        width,
        used,
        css,
    )


@register.simple_tag(takes_context=True)
def query(context: template.Context, **changes: Any) -> str:
    """The current query string with some parameters changed (None or "" removes one); for sort links and
    pagers that keep the filters."""
    params = context["request"].GET.copy()
    for key, value in changes.items():
        if value is None or value == "":
            params.pop(key, None)
        else:
            params[key] = value
    encoded = params.urlencode()
    return f"?{encoded}" if encoded else "?"


@register.filter
def get_item(mapping: dict[str, Any], key: str) -> Any:
    return mapping.get(key, key)
