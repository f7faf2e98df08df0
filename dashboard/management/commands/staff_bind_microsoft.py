"""`manage.py staff_bind_microsoft USERNAME OBJECT_ID`: bind (or `--none` unbind) a staff account's Entra object id,
audited; where the first admin of a Microsoft-only deployment starts."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError

from partners.services import PartnerError, staff_identity_set


class Command(BaseCommand):
    help = "Bind a staff account to its Microsoft Entra object id in the vendor's tenant (audited)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("username")
        parser.add_argument("object_id", nargs="?", help="the account's object id in Entra ID (a GUID)")
        parser.add_argument("--none", action="store_true", help="unbind the account instead")

    def handle(self, *args: Any, username: str, object_id: str | None, none: bool, **options: Any) -> None:
        user = User.objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No staff account is called {username!r}.")
        if none == bool(object_id):
            raise CommandError("Give the account's object id, or --none to unbind it.")
        try:
            oid = uuid.UUID(object_id) if object_id else None
        except ValueError:
            raise CommandError(f"{object_id!r} is not an object id (a GUID, as Entra admin center shows it).") from None
        try:
            staff_identity_set(actor=None, user=user, object_id=oid)  # the system: whoever runs commands here
        except PartnerError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"{username} signs in with the Microsoft account {oid}." if oid else f"{username} is unbound."
        )
