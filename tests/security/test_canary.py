"""One run through everything that touches a token, then a search for every secret the simulator issued in
every database table, log record, rendered page (the admin included), Redis key and Celery result."""

from __future__ import annotations

import pytest
import redis
from django.db import connection
from django.test import Client

from consent.services import partner_invite
from customers import proof
from customers import services as customers
from customers.models import CustomerConsent
from events.delivery import delivery_send
from events.models import Delivery, Event, EventType
from events.services import subscription_create
from partners.models import Customer, Partner
from tests.events.receiver import run_receiver
from tests.simulated import partner_user
from tokens import access_tokens, renewal
from tokens.models import PartnerToken, VaultSecretVersion

pytestmark = pytest.mark.django_db

STAFF_PAGES = ["/", "/partners/", "/audit/", "/staff/", "/settings/", "/admin/", "/admin/partners/partner/",
               "/admin/partners/auditevent/"]  # fmt: skip


def _database_text() -> str:
    rows: list[str] = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            if table == VaultSecretVersion._meta.db_table:
                continue  # the embedded vault's ciphertext: the one place a token may be
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - names from introspection
            rows.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(rows)


def _redis_text(url: str) -> str:
    client = redis.Redis.from_url(url)
    parts: list[str] = []
    for key in client.scan_iter(count=500):
        parts.append(repr(key))
        kind = client.type(key)
        if kind == b"string":
            parts.append(repr(client.get(key)))
        elif kind == b"list":
            parts.extend(repr(item) for item in client.lrange(key, 0, -1))
        elif kind == b"hash":
            parts.append(repr(client.hgetall(key)))
        elif kind == b"set":
            parts.append(repr(client.smembers(key)))
        elif kind == b"zset":
            parts.append(repr(client.zrange(key, 0, -1, withscores=True)))
    return "\n".join(parts)


@pytest.mark.redis
def test_no_issued_secret_is_found_anywhere_after_a_full_run(  # type: ignore[no-untyped-def]
    cpv_sim, consent_run, django_user_model, caplog, redis_url, tmp_path, settings
) -> None:
    caplog.set_level("DEBUG")
    settings.CPV_THROTTLE_URL = redis_url
    # A webhook receiver told of everything below, its signing secret rotated once.
    receiving = run_receiver()
    receiver = next(receiving)
    hook, hook_secret = subscription_create(
        actor=None, name="Canary hooks", url=receiver.url, event_types=list(EventType.values)
    )
    # Consent.
    invitation = partner_invite(actor=None, name="Canary Partners", contact_email="c@canary.example", send_email=False)
    run = consent_run(
        invitation.url, user=partner_user(cpv_sim, global_admin=True, admin_agent=True, mfa_registered=True)
    )
    pages = [run.client.get(run.callback["Location"]).content.decode()]
    partner = Partner.objects.get(pk=invitation.partner.pk)
    assert partner.status == Partner.Status.ACTIVE
    # Renewal: one that works, one that fails transiently, one that finds the consent revoked.
    assert renewal.renew_one_retrying(partner_id=partner.pk, force=True, sleep=lambda s: None).outcome == "renewed"
    cpv_sim.control.inject_fault("entra", status=500, path=r".*/oauth2/v2.0/token", times=2)
    renewal.renew_one_retrying(partner_id=partner.pk, force=True, sleep=lambda s: None)
    # Customers and ApplicationConsent, with a throttled answer on the way.
    customers.customers_sync(partner_id=partner.pk, sleep=lambda s: None)
    cpv_sim.control.inject_fault(
        "partner_center", status=429, path=r".*/applicationconsents", headers={"Retry-After": "1"}
    )
    for customer in Customer.objects.filter(partner=partner):
        customers.customer_consent_apply(customer_id=customer.pk, sleep=lambda s: None)
    assert CustomerConsent.objects.filter(status=CustomerConsent.Status.APPLIED).count() >= 1
    access_tokens.access_token_get(partner=partner)
    # A customer tenant's token, and one that fails there.
    first = Customer.objects.filter(partner=partner).first()
    assert first is not None
    access_tokens.access_token_get(partner=partner, audience=access_tokens.GRAPH, tenant=str(first.tenant_id))
    # Proof in each customer tenant: Graph read with customer-tenant tokens, one customer drifted and repaired.
    cpv_sim.control.narrow_grant(str(first.tenant_id), ["Directory.Read.All"])
    applied = list(
        CustomerConsent.objects.filter(status=CustomerConsent.Status.APPLIED).values_list("customer_id", flat=True)
    )
    assert proof.consents_verify(customer_ids=applied).verified == len(applied)
    # The dashboard and the admin, as an admin, including the partner's page with its errors.
    staff = Client()
    staff.force_login(django_user_model.objects.create_superuser("root", "r@example.com", "x" * 20))
    for path in [*STAFF_PAGES, f"/partners/{partner.code}/", f"/admin/partners/partner/{partner.pk}/change/"]:
        response = staff.get(path)
        assert response.status_code == 200, path
        pages.append(response.content.decode())
    # The revoked consent, last: renewal now marks the partner and emails the contact.
    cpv_sim.control.revoke_user(partner_user(cpv_sim, global_admin=True, admin_agent=True, mfa_registered=True).upn)
    renewal.renew_one_retrying(partner_id=partner.pk, force=True, sleep=lambda s: None)
    assert Partner.objects.get(pk=partner.pk).status == Partner.Status.RECONSENT_NEEDED
    pages.append(staff.get(f"/partners/{partner.code}/").content.decode())

    # Every event delivered; the secret rotated from the page (its answer shows the new one, once: not kept).
    rotated = staff.post(f"/webhooks/{hook.code}/rotate").content.decode()
    new_secret = rotated.split('<code id="secret">', 1)[1].split("</code>", 1)[0]
    for delivery_id in Delivery.objects.values_list("pk", flat=True):
        delivery_send(delivery_id=delivery_id)
    receiving.close()
    assert len(receiver.got) == Event.objects.count() >= 5
    for path in ("/webhooks/", f"/webhooks/{hook.code}/", "/audit/"):
        pages.append(staff.get(path).content.decode())

    issued = [s for s in cpv_sim.control.issued_secrets() if s]
    assert len(issued) > 10
    issued += [hook_secret, new_secret, hook_secret.removeprefix("whsec_"), new_secret.removeprefix("whsec_")]
    assert PartnerToken.objects.get(partner=partner).current_version
    places = {
        "database": _database_text(),
        "logs": caplog.text,
        "pages": "\n".join(pages),
        "redis": _redis_text(redis_url),
        "webhooks": "\n".join(repr(got.body) for got in receiver.got),
    }
    for place, text in places.items():
        found = [secret[:16] for secret in issued if secret in text]
        assert found == [], f"issued secrets found in {place}: {found}"


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_no_issued_secret_reaches_the_broker_or_the_result_backend(cpv_sim, redis_url, celery_worker_process) -> None:  # type: ignore[no-untyped-def]
    """A real worker runs the renewal task: its message, its result and its log hold no token."""
    from celery import Celery

    from tests.factories import active_partner

    partner = active_partner(cpv_sim)
    env = {**cpv_sim.env, "CELERY_BROKER_URL": redis_url, "CELERY_RESULT_BACKEND": redis_url,
           "DATABASE_URL": _database_url(), "CPV_THROTTLE_URL": redis_url,
           "VAULT_KEY": _vault_key_env()}  # fmt: skip
    worker = celery_worker_process(**env)
    client = Celery("canary", broker=redis_url, backend=redis_url, set_as_current=False)
    client.conf.update(task_serializer="json", accept_content=["json"], result_serializer="json")

    result = client.send_task(
        "consent.token_renew", kwargs={"partner_id": partner.pk, "force": True}, queue=worker.queue
    )
    result.get(timeout=90, propagate=False)

    issued = [s for s in cpv_sim.control.issued_secrets() if s]
    text = _redis_text(redis_url) + worker.log()
    assert [s[:16] for s in issued if s in text] == []


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor != "postgresql":
        pytest.fail("this test needs PostgreSQL: run it with `make test`")
    user, host, port = db["USER"] or "postgres", db["HOST"] or "127.0.0.1", db["PORT"] or 5432
    return f"postgres://{user}@{host}:{port}/{db['NAME']}"


def _vault_key_env() -> str:
    import base64

    from django.conf import settings

    return ",".join(base64.urlsafe_b64encode(key).decode() for key in settings.VAULT_KEYS)
