"""Arbitrary input to the public endpoints: never a 500, never a write when the input is rejected."""

from __future__ import annotations

import uuid
from urllib.parse import quote

import pytest
from django.core.cache import cache
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent.models import ConsentFlow, ConsentFlowEvent, PartnerToken
from partners.models import AuditEvent, Partner

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
