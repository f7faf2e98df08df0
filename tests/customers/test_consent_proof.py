"""Proof in each customer tenant against the simulator's customer directories, with the real msal and Graph over
HTTPS: applied → verified with no Partner Center request; each kind of drift → repaired → verified; grants one per
page and in another order still verify; a throttled Graph defers, never fails; a tenant without GDAP access is
unverifiable with the reason; repairs are bounded; staff act on one customer; the command and the counts."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from customers.models import CustomerConsent
from customers.proof import (
    MAX_REPAIRS,
    REREAD_AFTER_CONFLICT,
    consent_verify,
    consents_verify,
    customer_act,
    customers_drifted,
)
from customers.selectors import customers_of, proof_counts
from customers.services import (
    VERIFIED_RECENTLY,
    application_consent_batch,
    customers_needing_consent,
    customers_sync,
)
from customers.words import proof_words
from partners.models import AuditEvent, Customer, Partner
from tests.factories import active_partner
from tokens.access_tokens import cache_forget

pytestmark = pytest.mark.django_db
Proof = CustomerConsent.Proof
GRAPH_APP = "00000003-0000-0000-c000-000000000000"
EXCHANGE_APP = "00000002-0000-0ff1-ce00-000000000000"


def _applied(sim, count: int = 0) -> tuple[Partner, list[Customer]]:  # type: ignore[no-untyped-def]
    partner = active_partner(sim)
    if count:
        sim.control.add_customers(str(partner.tenant_id), count)
    customers_sync(partner_id=partner.pk)
    ids = customers_needing_consent(partner_id=partner.pk)
    application_consent_batch(partner_id=partner.pk, customer_ids=ids, correlation_id="test")
    customers = list(Customer.objects.filter(partner=partner).order_by("pk"))
    assert {_state(c).status for c in customers} == {CustomerConsent.Status.APPLIED}
    return partner, customers


def _state(customer: Customer) -> CustomerConsent:
    return CustomerConsent.objects.get(customer=customer)


def _pc(sim, method: str) -> list[dict]:  # type: ignore[no-untyped-def]
    return sim.control.log(service="partner_center", method=method, path="applicationconsents")


def test_applied_consents_verify_with_graph_alone(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner, customers = _applied(cpv_sim)
    assert {_state(c).proof for c in customers} == {""}
    cpv_sim.control.clear_log()

    tally = consents_verify(customer_ids=[c.pk for c in customers])

    assert tally.verified == len(customers) and tally.drifted == tally.missing == tally.repaired == 0
    assert cpv_sim.control.log(service="partner_center") == []
    for customer in customers:
        state = _state(customer)
        assert (
            state.proof == Proof.VERIFIED and state.verified_at is not None and state.proof_due_at > state.verified_at
        )
        assert proof_words(state) == "The app is in the customer's tenant with every permission it was granted."
    # Three Graph reads a customer: the app's service principal, its grants, Microsoft Graph's service principal.
    assert tally.graph_requests == 3 * len(customers)
    assert AuditEvent.objects.filter(partner=partner, action="customer.consent_proved").count() == len(customers)
    # Read again: nothing changed, so no audit row and still no Partner Center request.
    consents_verify(customer_ids=[c.pk for c in customers])
    assert AuditEvent.objects.filter(partner=partner, action="customer.consent_proved").count() == len(customers)
    assert cpv_sim.control.log(service="partner_center") == []


@pytest.mark.parametrize(
    "drift",
    [
        pytest.param(lambda sim, t: sim.control.narrow_grant(t, ["Directory.Read.All"]), id="grant-narrowed"),
        pytest.param(lambda sim, t: sim.control.delete_grants(t), id="grants-deleted"),
        pytest.param(lambda sim, t: sim.control.delete_service_principal(t), id="service-principal-deleted"),
    ],
)
def test_each_kind_of_drift_is_found_repaired_and_verified(cpv_sim, drift) -> None:  # type: ignore[no-untyped-def]
    partner, customers = _applied(cpv_sim)
    consents_verify(customer_ids=[c.pk for c in customers])
    broken, healthy = customers[0], customers[1:]
    drift(cpv_sim, str(broken.tenant_id))
    cpv_sim.control.clear_log()

    found = consent_verify(customer_id=broken.pk, repair=False).state
    assert found.proof in (Proof.DRIFTED, Proof.MISSING)
    assert cpv_sim.control.log(service="partner_center") == []
    if found.proof == Proof.DRIFTED:
        assert found.proof_detail["drift"][0]["resource"] == GRAPH_APP
        assert "Microsoft Graph lacks" in proof_words(found)

    tally = consents_verify(customer_ids=[c.pk for c in customers])

    assert tally.verified == len(customers) and tally.repaired == 1
    # One DELETE and one POST for the drifted customer; none for the healthy ones.
    assert [p["path"].lower() for p in _pc(cpv_sim, "POST")] == [
        f"/v1/customers/{broken.tenant_id}/applicationconsents"
    ]
    assert len(_pc(cpv_sim, "DELETE")) == 1
    state = _state(broken)
    assert state.proof == Proof.VERIFIED and state.repairs == 0
    assert AuditEvent.objects.filter(partner=partner, action="customer.consent_reset").count() == 1
    assert {_state(c).proof for c in healthy} == {Proof.VERIFIED}


def test_grants_one_per_page_and_in_another_order_still_verify(cpv_sim, settings) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_APPLICATION_GRANTS = {
        "displayName": "Vendor",
        "applicationGrants": [
            {
                "enterpriseApplicationId": GRAPH_APP,
                "scope": "Domain.ReadWrite.All,User.ReadWrite.All,Directory.Read.All",
            },
            {"enterpriseApplicationId": EXCHANGE_APP, "scope": "Exchange.Manage"},
        ],
    }
    _, customers = _applied(cpv_sim)
    customer = customers[0]
    # The tenant holds the same scopes in another order, with stray spaces, and Graph answers a grant a page.
    cpv_sim.control.add_consent(
        str(customer.tenant_id),
        application_id=cpv_sim.env["CPV_CLIENT_ID"],
        grants=[
            {
                "enterpriseApplicationId": GRAPH_APP,
                "scope": " Directory.Read.All, user.readwrite.all,Domain.ReadWrite.All",
            },
            {"enterpriseApplicationId": EXCHANGE_APP, "scope": "Exchange.Manage"},
        ],
    )
    cpv_sim.control.set_settings(graph_page_size=1)
    cpv_sim.control.clear_log()

    outcome = consent_verify(customer_id=customer.pk)

    assert outcome.state.proof == Proof.VERIFIED and outcome.repaired == 0
    grant_pages = cpv_sim.control.log(service="graph", path="oauth2PermissionGrants")
    assert len(grant_pages) == 2


def test_a_throttled_graph_defers_the_read_and_fails_nothing(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    _, customers = _applied(cpv_sim)
    customer = customers[0]
    cpv_sim.control.throttle_graph(str(customer.tenant_id), times=1, retry_after=120)

    outcome = consent_verify(customer_id=customer.pk)

    state = outcome.state
    assert outcome.deferred and state.proof == "" and state.proof_checked_at is None
    assert state.status == CustomerConsent.Status.APPLIED and state.last_error == ""
    assert 110 <= (state.proof_due_at - timezone.now()).total_seconds() <= 125
    assert _pc(cpv_sim, "DELETE") == []
    # Later, Graph answers: verified.
    assert consent_verify(customer_id=customer.pk).state.proof == Proof.VERIFIED


def test_a_tenant_without_gdap_access_is_unverifiable_with_the_reason(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner, customers = _applied(cpv_sim)
    customer = customers[0]
    cpv_sim.control.gdap_state(str(partner.tenant_id), str(customer.tenant_id), "none")
    cpv_sim.control.clear_log()

    state = consent_verify(customer_id=customer.pk).state

    assert state.proof == Proof.UNVERIFIABLE
    assert state.proof_reason == CustomerConsent.ProofReason.NO_ACCESS
    assert "no access to this customer's tenant" in proof_words(state)
    assert cpv_sim.control.log(service="partner_center") == []
    # The partner's own consent is not what failed: the partner stays active.
    assert Partner.objects.get(pk=partner.pk).status == Partner.Status.ACTIVE


def test_repairs_that_do_not_hold_stop_at_the_bound(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    _, customers = _applied(cpv_sim)
    customer = customers[0]
    # Every POST succeeds in Partner Center but the tenant keeps losing the grants (a policy removing them).
    cpv_sim.control.delete_grants(str(customer.tenant_id))
    cpv_sim.control.inject_fault(
        "partner_center", status=201, method="POST", path=r".*/applicationconsents", body={}, times=10
    )
    cpv_sim.control.clear_log()

    outcome = consent_verify(customer_id=customer.pk)

    assert outcome.repaired == MAX_REPAIRS
    state = _state(customer)
    assert state.proof in (Proof.DRIFTED, Proof.MISSING) and state.repairs == MAX_REPAIRS
    assert len(_pc(cpv_sim, "POST")) == MAX_REPAIRS
    # The next read reports it and sends nothing more.
    assert consent_verify(customer_id=customer.pk).repaired == 0
    assert len(_pc(cpv_sim, "POST")) == MAX_REPAIRS
    assert f"{MAX_REPAIRS} repairs" in proof_words(_state(customer))


def test_staff_verify_apply_again_or_reset_one_customer(cpv_sim, operator, viewer) -> None:  # type: ignore[no-untyped-def]
    partner, customers = _applied(cpv_sim)
    customer = customers[0]
    cpv_sim.control.clear_log()

    assert customer_act(customer_id=customer.pk, action="verify").state.proof == Proof.VERIFIED
    assert cpv_sim.control.log(service="partner_center") == []
    customer_act(customer_id=customer.pk, action="reapply")
    assert (len(_pc(cpv_sim, "POST")), len(_pc(cpv_sim, "DELETE"))) == (1, 0)
    customer_act(customer_id=customer.pk, action="reset")
    assert (len(_pc(cpv_sim, "POST")), len(_pc(cpv_sim, "DELETE"))) == (2, 1)
    assert _state(customer).proof == Proof.VERIFIED

    # From the partner's page: an operator's POST is audited and queued; a viewer's is refused; another tenant is
    # no customer of the partner.
    url = f"/partners/{partner.code}/customers/{customer.tenant_id}/verify"
    assert client_for(viewer).post(url).status_code == 403
    assert client_for(operator).post(url).status_code == 302
    assert AuditEvent.objects.filter(partner=partner, action="customer.verify_requested").count() == 1
    assert (
        client_for(operator).post(f"/partners/{partner.code}/customers/{partner.tenant_id}/verify").status_code == 404
    )
    assert (
        client_for(operator).post(f"/partners/{partner.code}/customers/{customer.tenant_id}/erase").status_code == 302
    )


def test_the_command_and_the_counts(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner, customers = _applied(cpv_sim)
    cpv_sim.control.narrow_grant(str(customers[0].tenant_id), ["User.ReadWrite.All"])

    with pytest.raises(CommandError, match="1 customer"):
        call_command("verify_consents", "--partner", str(partner.code), "--no-repair")
    rows = json.loads(_call("partners", "--json"))
    assert (rows[0]["verified_customers"], rows[0]["drifted_customers"]) == (len(customers) - 1, 1)

    out = _call("verify_consents", "--all")
    assert f"{len(customers)} verified" in out and "1 repaired" in out
    rows = json.loads(_call("partners", "--json"))
    assert (rows[0]["verified_customers"], rows[0]["drifted_customers"]) == (len(customers), 0)


def client_for(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client


def _call(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_a_workload_the_tenant_lacks_is_left_out_and_added_once_it_is_there(cpv_sim, settings) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_APPLICATION_GRANTS = {
        "displayName": "Vendor",
        "applicationGrants": [
            {"enterpriseApplicationId": GRAPH_APP, "scope": "Directory.Read.All"},
            {"enterpriseApplicationId": EXCHANGE_APP, "scope": "Exchange.Manage"},
        ],
    }
    partner = active_partner(cpv_sim)
    customers_sync(partner_id=partner.pk)
    customers = list(Customer.objects.filter(partner=partner).order_by("pk"))
    unlicensed = customers[0]
    cpv_sim.control.remove_workload(str(unlicensed.tenant_id), "exchange")
    cpv_sim.control.clear_log()

    application_consent_batch(partner_id=partner.pk, customer_ids=[c.pk for c in customers], correlation_id="test")

    # Refused whole (400), then sent with Microsoft Graph alone: the customer is applied, the others whole.
    assert {_state(c).status for c in customers} == {CustomerConsent.Status.APPLIED}
    posts = [p for p in _pc(cpv_sim, "POST") if str(unlicensed.tenant_id) in p["path"].lower()]
    assert [p["status"] for p in posts] == [400, 201]
    assert [g["enterpriseApplicationId"] for g in _state(unlicensed).grants["applicationGrants"]] == [GRAPH_APP]
    assert customers_needing_consent(partner_id=partner.pk) == []

    tally = consents_verify(customer_ids=[c.pk for c in customers])
    assert tally.verified == len(customers) and tally.repaired == 0
    state = _state(unlicensed)
    assert state.proof_detail["unavailable"] == [EXCHANGE_APP]
    assert proof_words(state).endswith("Not available in this tenant (not granted): Office 365 Exchange Online.")
    assert proof_counts([partner.pk])[partner.pk]["not_available"] == 1
    assert list(customers_of(partner, state="not_available")) == [unlicensed]

    # The customer licenses Exchange Online: the next read finds it and the consent is sent again with it.
    cpv_sim.control.add_workload(str(unlicensed.tenant_id), "exchange")
    cpv_sim.control.clear_log()
    outcome = consent_verify(customer_id=unlicensed.pk)
    assert outcome.repaired == 1 and outcome.state.proof == Proof.VERIFIED
    assert "unavailable" not in outcome.state.proof_detail
    assert len(outcome.state.grants["applicationGrants"]) == 2
    assert [p["status"] for p in _pc(cpv_sim, "POST")] == [201]


def test_a_scope_the_token_no_longer_carries_is_drift_even_when_graph_can_no_longer_be_read(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner, customers = _applied(cpv_sim)
    customer = customers[0]
    # Directory.Read.All is what reads the app in the tenant: without it Graph refuses, but the token says it.
    cpv_sim.control.narrow_grant(str(customer.tenant_id), ["Directory.Read.All"])
    cache_forget(partner_id=partner.pk)
    cpv_sim.control.clear_log()

    outcome = consent_verify(customer_id=customer.pk, repair=False)

    assert outcome.state.proof == Proof.DRIFTED and outcome.graph_requests == 0
    assert outcome.state.proof_detail["drift"][0]["missing"] == ["directory.read.all"]
    assert cpv_sim.control.log(service="graph") == []
    # Repaired, it verifies.
    assert consent_verify(customer_id=customer.pk).state.proof == Proof.VERIFIED


def test_staff_repair_every_drifted_customer_from_the_overview(cpv_sim, operator, viewer) -> None:  # type: ignore[no-untyped-def]
    _, customers = _applied(cpv_sim)
    for customer in customers[:2]:
        cpv_sim.control.narrow_grant(str(customer.tenant_id), ["User.ReadWrite.All"])
    consents_verify(customer_ids=[c.pk for c in customers], repair=False)
    assert customers_drifted() == [c.pk for c in customers[:2]]
    page = client_for(operator).get("/").content.decode()
    assert 'id="repair-drifted"' in page and "Repair the 2 drifted or missing customers" in page
    assert 'id="repair-drifted"' not in client_for(viewer).get("/").content.decode()
    assert client_for(viewer).post("/customers/repair-drifted").status_code == 403

    response = client_for(operator).post("/customers/repair-drifted")

    assert response.status_code == 302
    assert AuditEvent.objects.filter(action="customers.repair_requested", detail__customers=2).count() == 1
    # What the queued tasks do, run here: the two are repaired, the others cost nothing.
    cpv_sim.control.clear_log()
    tally = consents_verify(customer_ids=customers_drifted())
    assert (tally.verified, tally.repaired) == (2, 2)
    assert len(_pc(cpv_sim, "POST")) == 2
    assert customers_drifted() == []


def test_a_repair_whose_post_answers_409_is_read_again_later_not_posted_again(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    _, customers = _applied(cpv_sim)
    customer = customers[0]
    cpv_sim.control.narrow_grant(str(customer.tenant_id), ["User.ReadWrite.All"])
    # Partner Center's record of the consent outlives its DELETE: every POST answers 409.
    cpv_sim.control.inject_fault(
        "partner_center", status=409, method="POST", path="applicationconsents", times=None,
        body={"code": "2000", "description": "Permission entry already exists."},
    )  # fmt: skip
    cpv_sim.control.clear_log()
    before = timezone.now()

    outcome = consent_verify(customer_id=customer.pk)

    assert outcome.repaired == 1
    assert len(_pc(cpv_sim, "DELETE")) == 1 and len(_pc(cpv_sim, "POST")) == 1
    state = _state(customer)
    assert state.proof_due_at is not None and state.proof_due_at >= before + REREAD_AFTER_CONFLICT


def test_a_customer_verified_recently_is_not_sent_applicationconsent_again(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner, customers = _applied(cpv_sim, count=2)
    consents_verify(customer_ids=[c.pk for c in customers])
    assert {_state(c).proof for c in customers} == {Proof.VERIFIED}
    # The last call failed (a staff "apply again" that Partner Center refused), yet the tenant showed the app
    # with these grants within the day: a sweep sends nothing there.
    CustomerConsent.objects.filter(customer__in=customers).update(status=CustomerConsent.Status.FAILED)
    assert customers_needing_consent(partner_id=partner.pk) == []
    # Read more than VERIFIED_RECENTLY ago, or verified against other grants: sent again.
    stale, changed = customers[0], customers[1]
    CustomerConsent.objects.filter(customer=stale).update(
        proof_checked_at=timezone.now() - VERIFIED_RECENTLY - timedelta(minutes=1)
    )
    CustomerConsent.objects.filter(customer=changed).update(grants_hash="older grants")
    assert customers_needing_consent(partner_id=partner.pk) == sorted([stale.pk, changed.pk])
