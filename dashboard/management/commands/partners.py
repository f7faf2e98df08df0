"""List partners with their token and customer coverage."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db.models import Count, Q

from customers.models import CustomerConsent
from partners.models import Partner
from tokens.models import PartnerToken
from tokens.selectors import token_status


class Command(BaseCommand):
    help = "List partners; with --json, a JSON array (one object per partner) for scripts."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print a JSON array")

    def handle(self, *args: Any, **options: Any) -> None:
        partners = Partner.objects.order_by("name", "pk").annotate(
            customer_count=Count("customers", filter=Q(customers__removed_at__isnull=True), distinct=True),
            consented_count=Count(
                "customers",
                filter=Q(
                    customers__removed_at__isnull=True,
                    customers__application_consent__status=CustomerConsent.Status.APPLIED,
                ),
                distinct=True,
            ),
        )
        pointers = {p.partner_id: p for p in PartnerToken.objects.all()}
        rows = []
        for partner in partners:
            pointer = pointers.get(partner.pk)
            rows.append(
                {
                    "code": str(partner.code),
                    "name": partner.name,
                    "tenant_id": str(partner.tenant_id) if partner.tenant_id else None,
                    "cloud": partner.cloud,
                    "environment": partner.environment,
                    "status": partner.status,
                    "status_reason": partner.status_reason,
                    "token_status": token_status(partner, pointer),
                    # Partner Center's last isMfaCompliant for the partner (null: not seen yet), and when.
                    "mfa_compliant": partner.mfa_compliant,
                    "mfa_checked_at": partner.mfa_checked_at.isoformat() if partner.mfa_checked_at else None,
                    "last_renewed_at": pointer.last_renewed_at.isoformat()
                    if pointer and pointer.last_renewed_at
                    else None,
                    "customers": partner.customer_count,
                    "consented_customers": partner.consented_count,
                }
            )
        if options["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        for row in rows:
            self.stdout.write(
                f"{row['code']}  {row['status']:<16} token {row['token_status']:<8} "
                f"customers {row['consented_customers']}/{row['customers']}  {row['name']}"
            )
        self.stdout.write(f"{len(rows)} partner(s)")
