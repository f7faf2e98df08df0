"""Deliveries signed as the Standard Webhooks specification says, checked with its reference library on what a real
receiver got; retries with backoff for a day; by hand; refused addresses in production; no secret kept in the
clear."""

from __future__ import annotations

import itertools
import logging
import socket
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import requests
from django.db import connection, transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from events import addresses, delivery
from events.addresses import PinnedAdapter
from events.delivery import RETRY_FOR, delivery_send, retry_delay
from events.models import Attempt, Delivery, Event, EventType, Subscription
from events.secrets import SecretUnreadable, secret_open
from events.services import (
    SubscriptionError,
    delivery_redeliver,
    event_record,
    subscription_create,
    subscription_rotate,
    subscription_update,
)
from microsoft.http import TimeoutSession
from partners.models import AuditEvent
from tests.events.conftest import ALL_TYPES
from tests.events.receiver import Receiver

pytestmark = pytest.mark.django_db


def _subscribe(receiver: Receiver, types: list[str] | None = None) -> tuple[Subscription, str]:
    return subscription_create(actor=None, name="Billing", url=receiver.url, event_types=types or ALL_TYPES)


def _one_event(django_capture_on_commit_callbacks, **detail) -> Event:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=False), transaction.atomic():
        return event_record(type=EventType.CUSTOMER_VERIFIED, detail=detail or {"note": "hello"})


def _only_delivery() -> Delivery:
    return Delivery.objects.get()


def test_a_delivery_verifies_with_the_reference_library_and_a_tampered_one_does_not(  # type: ignore[no-untyped-def]
    receiver, django_capture_on_commit_callbacks
) -> None:
    subscription, secret = _subscribe(receiver)
    assert secret.startswith("whsec_")
    event = _one_event(django_capture_on_commit_callbacks, note="hello")

    sent = delivery_send(delivery_id=_only_delivery().pk)

    assert sent.outcome == Delivery.State.DELIVERED
    [got] = receiver.got
    assert got.headers["webhook-id"] == event.webhook_id
    payload = Webhook(secret).verify(got.body, got.headers)
    assert payload["type"] == "customer.verified" and payload["data"] == {"note": "hello"}
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(got.body.replace(b"hello", b"hellO"), got.headers)
    later = {**got.headers, "webhook-timestamp": str(int(got.headers["webhook-timestamp"]) + 1)}
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(got.body, later)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(got.body, {**got.headers, "webhook-id": "msg_other"})
    with pytest.raises(WebhookVerificationError):
        _, other = _subscribe(receiver)
        Webhook(other).verify(got.body, got.headers)
    row = Delivery.objects.get(subscription=subscription)
    assert (row.state, row.attempts, row.last_status) == (Delivery.State.DELIVERED, 1, 200)
    attempt = Attempt.objects.get(delivery=row)
    assert attempt.status_code == 200 and attempt.duration_ms is not None and attempt.error == ""
    # Done is done: a second run posts nothing.
    assert delivery_send(delivery_id=row.pk).outcome == "skipped"
    assert len(receiver.got) == 1


def test_during_a_rotation_both_secrets_verify_and_after_it_only_the_new(  # type: ignore[no-untyped-def]
    receiver, django_capture_on_commit_callbacks
) -> None:
    subscription, old = _subscribe(receiver)
    rotated_at = timezone.now()
    subscription, new = subscription_rotate(actor=None, subscription=subscription, now=rotated_at)
    assert new != old and new.startswith("whsec_")

    _one_event(django_capture_on_commit_callbacks)
    delivery_send(delivery_id=_only_delivery().pk)
    during = receiver.got[-1]
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(during.body, during.headers)
    Webhook(new).verify(during.body, during.headers)

    # After the overlap: the previous secret no longer signs.
    Subscription.objects.filter(pk=subscription.pk).update(previous_until=timezone.now() - timedelta(seconds=1))
    _one_event(django_capture_on_commit_callbacks)
    second = Delivery.objects.exclude(state=Delivery.State.DELIVERED).get()
    delivery_send(delivery_id=second.pk)
    after = receiver.got[-1]
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    Webhook(new).verify(after.body, after.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(after.body, after.headers)
    assert AuditEvent.objects.filter(action="webhook.secret_rotated").count() == 1


def test_an_event_of_a_rolled_back_transaction_is_never_delivered(  # type: ignore[no-untyped-def]
    receiver, django_capture_on_commit_callbacks
) -> None:
    _subscribe(receiver)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            event_record(type=EventType.PARTNER_ACTIVATED)
            raise RuntimeError("the state change failed")

    assert callbacks == [] and Event.objects.count() == 0 and Delivery.objects.count() == 0
    assert delivery.deliveries_due() == [] and receiver.got == []


def test_a_failing_receiver_is_retried_with_growing_delays_for_a_day_then_failed(  # type: ignore[no-untyped-def]
    receiver, django_capture_on_commit_callbacks
) -> None:
    _subscribe(receiver)
    event = _one_event(django_capture_on_commit_callbacks)
    receiver.statuses = [500] * 100
    row = _only_delivery()
    now = event.created_at
    delays = []
    while True:
        sent = delivery_send(delivery_id=row.pk, now=now)
        row.refresh_from_db()
        if sent.outcome != Delivery.State.PENDING:
            break
        # Not due before its time: nothing posted.
        assert delivery_send(delivery_id=row.pk, now=now).outcome == "skipped"
        delays.append((row.next_attempt_at - now).total_seconds())
        now = row.next_attempt_at

    assert sent.outcome == Delivery.State.FAILED and row.state == Delivery.State.FAILED
    assert all(b > a for a, b in itertools.pairwise(delays[:7])), delays
    assert delays[0] < 15 and max(delays) <= 6 * 3600 * 1.2
    assert now <= event.created_at + RETRY_FOR
    assert len(receiver.got) == row.attempts == Attempt.objects.filter(delivery=row).count()
    assert set(receiver.ids()) == {event.webhook_id}
    assert set(Attempt.objects.values_list("error", flat=True)) == {"The receiver answered 500."}
    assert row.last_status == 500


def test_the_backoff_has_jitter() -> None:
    assert len({round(retry_delay(3), 3) for _ in range(20)}) > 1
    assert all(72 <= retry_delay(3) <= 108 for _ in range(50))


def test_staff_redeliver_by_hand_with_the_same_webhook_id(  # type: ignore[no-untyped-def]
    receiver, django_capture_on_commit_callbacks, admin_user
) -> None:
    _, secret = _subscribe(receiver)
    event = _one_event(django_capture_on_commit_callbacks)
    delivery_send(delivery_id=_only_delivery().pk)

    with django_capture_on_commit_callbacks(execute=False) as queued:
        delivery_redeliver(actor=admin_user, delivery=_only_delivery())
    assert len(queued) == 1
    sent = delivery_send(delivery_id=_only_delivery().pk)

    assert sent.outcome == Delivery.State.DELIVERED
    assert receiver.ids() == [event.webhook_id, event.webhook_id]
    Webhook(secret).verify(receiver.got[1].body, receiver.got[1].headers)
    assert list(Attempt.objects.order_by("number").values_list("by_hand", flat=True)) == [False, True]
    assert AuditEvent.objects.get(action="webhook.redelivered").actor == admin_user


def test_a_redelivery_by_hand_is_refused_while_an_attempt_is_in_flight(  # type: ignore[no-untyped-def]
    receiver, django_capture_on_commit_callbacks
) -> None:
    _subscribe(receiver)
    _one_event(django_capture_on_commit_callbacks)
    Delivery.objects.update(lease_until=timezone.now() + timedelta(seconds=30), lease_owner="another")

    with pytest.raises(SubscriptionError, match="in flight"):
        delivery_redeliver(actor=None, delivery=_only_delivery())


def test_only_subscribed_types_and_active_subscriptions_get_a_delivery(  # type: ignore[no-untyped-def]
    receiver, django_capture_on_commit_callbacks
) -> None:
    customers, _ = _subscribe(receiver, ["customer.verified"])
    partners, _ = _subscribe(receiver, ["partner.activated"])
    stopped, _ = _subscribe(receiver, ALL_TYPES)
    subscription_update(
        actor=None, subscription=stopped, name=stopped.name, url=stopped.url, event_types=ALL_TYPES, active=False
    )

    _one_event(django_capture_on_commit_callbacks)

    assert list(Delivery.objects.values_list("subscription", flat=True)) == [customers.pk]
    assert partners.pk and AuditEvent.objects.filter(action="webhook.changed").count() == 1


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://10.1.2.3/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://[::ffff:192.168.0.1]/hook",
        "https://100.64.0.1/hook",
        "http://203.0.113.9/hook",
        "ftp://example.com/hook",
    ],
)
def test_production_refuses_a_private_loopback_or_reserved_address_or_plain_http(settings, url) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_MODE = "production"

    with pytest.raises(SubscriptionError) as refused:
        subscription_create(actor=None, name="Internal", url=url, event_types=ALL_TYPES)

    assert "refused in production" in str(refused.value) or "https://" in str(refused.value)
    assert Subscription.objects.count() == 0


def test_production_checks_the_address_again_at_delivery(  # type: ignore[no-untyped-def]
    receiver, settings, django_capture_on_commit_callbacks
) -> None:
    # Saved outside production (or a name that resolved elsewhere then): refused when it is posted.
    _subscribe(receiver)
    _one_event(django_capture_on_commit_callbacks)
    settings.CPV_MODE = "production"

    sent = delivery_send(delivery_id=_only_delivery().pk)

    assert sent.outcome == Delivery.State.PENDING and receiver.got == []
    assert "https://" in Attempt.objects.get().error


def test_outside_production_a_loopback_receiver_is_allowed(receiver) -> None:  # type: ignore[no-untyped-def]
    subscription, _ = _subscribe(receiver)
    assert subscription.url.startswith("http://127.0.0.1:")


def test_a_bad_subscription_is_refused_in_words() -> None:
    with pytest.raises(SubscriptionError, match="name"):
        subscription_create(actor=None, name=" ", url="https://example.com/", event_types=ALL_TYPES)
    with pytest.raises(SubscriptionError, match=r"Unknown event types: partner\.exploded"):
        subscription_create(actor=None, name="x", url="https://example.com/", event_types=["partner.exploded"])
    with pytest.raises(SubscriptionError, match="at least one"):
        subscription_create(actor=None, name="x", url="https://example.com/", event_types=[])


def test_no_secret_in_the_database_the_audit_log_or_the_logs(  # type: ignore[no-untyped-def]
    receiver, django_capture_on_commit_callbacks, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.statuses = [500]
    subscription, secret = _subscribe(receiver)
    subscription, rotated = subscription_rotate(actor=None, subscription=subscription)
    _one_event(django_capture_on_commit_callbacks)
    delivery_send(delivery_id=_only_delivery().pk)

    raw = {secret, rotated, secret.removeprefix("whsec_"), rotated.removeprefix("whsec_")}
    with connection.cursor() as cursor:
        tables = ("events_subscription", "events_delivery", "events_attempt", "events_event", "partners_auditevent")
        for table in tables:
            cursor.execute(f"SELECT * FROM {table}")  # noqa: S608 - the test's own table names
            dump = repr(cursor.fetchall())
            assert not any(value in dump for value in raw), table
    assert not any(value in caplog.text for value in raw)
    # Sealed, bound to its subscription and slot: it opens only where it belongs.
    assert secret_open(
        subscription.secret_sealed, wanted_key_id=subscription.secret_key_id, subscription=str(subscription.code),
        slot="current",
    ) == rotated  # fmt: skip
    with pytest.raises(SecretUnreadable):
        secret_open(
            subscription.secret_sealed, wanted_key_id=subscription.secret_key_id, subscription=str(subscription.code),
            slot="previous",
        )  # fmt: skip


def test_a_secret_sealed_under_a_rotated_django_key_still_opens_from_the_fallbacks(settings) -> None:  # type: ignore[no-untyped-def]
    subscription, secret = subscription_create(actor=None, name="x", url="https://example.com/", event_types=ALL_TYPES)
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-django-secret-key-" + "x" * 40

    assert delivery.signing_secrets(subscription, now=timezone.now()) == [secret]
    settings.SECRET_KEY_FALLBACKS = []
    with pytest.raises(SecretUnreadable, match="neither"):
        delivery.signing_secrets(subscription, now=timezone.now())


def test_a_name_that_resolves_to_a_private_address_at_delivery_is_refused_in_production(  # type: ignore[no-untyped-def]
    settings, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    settings.CPV_MODE = "production"
    answers = {"hooks.partner.example": "1.1.1.1"}

    def resolve(host, port, **kwargs):  # type: ignore[no-untyped-def]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]

    monkeypatch.setattr(addresses.socket, "getaddrinfo", resolve)
    subscription_create(actor=None, name="PSA", url="https://hooks.partner.example/in", event_types=ALL_TYPES)
    _one_event(django_capture_on_commit_callbacks)
    # DNS rebinding: the same name now answers with the metadata service's address.
    answers["hooks.partner.example"] = "169.254.169.254"

    delivery_send(delivery_id=_only_delivery().pk)

    assert "resolves to 169.254.169.254" in Attempt.objects.get().error


def test_an_attempt_connects_to_the_checked_address_and_keeps_the_hosts_name(receiver) -> None:  # type: ignore[no-untyped-def]
    port = receiver.url.split(":")[2].split("/")[0]
    url = f"http://hooks.partner.example:{port}/hook"
    session = TimeoutSession()
    session.mount(url, PinnedAdapter("127.0.0.1"))

    response = session.post(url, data=b"{}", headers={"host": f"hooks.partner.example:{port}"}, timeout=5)

    assert response.status_code == 200
    assert receiver.got[0].headers["host"] == f"hooks.partner.example:{port}"


def test_a_delivery_to_a_subscription_disabled_since_fails_without_a_post(  # type: ignore[no-untyped-def]
    receiver, django_capture_on_commit_callbacks
) -> None:
    subscription, _ = _subscribe(receiver)
    _one_event(django_capture_on_commit_callbacks)
    subscription_update(
        actor=None, subscription=subscription, name="Billing", url=receiver.url, event_types=ALL_TYPES, active=False
    )

    sent = delivery_send(delivery_id=_only_delivery().pk)

    assert sent.outcome == Delivery.State.FAILED and receiver.got == []
    assert Attempt.objects.get().error == "The subscription is disabled."


def test_a_pinned_https_attempt_checks_the_certificate_against_the_urls_name(sim) -> None:  # type: ignore[no-untyped-def]
    # The simulator's HTTPS certificate names localhost (and 127.0.0.1), from its test CA.
    port = urlsplit(sim.control_url).port
    session = TimeoutSession()
    session.verify = str(sim.ca_bundle)
    named = f"https://localhost:{port}/"
    session.mount(named, PinnedAdapter("127.0.0.1"))
    assert session.get(named, headers={"host": f"localhost:{port}"}, timeout=5).status_code < 500

    other = f"https://hooks.partner.example:{port}/"
    session.mount(other, PinnedAdapter("127.0.0.1"))
    with pytest.raises(requests.exceptions.SSLError):
        session.get(other, headers={"host": f"hooks.partner.example:{port}"}, timeout=5)


def test_the_sweep_hands_a_due_delivery_out_once_until_its_hold_ends(  # type: ignore[no-untyped-def]
    receiver, django_capture_on_commit_callbacks
) -> None:
    _subscribe(receiver)
    _one_event(django_capture_on_commit_callbacks)
    row = _only_delivery()
    now = timezone.now()

    assert delivery.deliveries_due(now=now) == [row.pk]
    assert delivery.deliveries_due(now=now + timedelta(minutes=1)) == []
    assert delivery.deliveries_due(now=now + delivery.QUEUE_HOLD + timedelta(seconds=1)) == [row.pk]
    # Held by a worker's lease: not handed out.
    Delivery.objects.update(queued_until=None, lease_until=now + timedelta(seconds=30))
    assert delivery.deliveries_due(now=now) == []
