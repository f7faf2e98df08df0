"""The API clients' staff pages (web tier): admins register, change, rotate and revoke, each audited; a key is
shown once and stored only as its hash; the API's documentation for staff."""

from __future__ import annotations

import hashlib

import pytest
from django.db import connection

from api.models import ApiClient, ApiKey
from partners.models import AuditEvent, Partner
from tests.factories import client_for

pytestmark = pytest.mark.django_db


def _register(http, **fields):  # type: ignore[no-untyped-def]
    data = {"name": "Provisioning", "audiences": ["partner_center", "graph_partner"], "networks": "", **fields}
    return http.post("/api-clients/", data)


def _every_text_column_holds(value: str) -> bool:
    with connection.cursor() as cursor:
        for table in ("api_apikey", "api_apiclient", "partners_auditevent"):
            cursor.execute(f"SELECT * FROM {table}")  # noqa: S608 - fixed table names
            if any(value in str(row) for row in cursor.fetchall()):
                return True
    return False


def test_an_admin_registers_a_client_and_sees_its_key_once(admin_user) -> None:  # type: ignore[no-untyped-def]
    http = client_for(admin_user)
    partner = Partner.objects.create(name="Contoso", contact_email="c@example.com")
    response = _register(http, partners=[str(partner.code)], networks="203.0.113.0/24\n2001:db8::/48")

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    key = response.context["key"]
    assert key.startswith("cpvk_") and key in response.content.decode()
    client = ApiClient.objects.get(name="Provisioning")
    assert list(client.partners.all()) == [partner]
    assert client.networks == ["2001:db8::/48", "203.0.113.0/24"]
    stored = ApiKey.objects.get(client=client)
    assert stored.digest == hashlib.sha256(key.encode()).hexdigest()
    assert key.startswith(stored.prefix)
    assert not _every_text_column_holds(key)
    audit = AuditEvent.objects.get(action="api_client.created")
    assert audit.actor == admin_user and audit.detail["key_prefix"] == stored.prefix
    # Never again: the client's page shows the prefix only.
    page = http.get(f"/api-clients/{client.code}/").content.decode()
    assert stored.prefix in page and key not in page


def test_a_bad_network_or_no_audience_is_refused_in_words(admin_user) -> None:  # type: ignore[no-untyped-def]
    http = client_for(admin_user)
    response = _register(http, networks="not-a-network")
    assert "is not an IP network" in response.content.decode()
    response = _register(http, audiences=[])
    assert response.context["form"].errors["audiences"]
    assert not ApiClient.objects.exists()


def test_rotate_revoke_a_key_and_revoke_the_client_are_audited(admin_user) -> None:  # type: ignore[no-untyped-def]
    http = client_for(admin_user)
    _register(http)
    client = ApiClient.objects.get()
    first = ApiKey.objects.get()
    rotated = http.post(f"/api-clients/{client.code}/", {"what": "rotate", "overlap_hours": "2"})
    assert rotated.context["key"].startswith("cpvk_")
    first.refresh_from_db()
    assert first.expires_at is not None and first.revoked_at is None
    http.post(f"/api-clients/{client.code}/", {"what": "revoke_key", "key": str(first.pk)})
    first.refresh_from_db()
    assert first.revoked_at is not None
    http.post(f"/api-clients/{client.code}/", {"what": "scope", "all_partners": "on", "audiences": ["graph_customers"]})
    client.refresh_from_db()
    assert client.all_partners and client.audiences == ["graph_customers"]
    http.post(f"/api-clients/{client.code}/", {"what": "revoke"})
    client.refresh_from_db()
    assert client.revoked_at is not None
    assert not ApiKey.objects.filter(revoked_at__isnull=True).exists()
    actions = list(AuditEvent.objects.order_by("pk").values_list("action", flat=True))
    assert actions[-5:] == [
        "api_client.created",
        "api_client.key_rotated",
        "api_client.key_revoked",
        "api_client.changed",
        "api_client.revoked",
    ]


def test_an_entra_client_has_no_key(admin_user) -> None:  # type: ignore[no-untyped-def]
    http = client_for(admin_user)
    app_id = "6f1c3f8e-0d55-4a0e-9a57-5b7c2e0f2d11"
    response = _register(http, entra_app_id=app_id)
    client = ApiClient.objects.get()
    assert response.status_code == 302
    assert client.credential == ApiClient.Credential.ENTRA and str(client.entra_app_id) == app_id
    assert not ApiKey.objects.exists()


def test_only_admins_see_the_clients_and_the_nav_links_them(admin_user, operator) -> None:  # type: ignore[no-untyped-def]
    assert client_for(operator).get("/api-clients/").status_code == 404
    assert 'id="nav-api-clients"' not in client_for(operator).get("/").content.decode()
    assert 'id="nav-api-clients"' in client_for(admin_user).get("/").content.decode()


def test_staff_read_the_apis_documentation(viewer) -> None:  # type: ignore[no-untyped-def]
    http = client_for(viewer)
    page = http.get("/api-clients/docs")
    assert page.status_code == 200 and b"swagger-ui-bundle.js" in page.content
    document = http.get("/api-clients/schema.json").json()
    assert document["openapi"].startswith("3.1")
    assert "/api/v1/partners/{code}/access-tokens" in document["paths"]
