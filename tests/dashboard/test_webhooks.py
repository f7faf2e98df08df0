"""The webhook pages: who sees and does what, the secret shown once (at creation and at rotation) and on no other
page, deliveries with each attempt, sending one again by hand, each change audited."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from django.test import Client
from standardwebhooks.webhooks import Webhook

from events.delivery import delivery_send
from events.models import Attempt, Delivery, EventType, Subscription
from events.services import event_record, subscription_create
from partners.access import Role
from partners.models import AuditEvent
from tests.events.receiver import Receiver, run_receiver
from tests.factories import client_for, make_staff

pytestmark = pytest.mark.django_db

ALL = list(EventType.values)
LOGIN = "login"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from run_receiver()


@pytest.fixture
def clients(django_user_model, roles) -> dict[str, Client]:  # type: ignore[no-untyped-def]
    return {
        "anonymous": Client(),
        "no_role": client_for(make_staff(django_user_model, "nobody", Role.NONE)),
        "viewer": client_for(make_staff(django_user_model, "viewer", Role.VIEWER)),
        "operator": client_for(make_staff(django_user_model, "operator", Role.OPERATOR)),
        "admin": client_for(make_staff(django_user_model, "admin", Role.ADMIN)),
    }


def _outcome(response) -> object:  # type: ignore[no-untyped-def]
    if response.status_code == 302 and response["Location"].startswith("/accounts/login/"):
        return LOGIN
    return response.status_code


def _delivered(receiver, django_capture_on_commit_callbacks) -> tuple[Subscription, str, Delivery]:  # type: ignore[no-untyped-def]
    subscription, secret = subscription_create(actor=None, name="Billing", url=receiver.url, event_types=ALL)
    with django_capture_on_commit_callbacks(execute=False):
        event_record(type=EventType.PARTNER_ACTIVATED, detail={"note": "x"})
    delivery = Delivery.objects.get()
    delivery_send(delivery_id=delivery.pk)
    return subscription, secret, delivery


def test_each_role_sees_and_does_what_its_role_allows(clients, receiver, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    subscription, _, delivery = _delivered(receiver, django_capture_on_commit_callbacks)
    form = {"name": "CRM", "url": receiver.url, "event_types": ["partner.activated"], "active": "on"}
    acted = {"viewer": 403, "operator": 302, "admin": 302}
    read = {"anonymous": LOGIN, "no_role": 403, "viewer": 200, "operator": 200, "admin": 200}
    routes = [
        ("GET", "/webhooks/", {}, read),
        ("GET", f"/webhooks/{subscription.code}/", {}, read),
        ("GET", f"/webhooks/{uuid.uuid4()}/", {}, {**read, "viewer": 404, "operator": 404, "admin": 404}),
        ("POST", f"/webhooks/deliveries/{delivery.code}/redeliver", {}, {**read, **acted}),
        ("POST", f"/webhooks/{subscription.code}/rotate", {}, {**read, "viewer": 403, "operator": 403}),
        ("POST", f"/webhooks/{subscription.code}/", form, {**read, "viewer": 403, "operator": 403, "admin": 302}),
        ("POST", "/webhooks/", form, {**read, "viewer": 403, "operator": 403}),
    ]
    failures = []
    for method, url, data, expected in routes:
        for visitor, client in clients.items():
            response = client.get(url) if method == "GET" else client.post(url, data)
            if _outcome(response) != expected[visitor]:
                failures.append(f"{method} {url} as {visitor}: {_outcome(response)}, expected {expected[visitor]}")
    assert not failures, "\n".join(failures)


def test_the_navigation_links_the_webhooks_page(clients) -> None:  # type: ignore[no-untyped-def]
    assert b'id="nav-webhooks"' in clients["viewer"].get("/").content


def test_an_admin_creates_a_subscription_and_sees_its_secret_once(clients, receiver) -> None:  # type: ignore[no-untyped-def]
    admin = clients["admin"]

    response = admin.post(
        "/webhooks/", {"name": "PSA", "url": receiver.url, "event_types": ["customer.verified", "customer.drifted"]}
    )

    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    secret = re.search(r'<code id="secret">(whsec_[A-Za-z0-9+/=]+)</code>', response.content.decode()).group(1)
    subscription = Subscription.objects.get()
    assert subscription.event_types == ["customer.drifted", "customer.verified"] and not subscription.active
    audit = AuditEvent.objects.get(action="webhook.created")
    assert audit.actor.username == "admin" and audit.detail["url"] == receiver.url
    for url in ("/webhooks/", f"/webhooks/{subscription.code}/", "/audit/"):
        assert secret.encode() not in admin.get(url).content, url
    assert secret not in repr(list(AuditEvent.objects.values_list("detail", flat=True)))


def test_a_rotation_shows_the_new_secret_once_and_deliveries_verify_with_both(  # type: ignore[no-untyped-def]
    clients, receiver, django_capture_on_commit_callbacks
) -> None:
    subscription, old, _ = _delivered(receiver, django_capture_on_commit_callbacks)

    response = clients["admin"].post(f"/webhooks/{subscription.code}/rotate")

    page = response.content.decode()
    new = re.search(r'<code id="secret">(whsec_[A-Za-z0-9+/=]+)</code>', page).group(1)
    assert new != old and "signed with the previous secret too" in page
    assert new.encode() not in clients["admin"].get(f"/webhooks/{subscription.code}/").content
    with django_capture_on_commit_callbacks(execute=False):
        event_record(type=EventType.CUSTOMER_VERIFIED)
    delivery_send(delivery_id=Delivery.objects.get(state=Delivery.State.PENDING).pk)
    got = receiver.got[-1]
    Webhook(old).verify(got.body, got.headers)
    Webhook(new).verify(got.body, got.headers)
    assert AuditEvent.objects.get(action="webhook.secret_rotated").actor.username == "admin"


def test_deliveries_show_each_attempt_and_an_operator_sends_one_again(  # type: ignore[no-untyped-def]
    clients, receiver, django_capture_on_commit_callbacks
) -> None:
    receiver.statuses = [503]
    subscription, secret, delivery = _delivered(receiver, django_capture_on_commit_callbacks)

    page = clients["viewer"].get(f"/webhooks/{subscription.code}/").content.decode()
    assert "partner.activated" in page and "#1" in page and "HTTP 503" in page
    assert "Send again" not in page and "Rotate the secret" not in page
    assert secret not in page

    with django_capture_on_commit_callbacks(execute=False):
        response = clients["operator"].post(f"/webhooks/deliveries/{delivery.code}/redeliver", follow=True)
    assert b"again" in response.content
    delivery_send(delivery_id=delivery.pk)

    page = clients["operator"].get(f"/webhooks/{subscription.code}/").content.decode()
    assert "#2" in page and "(by hand)" in page and "HTTP 200" in page
    assert list(Attempt.objects.order_by("number").values_list("status_code", flat=True)) == [503, 200]
    assert AuditEvent.objects.get(action="webhook.redelivered").actor.username == "operator"


def test_an_admin_disables_a_subscription_and_a_refused_address_is_said_in_words(  # type: ignore[no-untyped-def]
    clients, receiver, settings
) -> None:
    subscription, _ = subscription_create(actor=None, name="Billing", url=receiver.url, event_types=ALL)
    admin = clients["admin"]

    admin.post(f"/webhooks/{subscription.code}/", {"name": "Billing", "url": receiver.url, "event_types": ALL})
    subscription.refresh_from_db()
    assert subscription.active is False
    assert AuditEvent.objects.get(action="webhook.changed").detail["after"] == {"active": False}

    settings.CPV_MODE = "production"
    response = admin.post("/webhooks/", {"name": "Inside", "url": "https://10.0.0.7/hook", "event_types": ALL})
    assert response.status_code == 200
    assert b"10.0.0.7, a private, loopback, link-local or reserved address: refused in production" in response.content
    assert Subscription.objects.count() == 1
