"""How the tests build what they need: partners in each state, staff users with a role and their browsers, and portal
sessions. Each thing has one way to be built, here."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

from django.test import Client
from django.utils import timezone

from consent.portal import SESSION_KEY
from cpv.sessions import STARTED_SESSION_KEY
from customers.coverage import coverage_recount
from customers.models import CustomerConsent
from customers.services import desired_grants, grants_hash
from partners import access
from partners.access import Role
from partners.models import Customer, Partner
from partners.services import partner_create, staff_role_set, staff_roles_sync
from simulator.testing import RunningSimulator
from tests.simulated import partner_user
from tokens.models import PartnerToken
from tokens.store import partner_token_import


def active_partner(sim: RunningSimulator, *, index: int = 0, name: str | None = None, **user_flags: Any) -> Partner:
    """A partner of the simulator's world whose admin has consented: a refresh token issued by the simulator,
    vaulted through `partner_token_import`, and the partner active."""
    world_partner = sim.world.partners[index]
    flags = user_flags or {"global_admin": True, "admin_agent": True, "mfa_registered": True}
    user = partner_user(sim, partner=index, **flags)
    partner = partner_create(
        actor=None,
        name=name or world_partner.name,
        contact_email=f"contact-{uuid.uuid4().hex[:6]}@partner.example",
        tenant_id=str(world_partner.tenant_id),
        status=Partner.Status.PENDING,
    )
    # As the product's consent asks (`.default`: the registration's whole list), where the user may grant it; a user
    # who is not an administrator cannot grant the admin-only permissions, so asks for Partner Center's alone.
    scope = (
        "https://api.partnercenter.microsoft.com/.default openid profile offline_access"
        if flags.get("global_admin")
        else None
    )
    refresh_token = sim.control.issue_refresh_token(user.oid, client_id=sim.env["CPV_CLIENT_ID"], scope=scope)
    partner_token_import(actor=None, partner=partner, refresh_token=refresh_token)
    partner.refresh_from_db()
    return partner


def pointer_of(partner: Partner) -> PartnerToken:
    return PartnerToken.objects.get(partner=partner)


PASSWORD = "a-long-test-password"


def make_staff(django_user_model: Any, username: str, role: Role) -> Any:
    staff_roles_sync()
    user = django_user_model.objects.create_user(username=username, password=PASSWORD)
    if role != Role.NONE:
        staff_role_set(actor=None, user=user, role=role)
    return user


def signed_in(client: Client, user: Any) -> Client:
    """`client` signed in as `user` the way a password sign-in without an authenticator app leaves a session
    (CPV_STAFF_TOTP=enrolled, the default outside production)."""
    client.force_login(user)
    session = client.session
    session[access.SIGN_IN_SESSION_KEY] = {"method": access.PASSWORD, "no_totp": True}
    session[STARTED_SESSION_KEY] = int(time.time())
    session.save()
    return client


def client_for(user: Any) -> Client:
    return signed_in(Client(), user)


def portal_client(
    partner: Partner, *, user_oid: str | None = None, global_admin: bool = True, mfa: bool = True
) -> Client:
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
        "mfa": mfa,
    }
    session[STARTED_SESSION_KEY] = int(time.time())
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
            error_kind=CustomerConsent.ErrorKind.FORBIDDEN if i < failed else "",
        )
        for i, c in enumerate(made)
    )
    # Rows written in bulk bypass the services that keep the coverage counters: count them, as after a bulk load.
    coverage_recount(partner_ids=[partner.pk])
    return partner


def once(real: Any, error: BaseException, *, after: bool = False) -> Any:
    """`real`, except that its first call raises `error` (before it runs, or `after` it has run)."""
    calls: list[int] = []

    def call(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1 and not after:
            raise error
        result = real(*args, **kwargs)
        if len(calls) == 1:
            raise error
        return result

    return call
