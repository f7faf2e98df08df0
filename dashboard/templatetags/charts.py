"""Pictures drawn on the server as inline SVG (bars, day columns, a meter), styled by CSS classes so the CSP needs
no inline style or script; each has a <title> and aria-label with the numbers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django import template
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

register = template.Library()

# Horizontal bars: each row has its label on a line of its own above the bar, the value at the end of that line,
# so that a long label neither runs into the bar nor is cut, and the chart stays narrow enough for a phone.
WIDTH = 360
ROW = 38
BAR_HEIGHT = 12
# Width of a character of the charts' 12px system font, generously: what decides whether a label fits.
CHAR_WIDTH = 7.2


def text_width(text: str) -> float:
    return len(text) * CHAR_WIDTH


def fitted(text: str, room: float) -> str:
    """The text, ellipsised to fit in `room` pixels."""
    most = max(1, int(room // CHAR_WIDTH))
    return text if len(text) <= most else text[: most - 1].rstrip() + "…"


@register.simple_tag
def hbars(bars: Sequence[Any], *, label: str = "", link: str = "") -> SafeString:
    """Horizontal bars, one per Bar(label, value, css, hint); with `link`, each links to `link` + hint."""
    top = max((b.value for b in bars), default=0) or 1
    height = ROW * len(bars) + 2
    rows = []
    for i, bar in enumerate(bars):
        y = i * ROW
        length = round(WIDTH * bar.value / top) if bar.value else 0
        value = str(bar.value)
        room = WIDTH - text_width(value) - 12
        row = format_html(
            '<g class="row {}"><title>{}: {}{}</title>'
            '<text x="0" y="{}" class="label">{}</text>'
            '<text x="{}" y="{}" class="value end">{}</text>'
            '<rect x="0" y="{}" width="{}" height="{}" rx="3" class="track"></rect>'
            '<rect x="0" y="{}" width="{}" height="{}" rx="3" class="bar"></rect></g>',
            bar.css,
            bar.label,
            bar.value,
            f" ({bar.hint})" if bar.hint and not link else "",
            y + 14,
            fitted(bar.label, room),
            WIDTH,
            y + 14,
            value,
            y + 20,
            WIDTH,
            BAR_HEIGHT,
            y + 20,
            length,
            BAR_HEIGHT,
        )
        if link:
            row = format_html('<a href="{}{}">{}</a>', link, bar.hint, row)
        rows.append(row)
    return format_html(
        '<svg class="chart hbars" viewBox="0 0 {} {}" width="{}" height="{}" role="img" aria-label="{}">{}</svg>',
        WIDTH,
        height,
        WIDTH,
        height,
        label,
        SafeString("".join(rows)),
    )


@register.simple_tag
def day_columns(series: Sequence[Any], kinds: Sequence[tuple[str, str, str]], *, label: str = "") -> SafeString:
    """Stacked columns, one per day (DaySeries with values per kind), with a legend and a baseline."""
    height = 140
    plot = 110
    top = max((s.total for s in series), default=0) or 1
    # The axis's numbers sit left of the columns, in room made for the widest of them.
    left = round(text_width(str(top))) + 8
    # The columns share the chart's width (WIDTH, as the bars: a phone shows it at its size, text readable);
    # a long period gets thinner columns rather than a wider chart.
    step = max(3, min(22, (WIDTH - left - 2) // max(1, len(series))))
    column = step - 2 if step >= 6 else step - 1
    width = max(left + step * len(series) + 2, left + 2 * round(text_width("00 Mmm")) + 16)
    parts = []
    for i, day in enumerate(series):
        x = left + i * step
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
                format_html('<rect x="{}" y="{}" width="{}" height="{}" class="{}"></rect>', x, y, column, h, css)
            )
        parts.append(
            format_html(
                '<g><title>{}: {}</title><rect x="{}" y="0" width="{}" height="{}" class="hit"></rect>{}</g>',
                day.day.isoformat(),
                tip,
                x,
                column,
                plot,
                SafeString("".join(stack)),
            )
        )
    axis = format_html(
        '<line x1="{}" y1="{}" x2="{}" y2="{}" class="axis"></line>'
        '<text x="{}" y="12" class="value end">{}</text><text x="{}" y="{}" class="value end">0</text>'
        '<text x="{}" y="{}" class="label">{}</text><text x="{}" y="{}" class="label end">{}</text>',
        left - 2,
        plot + 0.5,
        width,
        plot + 0.5,
        left - 6,
        top,
        left - 6,
        plot,
        left,
        height - 8,
        series[0].day.strftime("%d %b") if series else "",
        width,
        height - 8,
        series[-1].day.strftime("%d %b") if series else "",
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
    """The current query string with some parameters changed (None or "" removes one)."""
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
