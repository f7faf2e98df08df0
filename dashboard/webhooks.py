"""The webhook pages: subscriptions (admins create, change, disable them and rotate their secrets, each secret shown
once in the answer to its POST and never stored in a session), and each subscription's deliveries with every attempt
(viewers read them, operators send one again by hand). Every change is a service call that audits it."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from dashboard.forms import WebhookForm
from events.models import Attempt, Delivery, EventType, Subscription
from events.services import (
    SubscriptionError,
    delivery_redeliver,
    subscription_create,
    subscription_rotate,
    subscription_update,
)
from partners.access import Role, staff_view

# Deliveries a subscription's page lists, newest first.
DELIVERIES_SHOWN = 50


def _secret_page(request: HttpRequest, subscription: Subscription, secret: str, *, rotated: bool) -> HttpResponse:
    """The one page that shows a signing secret: the answer to the POST that made it, never cached."""
    response = render(
        request, "dashboard/webhook_secret.html", {"subscription": subscription, "secret": secret, "rotated": rotated}
    )
    response["Cache-Control"] = "no-store"
    return response


def _posted(request: HttpRequest) -> WebhookForm:
    """The subscription form an admin posted (a 403 for anyone else)."""
    if request.staff_role < Role.ADMIN:  # type: ignore[attr-defined]
        raise PermissionDenied("Only an admin manages webhook subscriptions.")
    return WebhookForm(request.POST)


@staff_view(see=Role.VIEWER)
@require_http_methods(["GET", "POST"])
@never_cache
def webhook_list(request: HttpRequest) -> HttpResponse:
    """The subscriptions; an admin's POST creates one and answers with its secret, shown once."""
    form = WebhookForm(initial={"event_types": list(EventType.values), "active": True})
    if request.method == "POST":
        form = _posted(request)
        if form.is_valid():
            try:
                subscription, secret = subscription_create(actor=request.user, **form.cleaned_data)
            except SubscriptionError as exc:
                form.add_error(None, str(exc))
            else:
                return _secret_page(request, subscription, secret, rotated=False)
    subscriptions = Subscription.objects.order_by("name", "pk")
    context: dict[str, Any] = {"subscriptions": subscriptions, "form": form, "role": request.staff_role}  # type: ignore[attr-defined]
    return render(request, "dashboard/webhooks.html", context)


@staff_view(see=Role.VIEWER)
@require_http_methods(["GET", "POST"])
@never_cache
def webhook_detail(request: HttpRequest, code: str) -> HttpResponse:
    """One subscription, its latest deliveries with each attempt; an admin's POST changes it."""
    subscription = get_object_or_404(Subscription, code=code)
    form = WebhookForm(
        initial={
            "name": subscription.name,
            "url": subscription.url,
            "event_types": subscription.event_types,
            "active": subscription.active,
        }
    )
    if request.method == "POST":
        form = _posted(request)
        if form.is_valid():
            try:
                subscription_update(actor=request.user, subscription=subscription, **form.cleaned_data)
            except SubscriptionError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"Saved {form.cleaned_data['name']}.")
                return HttpResponseRedirect(reverse("dashboard:webhook", args=[subscription.code]))
    deliveries = (
        Delivery.objects.filter(subscription=subscription)
        .select_related("event")
        .prefetch_related(Prefetch("attempt_rows", queryset=Attempt.objects.order_by("number")))
        .order_by("-created_at", "-pk")[:DELIVERIES_SHOWN]
    )
    context = {
        "subscription": subscription,
        "form": form,
        "deliveries": deliveries,
        "role": request.staff_role,  # type: ignore[attr-defined]
        "type_labels": dict(EventType.choices),
    }
    return render(request, "dashboard/webhook.html", context)


@staff_view(see=Role.VIEWER, act=Role.ADMIN)
@require_POST
def webhook_rotate(request: HttpRequest, code: str) -> HttpResponse:
    """A new signing secret, shown once; the previous one still signs during the overlap."""
    subscription = get_object_or_404(Subscription, code=code)
    subscription, secret = subscription_rotate(actor=request.user, subscription=subscription)
    return _secret_page(request, subscription, secret, rotated=True)


@staff_view(see=Role.VIEWER, act=Role.OPERATOR)
@require_POST
def webhook_redeliver(request: HttpRequest, code: str) -> HttpResponse:
    """Send one delivery again now (the same webhook-id: the receiver dedupes)."""
    delivery = get_object_or_404(Delivery.objects.select_related("subscription", "event"), code=code)
    try:
        delivery_redeliver(actor=request.user, delivery=delivery)
    except SubscriptionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Sending {delivery.event.type} to {delivery.subscription.name} again.")
    return HttpResponseRedirect(reverse("dashboard:webhook", args=[delivery.subscription.code]))
