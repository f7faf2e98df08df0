"""Arbitrary input to the public endpoints: never a 500, never a write when the input is rejected."""

from __future__ import annotations

import uuid
from urllib.parse import quote

import pytest
from django.core.cache import cache
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent.models import ConsentFlow, ConsentFlowEvent
from partners.models import AuditEvent, Partner
from tokens.models import PartnerToken

pytestmark = pytest.mark.django_db

texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300)
fields = st.dictionaries(
    st.sampled_from(["state", "code", "error", "error_description", "session_state", "client_info", "x"]),
    texts,
    max_size=6,
)
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _counts() -> tuple[int, ...]:
    return (
        Partner.objects.count(),
        ConsentFlow.objects.count(),
        ConsentFlowEvent.objects.count(),
        PartnerToken.objects.count(),
        AuditEvent.objects.count(),
    )


@PROPERTY
@given(form=fields, cookie=st.one_of(st.none(), st.text(alphabet="abcdefghijklmnop0123456789-_", max_size=60)))
def test_the_callback_never_fails_and_never_writes_on_arbitrary_input(form: dict[str, str], cookie: str | None) -> None:
    cache.clear()
    client = Client()
    if cookie is not None:
        client.cookies["__Host-cpv-consent"] = cookie
    before = _counts()

    response = client.post("/consent/callback", form)

    assert response.status_code in {400, 429}
    assert _counts() == before


@PROPERTY
@given(
    name=texts,
    email=texts,
    cloud=texts | st.sampled_from(["global", "usgov", "china", "germany"]),
    environment=texts | st.sampled_from(["production", "sandbox"]),
    key=texts | st.just(str(uuid.uuid4())),
)
def test_self_onboarding_never_fails_and_writes_only_valid_partners(
    name: str, email: str, cloud: str, environment: str, key: str
) -> None:
    cache.clear()
    before = Partner.objects.count()

    response = Client().post(
        "/onboard/",
        {"company_name": name, "contact_email": email, "cloud": cloud, "environment": environment, "signup_key": key},
    )

    assert response.status_code in {303, 400}
    if response.status_code == 400:
        assert Partner.objects.count() == before
    else:
        partner = Partner.objects.latest("id")
        assert partner.cloud in {"global", "usgov", "china"} and partner.status == "pending"


@PROPERTY
@given(token=texts)
def test_the_landing_page_never_fails_on_an_arbitrary_link(token: str) -> None:
    cache.clear()
    safe = quote(token, safe="") or "x"

    response = Client().get(f"/consent/i/{safe}/")

    assert response.status_code in {404, 410}


@PROPERTY
@given(token=texts)
def test_starting_from_an_arbitrary_link_never_fails_or_writes(token: str) -> None:
    cache.clear()
    safe = quote(token, safe="") or "x"
    before = _counts()

    response = Client().post(f"/consent/i/{safe}/start")

    assert response.status_code in {404, 410}
    assert _counts() == before


# --- every staff form, as an admin (the role that may use them all) ---------------------------------------

STAFF_FORMS = [
    ("/consent/staff/invite", ["name", "contact_email", "cloud", "environment", "tenant_id", "send_email"]),
    ("/partners/bulk", ["action", "partners", "confirmed", "back"]),
    ("/staff/", ["what", "new-username", "new-email", "new-password", "new-role", "username", "role", "active"]),
]
ACTIONS = ["renew", "sync", "apply", "apply_failed", "reconsent_link", "revoke", "deactivate", "nonsense"]


def _admin_client(django_user_model) -> Client:  # type: ignore[no-untyped-def]
    user = django_user_model.objects.filter(
        username="prop-admin"
    ).first() or django_user_model.objects.create_superuser("prop-admin", "p@example.com", "x" * 20)
    client = Client()
    client.force_login(user)
    return client


def _staff_counts(django_user_model) -> tuple[int, ...]:  # type: ignore[no-untyped-def]
    return (*_counts(), django_user_model.objects.count())


@PROPERTY
@given(form_index=st.integers(0, len(STAFF_FORMS) - 1), values=st.lists(texts, min_size=8, max_size=8))
def test_no_staff_form_fails_or_writes_on_rejected_input(django_user_model, form_index: int, values: list[str]) -> None:  # type: ignore[no-untyped-def]
    cache.clear()
    url, names = STAFF_FORMS[form_index]
    client = _admin_client(django_user_model)
    before = _staff_counts(django_user_model)

    response = client.post(url, dict(zip(names, values, strict=False)))

    assert response.status_code < 500
    if response.status_code >= 400:
        assert _staff_counts(django_user_model) == before


@PROPERTY
@given(action=st.sampled_from(ACTIONS) | texts.filter(lambda t: "/" not in t), reason=texts, confirmed=texts)
def test_no_partner_action_fails_on_arbitrary_input(
    django_user_model, action: str, reason: str, confirmed: str
) -> None:  # type: ignore[no-untyped-def]
    cache.clear()
    partner = Partner.objects.create(name="Prop", contact_email="p@example.com")
    client = _admin_client(django_user_model)

    response = client.post(
        f"/partners/{partner.code}/do/{quote(action, safe='') or 'x'}", {"reason": reason, "confirmed": confirmed}
    )

    assert response.status_code < 500


@PROPERTY
@given(params=st.dictionaries(st.sampled_from(["q", "status", "cloud", "environment", "health", "sort", "page",
                                               "actor", "action", "partner", "since", "until", "days"]),
                              texts, max_size=6))  # fmt: skip
def test_the_list_and_audit_filters_never_fail(django_user_model, params: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    client = _admin_client(django_user_model)

    for url in ("/partners/", "/audit/", "/"):
        assert client.get(url, params).status_code < 500, url
