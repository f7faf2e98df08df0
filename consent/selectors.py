"""Reads of a partner's consent attempts, for the staff dashboard."""

from __future__ import annotations

from django.db.models import Prefetch

from consent.models import ConsentFlow, ConsentFlowEvent
from partners.models import Partner


def consent_flows(partner: Partner, *, limit: int = 10) -> list[ConsentFlow]:
    """The partner's latest consent attempts, each with its timeline (two queries)."""
    return list(
        ConsentFlow.objects.filter(partner=partner)
        .prefetch_related(Prefetch("events", queryset=ConsentFlowEvent.objects.order_by("created_at", "id")))
        .order_by("-created_at", "-id")[:limit]
    )
