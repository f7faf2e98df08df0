from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from partners.access import staff_required
from partners.selectors import partner_list


@staff_required
def home(request: HttpRequest) -> HttpResponse:
    """The staff home page: every partner, newest work first, 50 to a page."""
    page = Paginator(partner_list(), 50).get_page(request.GET.get("page"))
    return render(request, "partners/home.html", {"page": page})
