"""The staff pages of the token API, served by the web tier: API clients (register, change, rotate and revoke keys,
last use) for admins, and the API's documentation. Every change goes through api/services.py and is audited."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from api.endpoints import api
from api.models import ApiClient, ApiKey
from api.services import (
    DEFAULT_OVERLAP,
    ApiClientError,
    Issued,
    api_client_create,
    api_client_revoke,
    api_client_update,
    api_key_revoke,
    api_key_rotate,
)
from partners.access import Role, staff_view
from partners.models import Partner


class ScopeForm(forms.Form):
    all_partners = forms.BooleanField(required=False, label="Every partner, present and future")
    partners = forms.ModelMultipleChoiceField(
        queryset=Partner.objects.filter(deleted_at__isnull=True).order_by("name"),
        required=False,
        label="Or these partners",
        to_field_name="code",
    )
    audiences = forms.MultipleChoiceField(
        choices=ApiClient.Audience.choices, widget=forms.CheckboxSelectMultiple, label="Audiences it may ask for"
    )
    networks = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        label="Source networks (one CIDR a line; empty: anywhere)",
    )


class ClientForm(ScopeForm):
    name = forms.CharField(max_length=200)
    entra_app_id = forms.UUIDField(
        required=False,
        label="Entra app id (client id) in the vendor's tenant; empty: an API key",
    )
    field_order = ["name", "entra_app_id", "all_partners", "partners", "audiences", "networks"]


def _networks(form: forms.Form) -> list[str]:
    return str(form.cleaned_data.get("networks") or "").split()


def _issued_page(request: HttpRequest, issued: Issued) -> HttpResponse:
    # The key is on this answer only: never in a redirect, a session or a message.
    response = render(request, "api/key_issued.html", {"client": issued.client, "key": issued.key})
    response["Cache-Control"] = "no-store"
    return response


@staff_view(see=Role.ADMIN, act=Role.ADMIN)
@require_http_methods(["GET", "POST"])
def clients(request: HttpRequest) -> HttpResponse:
    form = ClientForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            issued = api_client_create(
                actor=request.user,
                name=data["name"],
                audiences=data["audiences"],
                all_partners=data["all_partners"],
                partners=data["partners"],
                networks=_networks(form),
                entra_app_id=data["entra_app_id"],
            )
        except ApiClientError as exc:
            form.add_error(None, str(exc))
        else:
            if issued.key:
                return _issued_page(request, issued)
            return redirect("api_staff:client", code=issued.client.code)
    rows = ApiClient.objects.prefetch_related("partners").order_by("revoked_at", "name")
    return render(request, "api/clients.html", {"clients": rows, "form": form})


def _scope_initial(client: ApiClient) -> dict[str, Any]:
    return {
        "all_partners": client.all_partners,
        "partners": list(client.partners.all()),
        "audiences": client.audiences,
        "networks": "\n".join(client.networks),
    }


@staff_view(see=Role.ADMIN, act=Role.ADMIN)
@require_http_methods(["GET", "POST"])
def client(request: HttpRequest, code: str) -> HttpResponse:
    found = get_object_or_404(ApiClient, code=code)
    what = request.POST.get("what", "")
    form = ScopeForm(request.POST if what == "scope" else None, initial=_scope_initial(found))
    try:
        if what == "scope" and form.is_valid():
            data = form.cleaned_data
            api_client_update(
                actor=request.user,
                client=found,
                audiences=data["audiences"],
                all_partners=data["all_partners"],
                partners=data["partners"],
                networks=_networks(form),
            )
            return redirect("api_staff:client", code=found.code)
        if what == "rotate":
            hours = request.POST.get("overlap_hours", "")
            overlap = timedelta(hours=int(hours)) if hours.isdigit() else DEFAULT_OVERLAP
            return _issued_page(request, api_key_rotate(actor=request.user, client=found, overlap=overlap))
        if what == "revoke_key":
            key = get_object_or_404(ApiKey, client=found, pk=request.POST.get("key", "0") or "0")
            api_key_revoke(actor=request.user, api_key=key)
            return redirect("api_staff:client", code=found.code)
        if what == "revoke":
            api_client_revoke(actor=request.user, client=found)
            return redirect("api_staff:client", code=found.code)
    except ApiClientError as exc:
        form.add_error(None, str(exc))
    context = {
        "client": found,
        "keys": found.keys.all(),
        "form": form,
        "default_overlap_hours": int(DEFAULT_OVERLAP.total_seconds() // 3600),
    }
    return render(request, "api/client.html", context)


@staff_view(see=Role.VIEWER)
def docs(request: HttpRequest) -> HttpResponse:
    """The API's documentation (Swagger UI from django-ninja's own static files: nothing from a CDN)."""
    return render(request, "api/docs.html", {"schema_url": reverse("api_staff:schema")})


@staff_view(see=Role.VIEWER)
def schema(request: HttpRequest) -> JsonResponse:
    """The same OpenAPI document the API serves at /api/v1/schema, for the docs page on the web tier."""
    document = api.get_openapi_schema(path_prefix="/api/v1")
    document["servers"] = [{"url": "/"}]
    return JsonResponse(document)
