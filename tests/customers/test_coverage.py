"""The customer coverage counters agree with a count from scratch after every kind of change: a sync that adds,
removes or brings back customers, ApplicationConsent applied, refused, retried or re-applied, a partner
deactivated, work done at once by many workers; and the recount puts right what bypassed the services."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection

from customers.coverage import Coverage, coverage_count, coverage_recount
from customers.models import CustomerConsent, PartnerCoverage
from customers.selectors import coverage_for
from customers.services import CallFailed, customer_consent_apply, customers_sync
from microsoft import partner_center
from partners.models import Customer, Partner
from partners.services import partner_deactivate
from tests.factories import active_partner

pytestmark = pytest.mark.django_db

CONSENTS = "applicationconsents"


def no_sleep(seconds: float) -> None:
    pass


def counters(partner: Partner) -> Coverage:
    """The counters as the pages read them, after checking they equal a count from the customers."""
    kept = coverage_for([partner.pk]).get(partner.pk, Coverage())
    assert kept == coverage_count([partner.pk]).get(partner.pk, Coverage())
    return kept


def present(partner: Partner) -> list[Customer]:
    return list(Customer.objects.filter(partner=partner, removed_at__isnull=True).order_by("pk"))


def refuse_next_consent(sim: Any) -> None:
    sim.control.inject_fault("partner_center", status=403, method="POST", path=CONSENTS)


def test_every_change_of_customers_and_their_consents_keeps_the_counters_exact(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    tenant = str(partner.tenant_id)
    cpv_sim.control.add_customers(tenant, 5)  # ten in all

    customers_sync(partner_id=partner.pk)
    assert counters(partner) == Coverage(10, 0, 0)

    first, second, third, fourth, *_ = present(partner)
    for customer in (first, second, third):
        assert customer_consent_apply(customer_id=customer.pk, sleep=no_sleep).status == "applied"
    refuse_next_consent(cpv_sim)
    assert customer_consent_apply(customer_id=fourth.pk, sleep=no_sleep).status == "failed"
    assert counters(partner) == Coverage(10, 3, 1)

    # Applied again (nothing to do) and a refusal retried with success: failed -> applied.
    customer_consent_apply(customer_id=first.pk, sleep=no_sleep)
    customer_consent_apply(customer_id=fourth.pk, sleep=no_sleep)
    assert counters(partner) == Coverage(10, 4, 0)

    # A refusal of an applied customer's new grants: applied -> failed.
    refuse_next_consent(cpv_sim)
    CustomerConsent.objects.filter(customer=second).update(grants_hash="older-grants")
    assert customer_consent_apply(customer_id=second.pk, sleep=no_sleep).status == "failed"
    assert counters(partner) == Coverage(10, 3, 1)

    # A transient failure changes no status.
    cpv_sim.control.inject_fault("partner_center", status=503, method="POST", path=CONSENTS, times=4)
    with pytest.raises(CallFailed):
        customer_consent_apply(customer_id=present(partner)[5].pk, sleep=no_sleep)
    assert counters(partner) == Coverage(10, 3, 1)

    # New customers arrive (the simulator numbers them after the last one: they come before any leaves).
    cpv_sim.control.add_customers(tenant, 3)
    assert customers_sync(partner_id=partner.pk).created == 3
    assert counters(partner) == Coverage(13, 3, 1)

    # Customers leave: an applied one, the failed one and one never applied.
    for customer in (first, second, present(partner)[6]):
        cpv_sim.control.remove_customer(tenant, str(customer.tenant_id))
    assert customers_sync(partner_id=partner.pk).removed == 3
    assert counters(partner) == Coverage(10, 2, 0)

    # A removed customer's consent is not applied, and counts for nothing.
    customer_consent_apply(customer_id=first.pk, sleep=no_sleep)
    assert counters(partner) == Coverage(10, 2, 0)

    # A deactivated partner keeps its customers and their states; nothing is applied for it any more.
    partner_deactivate(actor=None, partner=partner)
    customer_consent_apply(customer_id=present(partner)[-1].pk, sleep=no_sleep)
    assert counters(partner) == Coverage(10, 2, 0)


def test_a_customer_that_comes_back_counts_again_with_its_state(cpv_sim, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    tenant = str(partner.tenant_id)
    customers_sync(partner_id=partner.pk)
    applied, failed, *_ = present(partner)
    customer_consent_apply(customer_id=applied.pk, sleep=no_sleep)
    refuse_next_consent(cpv_sim)
    customer_consent_apply(customer_id=failed.pk, sleep=no_sleep)
    listed = {str(c.tenant_id): c for c in (applied, failed)}
    real_customers = partner_center.PartnerCenterClient.customers
    for customer in (applied, failed):
        cpv_sim.control.remove_customer(tenant, str(customer.tenant_id))
    customers_sync(partner_id=partner.pk)
    assert counters(partner) == Coverage(3, 0, 0)

    # The simulator cannot bring a customer back: its listing gains the two again, as Partner Center's would.
    def listing_with_them_again(self, **kwargs):  # type: ignore[no-untyped-def]
        yield from real_customers(self, **kwargs)
        for tenant_id, customer in listed.items():
            yield partner_center.CustomerRecord(
                tenant_id=tenant_id, company_name=customer.company_name, domain=customer.domain, relationship=""
            )

    monkeypatch.setattr(partner_center.PartnerCenterClient, "customers", listing_with_them_again)
    customers_sync(partner_id=partner.pk)

    assert counters(partner) == Coverage(5, 1, 1)


def test_the_recount_corrects_counters_that_a_bulk_write_left_wrong(cpv_sim, capsys) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    customers_sync(partner_id=partner.pk)
    untouched = Partner.objects.create(name="No customers", contact_email="n@example.com")
    # Writes that bypass the services: a customer's state set in bulk, and a counter edited by hand.
    CustomerConsent.objects.bulk_create(
        CustomerConsent(customer=c, status=CustomerConsent.Status.APPLIED) for c in present(partner)[:2]
    )
    PartnerCoverage.objects.filter(partner=partner).update(customers=99)

    call_command("recount_coverage", "--all")

    out = capsys.readouterr().out
    assert f"corrected: {partner.code}" in out and "2 partner(s) recounted, 1 corrected" in out
    assert counters(partner) == Coverage(5, 2, 0)
    assert coverage_for([untouched.pk]) == {untouched.pk: Coverage()}
    assert coverage_recount(partner_ids=[partner.pk, untouched.pk]) == []


def test_a_partner_without_counters_is_counted_at_its_first_change(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    customers_sync(partner_id=partner.pk)
    PartnerCoverage.objects.filter(partner=partner).delete()  # as before a bulk load was recounted
    assert coverage_for([partner.pk]) == {}

    customer_consent_apply(customer_id=present(partner)[0].pk, sleep=no_sleep)

    assert counters(partner) == Coverage(5, 1, 0)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_workers_applying_and_a_sync_removing_at_once_leave_exact_counters(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL")
    partner = active_partner(cpv_sim)
    tenant = str(partner.tenant_id)
    cpv_sim.control.add_customers(tenant, 35)  # forty in all
    customers_sync(partner_id=partner.pk)
    customers = present(partner)
    # Every fifth one is refused; a few leave the listing while the workers run.
    for customer in customers[::5]:
        cpv_sim.control.inject_fault(
            "partner_center", status=403, method="POST", path=f"customers/{customer.tenant_id}/{CONSENTS}"
        )
    for customer in customers[1:40:8]:
        cpv_sim.control.remove_customer(tenant, str(customer.tenant_id))
    barrier = threading.Barrier(9)
    errors: list[BaseException] = []

    def work(share: list[Customer]) -> None:
        try:
            barrier.wait()
            for customer in share:
                customer_consent_apply(customer_id=customer.pk, correlation_id=str(uuid.uuid4()), sleep=no_sleep)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    def sync() -> None:
        try:
            barrier.wait()
            customers_sync(partner_id=partner.pk)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(customers[i::8],)) for i in range(8)]
    threads.append(threading.Thread(target=sync))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not errors
    kept = counters(partner)
    assert kept.customers == 35 and kept.failed > 0 and kept.consented > 0
    assert coverage_recount(partner_ids=[partner.pk]) == []
