"""Failures recorded before the error kind was stored get the kind their message says, read once, here."""

import re

from django.db import migrations

# The message patterns the words were read from before the kind was stored (the first match wins).
PATTERNS = [
    (r"Not applied: the partner is", "partner_inactive"),
    (r"has no stored token|is not active|re-consent needed|is deactivated|is invited|is pending", "no_token"),
    (r"answered 401 .*900421|code 900421|MFA required", "mfa_required"),
    (r"invalid_client|AADSTS(7000215|7000222|700027)", "invalid_client"),
    (r"AADSTS53003", "conditional_access"),
    (r"AADSTS(700082|70008|70043|50173|50132|50133)|invalid_grant|interaction_required", "reconsent_required"),
    (r"answered 401", "unauthorized"),
    (r"answered 403", "forbidden"),
    (r"answered 404", "not_found"),
    (r"answered 429|throttl", "throttled"),
    (r"answered 5\d\d|timeout|timed out|connection|unavailable", "unavailable"),
    (r"answered 400", "bad_request"),
]


def backfill(apps, schema_editor):  # type: ignore[no-untyped-def]
    CustomerConsent = apps.get_model("customers", "CustomerConsent")
    rows = CustomerConsent.objects.exclude(last_error="").filter(error_kind="").only("pk", "last_error")
    for row in rows.iterator(chunk_size=2000):
        kind = next((k for p, k in PATTERNS if re.search(p, row.last_error, flags=re.IGNORECASE)), "other")
        CustomerConsent.objects.filter(pk=row.pk).update(error_kind=kind)


class Migration(migrations.Migration):
    dependencies = [("customers", "0002_customerconsent_error_kind")]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
