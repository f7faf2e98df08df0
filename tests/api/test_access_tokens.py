"""POST /api/v1/partners/{code}/access-tokens: a token from the cached, locked service, audited without the token,
never stored by a cache; every refusal a problem document that says why."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from api.models import ApiClient, ApiKey
from api.services import api_client_revoke, api_key_rotate
from cpv.logs import redact
from customers.models import CustomerConsent
from customers.services import desired_grants
from partners.models import AuditEvent, Customer, Partner
from tests.api.helpers import api_client, caller, post_token
from tests.factories import active_partner, pointer_of

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"


def _problem(response, status: int, kind: str) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert body["type"].endswith("/" + kind)
    assert body["detail"]
    return body


def test_it_hands_out_a_graph_token_in_the_partners_tenant(sim_settings) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(sim_settings)
    response = post_token(caller(api_client().key), partner.code, {"audience": "graph"})
    assert response.status_code == 200, response.content
    assert response.json()["audience"] == "graph"
    assert "User.Read" in response.json()["scopes"]


def test_it_hands_out_a_partner_center_token_audited_without_the_token(sim_settings) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(sim_settings)
    issued = api_client()
    response = post_token(caller(issued.key), partner.code, {"audience": "partner_center"})

    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert set(body) == {"access_token", "expires_on", "tenant", "audience", "scopes"}
    assert body["tenant"] == str(partner.tenant_id)
    assert body["audience"] == "partner_center"
    assert body["expires_on"] > timezone.now().timestamp()
    assert "refresh" not in response.content.decode().lower()
    audit = AuditEvent.objects.get(action="api.access_token_issued")
    assert audit.partner == partner
    assert audit.detail["client"] == "Billing"
    assert audit.detail["audience"] == "partner_center"
    assert audit.detail["tenant"] == str(partner.tenant_id)
    assert body["access_token"] not in str(audit.detail)
    # The second hand-out comes from the cache, and is audited too.
    again = post_token(caller(issued.key), partner.code, {"audience": "partner_center"})
    assert again.json()["access_token"] == body["access_token"]
    assert AuditEvent.objects.filter(action="api.access_token_issued").count() == 2
    issued.client.refresh_from_db()
    assert issued.client.last_used_at is not None


def test_no_answer_carries_a_refresh_token(sim_settings) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(sim_settings)
    issued = api_client()
    http = caller(issued.key)
    answers = [
        post_token(http, partner.code, {"audience": "partner_center"}),
        post_token(http, partner.code, {"audience": "graph"}),
        http.get("/api/v1/partners"),
        http.get(f"/api/v1/partners/{partner.code}/customers"),
    ]
    refresh_tokens = sim_settings.control.issued_secrets("refresh_token")
    assert refresh_tokens, "the simulator records the refresh tokens it issued"
    for answer in answers:
        text = answer.content.decode()
        assert "refresh_token" not in text
        assert not [token for token in refresh_tokens if token in text]
    assert all(a["Cache-Control"] == "no-store" for a in answers[:2])


def test_a_partner_the_client_may_not_see_is_a_404_like_one_that_does_not_exist(sim_settings) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(sim_settings)
    other = Partner.objects.create(name="Other", contact_email="o@example.com", status=Partner.Status.ACTIVE)
    issued = api_client(partners=[other])
    hidden = _problem(post_token(caller(issued.key), partner.code, {"audience": "partner_center"}), 404, "not-found")
    missing = _problem(post_token(caller(issued.key), uuid.uuid4(), {"audience": "partner_center"}), 404, "not-found")
    assert hidden["title"] == missing["title"]
    assert not AuditEvent.objects.filter(action="api.access_token_issued").exists()


def test_an_audience_the_client_may_not_use_is_a_403(sim_settings) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(sim_settings)
    issued = api_client(audiences=[ApiClient.Audience.GRAPH_PARTNER])
    _problem(post_token(caller(issued.key), partner.code, {"audience": "partner_center"}), 403, "audience-not-allowed")
    customer_tenant = _customer(partner).tenant_id
    _problem(
        post_token(caller(issued.key), partner.code, {"audience": "graph", "tenant": str(customer_tenant)}),
        403,
        "audience-not-allowed",
    )


@pytest.mark.parametrize(
    ("change", "kind", "state"),
    [
        ({"status": Partner.Status.RECONSENT_NEEDED}, "consent-needs-renewing", "reconsent_needed"),
        ({"status": Partner.Status.DEACTIVATED}, "partner-not-active", "deactivated"),
        ({"mfa_compliant": False}, "mfa-not-compliant", "mfa_not_compliant"),
    ],
)
def test_a_partner_in_a_state_that_gives_no_token_is_a_409_with_the_state(sim_settings, change, kind, state) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(sim_settings)
    Partner.objects.filter(pk=partner.pk).update(**change)
    issued = api_client()
    body = _problem(post_token(caller(issued.key), partner.code, {"audience": "partner_center"}), 409, kind)
    assert body["state"] == state
    assert not AuditEvent.objects.filter(action="api.access_token_issued").exists()


def _customer(partner: Partner, **consent: object) -> Customer:
    now = timezone.now()
    customer = Customer.objects.create(
        partner=partner, tenant_id=uuid.uuid4(), company_name="Fabrikam", first_seen_at=now, last_seen_at=now
    )
    if consent:
        CustomerConsent.objects.create(customer=customer, **consent)
    return customer


@pytest.mark.parametrize(
    ("consent", "kind", "state"),
    [
        ({}, "customer-not-verified", "unverified"),
        (
            {"status": CustomerConsent.Status.APPLIED, "proof": CustomerConsent.Proof.DRIFTED},
            "customer-not-verified",
            "drifted",
        ),
        (
            {"status": CustomerConsent.Status.PENDING, "access": CustomerConsent.Access.NO_RELATIONSHIP},
            "no-gdap-access",
            "no_relationship",
        ),
    ],
)
def test_a_customer_tenant_not_verified_or_without_gdap_is_a_409(sim_settings, consent, kind, state) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(sim_settings)
    customer = _customer(partner, **consent)
    issued = api_client()
    body = _problem(
        post_token(caller(issued.key), partner.code, {"audience": "graph", "tenant": str(customer.tenant_id)}),
        409,
        kind,
    )
    assert body["state"] == state


def test_a_tenant_that_is_not_the_partners_customer_is_a_404(sim_settings) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(sim_settings)
    issued = api_client()
    response = post_token(caller(issued.key), partner.code, {"audience": "graph", "tenant": str(uuid.uuid4())})
    _problem(response, 404, "not-found")


def test_partner_center_in_another_tenant_and_bad_input_are_422(sim_settings) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(sim_settings)
    http = caller(api_client().key)
    tenant = str(_customer(partner).tenant_id)
    _problem(post_token(http, partner.code, {"audience": "partner_center", "tenant": tenant}), 422, "invalid-request")
    _problem(post_token(http, partner.code, {"audience": "exchange"}), 422, "invalid-request")
    _problem(post_token(http, partner.code, {"audience": "graph", "tenant": "contoso"}), 422, "invalid-request")
    _problem(post_token(http, partner.code, "{not json"), 400, "bad-request")
    assert not AuditEvent.objects.filter(action="api.access_token_issued").exists()


def test_a_consent_without_graph_is_a_409_and_partner_center_keeps_working(sim_settings) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(sim_settings)
    http = caller(api_client().key)
    # Entra's answer for a resource the consent does not cover (AADSTS65001).
    sim_settings.control.inject_entra_error(65001, grant_type="refresh_token")
    body = _problem(post_token(http, partner.code, {"audience": "graph"}), 409, "permission-missing")
    assert body["state"] == "permission_missing"
    assert post_token(http, partner.code, {"audience": "partner_center"}).status_code == 200


def test_a_missing_unknown_or_revoked_credential_is_a_401(sim_settings) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(sim_settings)
    issued = api_client()
    for http in (caller(None), caller("cpvk_" + "x" * 43), caller("not-a-credential")):
        body = _problem(post_token(http, partner.code, {"audience": "partner_center"}), 401, "unauthenticated")
        assert "Bearer" in body["detail"] or "credential" in body["detail"] or "key" in body["detail"]
    api_client_revoke(actor=None, client=issued.client)
    _problem(post_token(caller(issued.key), partner.code, {"audience": "partner_center"}), 401, "unauthenticated")
    assert pointer_of(partner).current_version  # the partner's token is untouched


def test_a_rotated_key_works_until_its_overlap_ends(sim_settings) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(sim_settings)
    issued = api_client()
    rotated = api_key_rotate(actor=None, client=issued.client, overlap=timedelta(hours=1))
    assert rotated.key and rotated.key != issued.key
    for key in (issued.key, rotated.key):
        assert post_token(caller(key), partner.code, {"audience": "partner_center"}).status_code == 200
    ApiKey.objects.filter(pk=issued.api_key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))  # type: ignore[union-attr]
    old = post_token(caller(issued.key), partner.code, {"audience": "partner_center"})
    body = _problem(old, 401, "unauthenticated")
    assert "overlap" in body["detail"]
    assert post_token(caller(rotated.key), partner.code, {"audience": "partner_center"}).status_code == 200


def test_a_client_outside_its_networks_is_a_403(sim_settings) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(sim_settings)
    issued = api_client(networks=["203.0.113.0/24"])
    _problem(post_token(caller(issued.key), partner.code, {"audience": "partner_center"}), 403, "network-refused")
    inside = post_token(caller(issued.key), partner.code, {"audience": "partner_center"}, REMOTE_ADDR="203.0.113.9")
    assert inside.status_code == 200


def test_each_client_is_rate_limited_on_its_own(sim_settings, settings) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_API_RATE_LIMIT = 2
    partner = active_partner(sim_settings)
    first, second = api_client(name="One"), api_client(name="Two")
    http = caller(first.key)
    statuses = [post_token(http, partner.code, {"audience": "partner_center"}).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    limited = post_token(caller(first.key), partner.code, {"audience": "partner_center"})
    assert int(_problem(limited, 429, "rate-limited") and limited["Retry-After"]) > 0
    assert post_token(caller(second.key), partner.code, {"audience": "partner_center"}).status_code == 200


def test_it_hands_out_a_graph_token_in_a_verified_customers_tenant(sim_settings) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(sim_settings)
    world_customer = sim_settings.world.partners[0].customers[0]
    # What ApplicationConsent left in the customer's tenant (and the proof read verified).
    sim_settings.control.add_consent(
        world_customer.tenant_id,
        application_id=sim_settings.env["CPV_CLIENT_ID"],
        grants=desired_grants()["applicationGrants"],
    )
    now = timezone.now()
    customer = Customer.objects.create(
        partner=partner, tenant_id=world_customer.tenant_id, company_name="A", first_seen_at=now, last_seen_at=now
    )
    CustomerConsent.objects.create(
        customer=customer,
        status=CustomerConsent.Status.APPLIED,
        proof=CustomerConsent.Proof.VERIFIED,
        access=CustomerConsent.Access.OK,
    )
    issued = api_client(audiences=[ApiClient.Audience.GRAPH_CUSTOMERS])
    response = post_token(caller(issued.key), partner.code, {"audience": "graph", "tenant": world_customer.tenant_id})

    assert response.status_code == 200, response.content
    assert response.json()["tenant"] == str(world_customer.tenant_id).lower()
    audit = AuditEvent.objects.get(action="api.access_token_issued")
    assert audit.detail["tenant"] == str(world_customer.tenant_id).lower()
    # The key itself is token-shaped for the logs' redaction, the last line of defence.
    assert issued.key not in redact(f"Authorization: {issued.key}")


def test_an_invited_partner_without_a_tenant_yet_is_a_409_with_its_state() -> None:
    partner = Partner.objects.create(name="New", contact_email="n@example.com", status=Partner.Status.INVITED)
    response = post_token(caller(api_client().key), partner.code, {"audience": "graph"})
    body = _problem(response, 409, "partner-not-active")
    assert body["state"] == "invited"


def test_entra_throttling_is_a_503_with_retry_after_and_nothing_audited(sim_settings) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(sim_settings)
    sim_settings.control.inject_entra_error(50196, status=429, retry_after=7, grant_type="refresh_token")
    response = post_token(caller(api_client().key), partner.code, {"audience": "partner_center"})
    _problem(response, 503, "unavailable")
    assert int(response["Retry-After"]) > 0
    assert not AuditEvent.objects.filter(action="api.access_token_issued").exists()
    partner.refresh_from_db()
    assert partner.status == Partner.Status.ACTIVE
