"""Factories: partners in the states the tests need, made through the project's services."""

from __future__ import annotations

import uuid
from typing import Any

from partners.models import Partner
from partners.services import partner_create
from simulator.testing import RunningSimulator
from tests.simulated import partner_user
from tokens.models import PartnerToken
from tokens.renewal import partner_token_import


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
    refresh_token = sim.control.issue_refresh_token(user.oid, client_id=sim.env["CPV_CLIENT_ID"])
    partner_token_import(actor=None, partner=partner, refresh_token=refresh_token)
    partner.refresh_from_db()
    return partner


def pointer_of(partner: Partner) -> PartnerToken:
    return PartnerToken.objects.get(partner=partner)
