"""Seed and inspect a control panel whose database the test process does not use (a private PostgreSQL).

`python -m tests.faults.probe seed|report`, with DATABASE_URL, VAULT_KEY and the simulator's variables in the
environment and a JSON payload on stdin; the answer is one line of JSON on stdout. No token is ever printed:
a token is named by its fingerprint as the simulator names it (the first 32 hex digits of its SHA-256).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from datetime import timedelta
from typing import Any


def seed(payload: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Active partners with the given refresh tokens vaulted, each due for renewal."""
    from django.utils import timezone

    from partners.models import Partner
    from partners.services import partner_create
    from tokens.models import PartnerToken
    from tokens.store import partner_token_import

    made = []
    for item in payload:
        partner = partner_create(
            actor=None,
            name=item["name"],
            contact_email=f"contact-{item['tenant_id'][:8]}@partner.example",
            tenant_id=item["tenant_id"],
            status=Partner.Status.PENDING,
        )
        partner_token_import(actor=None, partner=partner, refresh_token=item["refresh_token"])
        made.append({"id": partner.pk, "code": str(partner.code)})
    PartnerToken.objects.update(last_renewed_at=timezone.now() - timedelta(days=8))
    return made


def report(_: Any) -> dict[str, Any]:
    """Every partner's token state, its events, the fingerprint of the token the vault holds for it, and the
    dashboard pages a viewer sees."""
    from django.contrib.auth.models import User
    from django.test import Client
    from django.test.utils import setup_test_environment

    from partners.access import Role
    from partners.services import staff_role_set, staff_roles_sync
    from tokens.models import PartnerToken, TokenEvent
    from tokens.vault import get_vault

    partners = []
    for pointer in PartnerToken.objects.select_related("partner").order_by("partner_id"):
        token = get_vault().read(name=pointer.secret_name, version=pointer.current_version).value.reveal()
        events = list(TokenEvent.objects.filter(partner=pointer.partner).order_by("created_at", "id"))
        partners.append(
            {
                "id": pointer.partner_id,
                "code": str(pointer.partner.code),
                "status": pointer.partner.status,
                "generation": pointer.generation,
                "failure_count": pointer.failure_count,
                "last_error": pointer.last_error,
                "renewal_queued_at": pointer.renewal_queued_at.isoformat() if pointer.renewal_queued_at else None,
                "events": [{"kind": e.kind, "message": e.message} for e in events],
                "fingerprint": hashlib.sha256(token.encode()).hexdigest()[:32],
            }
        )
    setup_test_environment()
    staff_roles_sync()
    user, _ = User.objects.get_or_create(username="fault-viewer")
    staff_role_set(actor=None, user=user, role=Role.VIEWER)
    client = Client()
    client.force_login(user)
    pages = {"overview": client.get("/").content.decode()}
    for item in partners:
        pages[item["code"]] = client.get(f"/partners/{item['code']}/").content.decode()
    return {"partners": partners, "pages": pages}


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cpv.settings")
    import django

    django.setup()
    command = sys.argv[1]
    payload = json.loads(sys.stdin.read() or "null")
    result = {"seed": seed, "report": report}[command](payload)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
