from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from consent.services import partner_invite
from cpv.clouds import PARTNER_CLOUD_CHOICES
from partners.models import Partner
from partners.services import PartnerError


class Command(BaseCommand):
    help = "Create a partner and its invitation; email it, and print the invitation URL on the last line."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--name", required=True, help="the partner's company name")
        parser.add_argument("--email", required=True, help="the partner contact who receives the link")
        parser.add_argument("--cloud", default="global", choices=[c for c, _ in PARTNER_CLOUD_CHOICES])
        parser.add_argument("--environment", default="production", choices=Partner.Environment.values)
        parser.add_argument("--tenant", default=None, help="pin the invitation to this tenant id")
        parser.add_argument("--no-email", action="store_true", help="print the link without emailing it")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            invitation = partner_invite(
                actor=None,
                name=options["name"],
                contact_email=options["email"],
                cloud=options["cloud"],
                environment=options["environment"],
                tenant_id=options["tenant"],
                send_email=not options["no_email"],
            )
        except PartnerError as exc:
            raise CommandError(str(exc)) from None
        partner = invitation.partner
        self.stderr.write(f"Invited {partner.name} (partner {partner.code}, {partner.cloud}, {partner.environment}).")
        self.stdout.write(invitation.url)
