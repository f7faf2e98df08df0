from __future__ import annotations

from django.core.paginator import Paginator
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from partners.access import staff_required
from partners.selectors import partner_for_staff, partner_list


@staff_required
def home(request: HttpRequest) -> HttpResponse:
    """The staff home page: every partner, newest work first, 50 to a page."""
    page = Paginator(partner_list(), 50).get_page(request.GET.get("page"))
    return render(request, "partners/home.html", {"page": page})


@staff_required
def detail(request: HttpRequest, code: str) -> HttpResponse:
    """A partner's page: profile, token health (never the token), consent flows with their timelines, audit."""
    partner = get_object_or_404(partner_for_staff(code))
    # Consent data is reached through relations: the partners app never imports consent.
    flows = (
        partner.consent_flows.all()  # type: ignore[attr-defined]
        .prefetch_related(Prefetch("events"))
        .order_by("-created_at")[:20]
    )
    token = getattr(partner, "token", None)
    audit = partner.audit_events.select_related("actor")[:50]
    context = {"partner": partner, "flows": flows, "token": token, "audit": audit}
    return render(request, "partners/detail.html", context)
