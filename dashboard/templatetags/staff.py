"""The signed-in staff member's role (to show only the links and buttons they may use), and event timelines."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django import template
from django.utils import timezone
from django.utils.timesince import timesince

from microsoft.permissions import RequiredPermission
from partners.access import Role, role_of
from partners.models import Partner
from partners.permissions import partner_permissions_missing

register = template.Library()


@register.simple_tag(takes_context=True)
def staff_role(context: template.Context) -> int:
    """The role as a number (0 none … 3 admin), free after the view's own check (the permission cache)."""
    request = context.get("request")
    role = getattr(request, "staff_role", None)
    if role is None and request is not None:
        role = role_of(request.user)
    return int(role or Role.NONE)


@dataclass
class Step:
    """One line of a timeline: what happened, when (and until when, for a repeat), and how many times."""

    when: datetime
    text: str
    key: str
    css: str = ""
    times: int = 1
    until: datetime | None = None


def _plain(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]+", "", text.lower()).strip()


def phrase(label: str, message: str) -> str:
    """An event's state and message as one phrase, saying each thing once."""
    label, message = label.strip(), message.strip()
    if not message or _plain(message) in _plain(label):
        return label
    if not label or _plain(label) in _plain(message):
        return message
    return f"{label} — {message}"


def timeline_steps(events: Iterable[Any], *, key: str, label: str) -> list[Step]:
    """Events (oldest first) as timeline lines: a same-state event adds its message to the line, an identical one
    counts as a repeat."""
    steps: list[Step] = []
    for event in events:
        event_key = str(getattr(event, key))
        event_label = str(getattr(event, label)())
        message = str(getattr(event, "message", "") or "")
        text = phrase(event_label, message)
        last = steps[-1] if steps else None
        if last is not None and last.key == event_key and last.text == text:
            last.times += 1
            last.until = event.created_at
        elif last is not None and last.key == event_key and last.times == 1:
            if message and _plain(message) not in _plain(last.text):
                last.text = f"{last.text}; {message}"
        else:
            steps.append(Step(when=event.created_at, text=text, key=event_key, css=event_key))
    return steps


@register.simple_tag
def flow_timeline(flow: Any) -> list[Step]:
    """A consent attempt's events as timeline lines (see `timeline_steps`)."""
    return timeline_steps(flow.events.all(), key="status", label="get_status_display")


@register.simple_tag
def token_timeline(events: Iterable[Any]) -> list[Step]:
    """Token events, newest first as the page lists them, as timeline lines (see `timeline_steps`)."""
    oldest_first = sorted(events, key=lambda e: (e.created_at, e.pk))
    return timeline_steps(oldest_first, key="kind", label="get_kind_display")[::-1]


@register.filter
def permissions_missing(partner: Partner) -> list[RequiredPermission]:
    """The required permissions the partner's last consent did not grant (partners.permissions)."""
    return partner_permissions_missing(partner)


@register.filter
def ago(moment: datetime | None) -> str:
    """How long ago, for a person: 'just now', '3 hours ago', 'yesterday', '5 days ago' (never '0 minutes ago')."""
    if moment is None:
        return ""
    elapsed = timezone.now() - moment
    if elapsed < timedelta(minutes=1):
        return "just now"
    if elapsed < timedelta(days=1):
        return f"{timesince(moment, depth=1)} ago"
    if elapsed < timedelta(days=2):
        return "yesterday"
    return f"{timesince(moment, depth=1)} ago"
