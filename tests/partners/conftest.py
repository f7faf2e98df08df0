"""Staff with each role, portal sessions for partners' users, and data in bulk for the dashboard's tests."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from consent.portal import SESSION_KEY
from customers.coverage import coverage_recount
from customers.models import CustomerConsent
from customers.services import desired_grants, grants_hash
from partners.access import Role
from partners.models import Customer, Partner
from partners.services import staff_role_set, staff_roles_sync
from tokens.models import PartnerToken

PASSWORD = "a-long-test-password"


@pytest.fixture
def roles(db):  # type: ignore[no-untyped-def]
    # Transactional tests flush the data migration's rows; this puts them back.
    return staff_roles_sync()


def make_staff(django_user_model: Any, username: str, role: Role) -> Any:
    staff_roles_sync()
    user = django_user_model.objects.create_user(username=username, password=PASSWORD)
    if role != Role.NONE:
        staff_role_set(actor=None, user=user, role=role)
    return user


@pytest.fixture
def viewer(django_user_model, roles):  # type: ignore[no-untyped-def]
    return make_staff(django_user_model, "vera-viewer", Role.VIEWER)


@pytest.fixture
def operator(django_user_model, roles):  # type: ignore[no-untyped-def]
    return make_staff(django_user_model, "otto-operator", Role.OPERATOR)


@pytest.fixture
def admin_user(django_user_model, roles):  # type: ignore[no-untyped-def]
    return make_staff(django_user_model, "ada-admin", Role.ADMIN)


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def portal_client(partner: Partner, *, user_oid: str | None = None, global_admin: bool = True) -> Client:
    """A browser whose session holds a verified portal identity for a user of `partner`'s tenant."""
    client = Client()
    session = client.session
    session[SESSION_KEY] = {
        "tenant_id": str(partner.tenant_id),
        "user_oid": user_oid or str(uuid.uuid4()),
        "name": f"Admin of {partner.name}",
        "username": f"admin@{partner.name.lower().replace(' ', '')}.example",
        "cloud": partner.cloud,
        "global_admin": global_admin,
    }
    session.save()
    return client


def active_partner_with_data(
    name: str, *, customers: int = 3, failed: int = 1, age_days: int = 3, tenant: uuid.UUID | None = None
) -> Partner:
    """An active partner with a token row (no vault secret: pages only read the pointer) and customers,
    `failed` of which failed ApplicationConsent and the rest applied."""
    now = timezone.now()
    partner = Partner.objects.create(
        name=name,
        contact_email=f"{uuid.uuid4().hex[:8]}@example.com",
        tenant_id=tenant or uuid.uuid4(),
        default_domain=f"{name.lower().replace(' ', '')}.example",
        status=Partner.Status.ACTIVE,
    )
    PartnerToken.objects.create(
        partner=partner,
        secret_name=f"cpv-rt-{partner.code}",
        current_version="v1",
        version_count=3,
        fingerprint="ab" * 32,
        obtained_at=now - timedelta(days=age_days),
        last_renewed_at=now - timedelta(days=age_days),
    )
    made = Customer.objects.bulk_create(
        Customer(
            partner=partner,
            tenant_id=uuid.uuid4(),
            company_name=f"{name} customer {i:04d}",
            domain=f"c{i}.{partner.default_domain}",
            first_seen_at=now,
            last_seen_at=now,
        )
        for i in range(customers)
    )
    current = grants_hash(desired_grants())
    CustomerConsent.objects.bulk_create(
        CustomerConsent(
            customer=c,
            status=CustomerConsent.Status.FAILED if i < failed else CustomerConsent.Status.APPLIED,
            grants_hash="" if i < failed else current,
            last_error="ApplicationConsent in x: Partner Center answered 403 to POST /v1/customers/x"
            if i < failed
            else "",
        )
        for i, c in enumerate(made)
    )
    # Rows written in bulk bypass the services that keep the coverage counters: count them, as after a bulk load.
    coverage_recount(partner_ids=[partner.pk])
    return partner


@pytest.fixture
def sim_settings(sim, settings):  # type: ignore[no-untyped-def]
    """The product pointed at the simulator, with a local vault of the test's own (as tests/consent's cpv_sim)."""
    import os

    from tests.simulated import sim_app, sim_cloud
    from tokens.vault import reset_vault

    settings.CPV_CLOUD_CONFIG = sim_cloud(sim)
    settings.CPV_APP = sim_app(sim)
    settings.CPV_BASE_URL = "http://127.0.0.1:8000"
    settings.VAULT_BACKEND = "local"
    settings.VAULT_KEYS = [os.urandom(32)]
    reset_vault()
    yield sim
    reset_vault()
