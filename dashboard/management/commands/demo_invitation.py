from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from consent.services import partner_invite
from partners.invitations import invitation_url
from partners.models import Partner

DEMO_PARTNER = "Contoso Partners (demo)"


class Command(BaseCommand):
    help = "Make sure the demo has an invited partner, and print its consent link."

    def handle(self, *args: Any, **options: Any) -> None:
        partner = Partner.objects.filter(name=DEMO_PARTNER).first()
        if partner is None:
            partner = partner_invite(
                actor=None, name=DEMO_PARTNER, contact_email="admin@contoso.example", send_email=False
            ).partner
        purpose = "reconsent" if partner.status == Partner.Status.ACTIVE else "invite"
        self.stdout.write(f"Try a partner's consent: {invitation_url(partner=partner, purpose=purpose)}")
        self.stdout.write(f"Self-onboarding: {settings.CPV_BASE_URL}/onboard/")
