"""List partners with their token and customer coverage."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from customers.coverage import Coverage
from customers.selectors import coverage_for, proof_counts, without_access_counts
from partners.models import Partner
from partners.permissions import partner_permissions_missing
from tokens.selectors import token_status

NO_COVERAGE = Coverage()


class Command(BaseCommand):
    help = "List partners; with --json, a JSON array (one object per partner) for scripts."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print a JSON array")

    def handle(self, *args: Any, **options: Any) -> None:
        partners = list(Partner.objects.filter(deleted_at__isnull=True).select_related("token").order_by("name", "pk"))
        # The coverage counters the dashboard reads (a partner without counters yet has none).
        coverage = coverage_for([partner.pk for partner in partners])
        without_access = without_access_counts()
        proved = proof_counts()
        rows = []
        for partner in partners:
            pointer = getattr(partner, "token", None)
            counted = coverage.get(partner.pk, NO_COVERAGE)
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
                    # Required permissions the partner's last consent did not grant (it is asked once to consent
                    # again when the list changes); what needs one says so for that partner.
                    "permissions_missing": [p.label for p in partner_permissions_missing(partner)],
                    "customers": counted.customers,
                    "consented_customers": counted.consented,
                    # Customers the GDAP pre-flight currently holds back (ApplicationConsent not spent on them).
                    "customers_without_access": without_access.get(partner.pk, 0),
                    # Applied consents read back in the customer's tenant: found whole, and found with permissions
                    # missing (repaired up to three times, then left for a person).
                    "verified_customers": proved.get(partner.pk, {}).get("verified", 0),
                    "drifted_customers": proved.get(partner.pk, {}).get("drifted", 0),
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
        self.stdout.write(f"{len(rows)} partner{'' if len(rows) == 1 else 's'}")
