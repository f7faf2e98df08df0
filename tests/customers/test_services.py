"""Customer sync and ApplicationConsent in-process against the simulator; the commands that run them."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from customers.models import CustomerConsent
from customers.services import customer_consent_apply, customers_needing_consent, customers_sync
from partners.models import AuditEvent, Customer
from tests.factories import active_partner

pytestmark = pytest.mark.django_db


def test_a_sync_of_2500_customers_across_pages_is_complete_and_exact_and_marks_removals(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    tenant = str(partner.tenant_id)
    cpv_sim.control.add_customers(tenant, 2495)
    world = {c["tenantId"].lower(): c for c in _world_customers(cpv_sim, tenant)}
    assert len(world) == 2500

    result = customers_sync(partner_id=partner.pk)

    assert (result.listed, result.created, result.removed) == (2500, 2500, 0)
    pages = cpv_sim.control.log(service="partner_center", path="/customers$")
    assert len(pages) == 5 and all(p["status"] == 200 for p in pages)
    assert len({p["request_headers"]["MS-CorrelationId"] for p in pages}) == 1
    assert all("MS-ContinuationToken" in p["request_headers"] for p in pages[1:])
    stored = {str(c.tenant_id): c for c in Customer.objects.filter(partner=partner)}
    assert set(stored) == set(world)
    sample = next(iter(world.values()))
    assert stored[sample["tenantId"].lower()].company_name == sample["companyName"]

    gone = list(world)[:3]
    for customer in gone:
        cpv_sim.control.remove_customer(tenant, customer)
    again = customers_sync(partner_id=partner.pk)

    assert (again.listed, again.created, again.removed) == (2497, 0, 3)
    removed = set(
        Customer.objects.filter(partner=partner, removed_at__isnull=False).values_list("tenant_id", flat=True)
    )
    assert {str(t) for t in removed} == set(gone)
    # Every customer listed again was seen by the second sync (unchanged: written in one statement).
    assert again.updated == 0
    seen = set(Customer.objects.filter(partner=partner, removed_at__isnull=True).values_list("last_seen_at", flat=True))
    first_seen = set(Customer.objects.filter(partner=partner).values_list("first_seen_at", flat=True))
    assert len(seen) == 1 and len(first_seen) == 1 and seen.pop() > first_seen.pop()


def _world_customers(sim, tenant: str) -> list[dict]:  # type: ignore[no-untyped-def]
    for partner in sim.control.world()["partners"]:
        if partner["tenant_id"].lower() == tenant:
            return [{"tenantId": c["tenant_id"], "companyName": c["company_name"]} for c in partner["customers"]]
    raise LookupError(tenant)


def test_application_consent_is_idempotent_and_reapplies_changed_grants(cpv_sim, settings) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    customers_sync(partner_id=partner.pk)
    first, second = Customer.objects.filter(partner=partner).order_by("pk")[:2]
    app_id = settings.CPV_APP.client_id
    # One customer already has the consent: Partner Center answers 409, which is success.
    cpv_sim.control.add_consent(str(second.tenant_id), application_id=app_id)

    for customer in (first, second):
        assert customer_consent_apply(customer_id=customer.pk).status == CustomerConsent.Status.APPLIED
    assert customer_consent_apply(customer_id=first.pk).status == CustomerConsent.Status.APPLIED

    posts = cpv_sim.control.log(service="partner_center", method="POST", path="applicationconsents")
    assert [p["status"] for p in posts] == [201, 409]
    assert app_id in cpv_sim.control.consents(str(first.tenant_id))

    settings.CPV_APPLICATION_GRANTS = {
        "displayName": "Control Panel Vendor",
        "applicationGrants": [
            {"enterpriseApplicationId": "00000003-0000-0000-c000-000000000000", "scope": "Directory.Read.All"}
        ],
    }
    assert customers_needing_consent(partner_id=partner.pk)
    state = customer_consent_apply(customer_id=first.pk)

    calls = cpv_sim.control.log(service="partner_center", path="applicationconsents")[-2:]
    assert [(c["method"], c["status"]) for c in calls] == [("DELETE", 200), ("POST", 201)]
    assert state.grants["applicationGrants"][0]["scope"] == "Directory.Read.All"
    consent = cpv_sim.control.consents(str(first.tenant_id))[app_id]
    assert "Directory.Read.All" in json.dumps(consent)


def test_a_429_keeps_the_request_id_and_pauses_for_retry_after(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    customers_sync(partner_id=partner.pk)
    customer = Customer.objects.filter(partner=partner).first()
    assert customer is not None
    cpv_sim.control.inject_fault(
        "partner_center", status=429, method="POST", path="applicationconsents", headers={"Retry-After": "1"}
    )

    state = customer_consent_apply(customer_id=customer.pk)

    assert state.status == CustomerConsent.Status.APPLIED
    posts = cpv_sim.control.log(service="partner_center", method="POST", path="applicationconsents")
    assert [p["status"] for p in posts] == [429, 201]
    assert posts[0]["request_headers"]["MS-RequestId"] == posts[1]["request_headers"]["MS-RequestId"]
    # Retry-After was honoured: the second POST came at least a second after the first (real time).
    assert _log_seconds(posts[1]) - _log_seconds(posts[0]) >= 0.95


@pytest.mark.parametrize(
    ("status", "body", "kind", "words"),
    [
        (403, {"code": "403", "description": "Forbidden"}, CustomerConsent.ErrorKind.FORBIDDEN,
         "AdminAgents group, and in a GDAP security group"),
        (404, {"code": "600", "description": "Customer not found."}, CustomerConsent.ErrorKind.NOT_FOUND,
         "does not know this customer"),
        (400, {"code": "400", "description": "Bad request"}, CustomerConsent.ErrorKind.BAD_REQUEST,
         "check the application grants"),
    ],
)  # fmt: skip
def test_a_refused_consent_stores_its_kind_and_is_worded_from_it(cpv_sim, status, body, kind, words) -> None:  # type: ignore[no-untyped-def]
    from customers.words import consent_error_words

    partner = active_partner(cpv_sim)
    customers_sync(partner_id=partner.pk)
    customer = Customer.objects.filter(partner=partner).first()
    assert customer is not None
    cpv_sim.control.inject_fault("partner_center", status=status, method="POST", path="applicationconsents", body=body)

    state = customer_consent_apply(customer_id=customer.pk)

    assert (state.status, state.error_kind) == (CustomerConsent.Status.FAILED, kind)
    assert words in consent_error_words(state)
    # The words come from the kind, not from the message: the same message with another kind says otherwise.
    state.error_kind = CustomerConsent.ErrorKind.THROTTLED
    assert words not in consent_error_words(state)


def test_a_success_clears_the_error_kind(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    customers_sync(partner_id=partner.pk)
    customer = Customer.objects.filter(partner=partner).first()
    assert customer is not None
    cpv_sim.control.inject_fault("partner_center", status=403, method="POST", path="applicationconsents")
    assert customer_consent_apply(customer_id=customer.pk).error_kind == CustomerConsent.ErrorKind.FORBIDDEN

    state = customer_consent_apply(customer_id=customer.pk)

    assert (state.status, state.error_kind, state.last_error) == (CustomerConsent.Status.APPLIED, "", "")


def _log_seconds(entry: dict[str, object]) -> float:
    from datetime import datetime

    return datetime.fromisoformat(str(entry["time"])).timestamp()


def test_a_stale_listing_removes_no_customer_a_newer_one_has_seen(cpv_sim, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from django.utils import timezone

    import customers.services

    partner = active_partner(cpv_sim)
    customers_sync(partner_id=partner.pk)
    gone = Customer.objects.filter(partner=partner).first()
    assert gone is not None
    cpv_sim.control.remove_customer(str(partner.tenant_id), str(gone.tenant_id))
    # A sync whose listing started before the last one was written: it must not mark anyone removed.
    real_now = timezone.now
    calls = iter([real_now() - timedelta(minutes=5)])
    monkeypatch.setattr(customers.services.timezone, "now", lambda: next(calls, None) or real_now())

    customers_sync(partner_id=partner.pk)
    assert Customer.objects.get(pk=gone.pk).removed_at is None

    monkeypatch.setattr(customers.services.timezone, "now", real_now)
    customers_sync(partner_id=partner.pk)
    assert Customer.objects.get(pk=gone.pk).removed_at is not None


def test_the_commands_print_a_summary_and_partners_json(cpv_sim, capsys) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)

    call_command("sync_customers", "--partner", str(partner.code))
    call_command("apply_consents", "--all")
    call_command("renew_tokens", "--all")
    call_command("partners", "--json")

    out = capsys.readouterr()
    assert "5 listed" in out.out and "ApplicationConsent: 5 consented" in out.out and "1 not_due" in out.out
    # The command's batch is audited once, with its counts, as the workers' are.
    batch = AuditEvent.objects.get(action="partner.consents_applied")
    assert batch.partner == partner and batch.detail["consented"] == 5 and batch.detail["tried"] == 5
    assert "1/1" in out.err
    rows = json.loads(out.out[out.out.index("[") :])
    assert rows[0]["mfa_checked_at"]
    assert rows == [
        {
            "code": str(partner.code),
            "name": partner.name,
            "tenant_id": str(partner.tenant_id),
            "cloud": partner.cloud,
            "environment": partner.environment,
            "status": "active",
            "status_reason": "",
            "token_status": "healthy",
            "mfa_compliant": True,
            "mfa_checked_at": rows[0]["mfa_checked_at"],
            "last_renewed_at": rows[0]["last_renewed_at"],
            # An imported token's grants are not known: the permissions beyond Partner Center's count as missing.
            "permissions_missing": [
                "Microsoft Graph User.Read",
                "Microsoft Graph RoleManagement.Read.Directory",
                "Microsoft Graph DelegatedAdminRelationship.Read.All",
                "Microsoft Graph GroupMember.Read.All",
            ],
            "customers": 5,
            "consented_customers": 5,
            "customers_without_access": 0,
            "verified_customers": 0,
            "drifted_customers": 0,
        }
    ]


def test_renew_tokens_exits_non_zero_when_a_renewal_fails(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    cpv_sim.control.revoke_user(cpv_sim.world.partners[0].users[0].oid)

    with pytest.raises(CommandError, match="1 renewal"):
        call_command("renew_tokens", "--partner", str(partner.code), "--force")


def test_work_queued_against_another_database_ends_quietly(caplog) -> None:  # type: ignore[no-untyped-def]
    from customers import tasks as customer_tasks

    # A broker folder or queue that outlived its database (reset, or shared with a test run) holds ids this
    # database never had: those messages finish without an error or a retry.
    assert customer_tasks.customers_sync.apply(kwargs={"partner_id": 987654}).get() == {
        "partner_id": 987654,
        "outcome": "gone",
    }
    assert customer_tasks.application_consent_apply.apply(kwargs={"customer_id": 987654}).get() == {
        "customer_id": 987654,
        "status": "gone",
    }
    assert "customer sync of partner 987654: no such partner in the database" in caplog.text
    assert "ApplicationConsent for customer 987654: no such customer in the database" in caplog.text


def test_each_clients_error_is_stored_as_the_kind_it_names() -> None:
    from customers.services import error_kind_of
    from microsoft import identity, partner_center
    from microsoft.throttle import ThrottleTimeout
    from tokens.access_tokens import TokenUnavailable
    from tokens.vault import VaultError

    Kind = CustomerConsent.ErrorKind
    cases = [
        (partner_center.MfaRequired("x", status=401), Kind.MFA_REQUIRED),
        (partner_center.Throttled("x", status=429), Kind.THROTTLED),
        (partner_center.Transient("x", status=503), Kind.UNAVAILABLE),
        (partner_center.Unauthorized("x", status=401), Kind.UNAUTHORIZED),
        (partner_center.Forbidden("x", status=403), Kind.FORBIDDEN),
        (partner_center.NotFound("x", status=404), Kind.NOT_FOUND),
        (partner_center.PartnerCenterError("x", status=400), Kind.BAD_REQUEST),
        (partner_center.PartnerCenterError("x", status=418), Kind.OTHER),
        (ThrottleTimeout("x"), Kind.THROTTLED),
        (TokenUnavailable("x"), Kind.NO_TOKEN),
        (identity.ReconsentRequired("x"), Kind.RECONSENT_REQUIRED),
        (identity.MfaRequired("x"), Kind.MFA_REQUIRED),
        (identity.ConditionalAccessBlocked("x"), Kind.CONDITIONAL_ACCESS),
        (identity.InvalidClient("x"), Kind.INVALID_CLIENT),
        (identity.IdentityMisconfigured("x"), Kind.INVALID_CLIENT),
        (identity.Transient("x"), Kind.UNAVAILABLE),
        (identity.NoAccessToTenant("x"), Kind.OTHER),
        (VaultError("x"), Kind.OTHER),
    ]
    assert [error_kind_of(exc) for exc, _ in cases] == [kind for _, kind in cases]
