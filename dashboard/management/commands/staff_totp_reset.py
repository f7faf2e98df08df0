"""`manage.py staff_totp_reset USERNAME`: the audited last resort when the only admin lost their authenticator app."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError

from partners.services import PartnerError
from partners.staff import staff_totp_reset


class Command(BaseCommand):
    help = (
        "Remove a staff account's authenticator apps, so that its next password sign-in sets one up again "
        "(audited). For an admin locked out of the dashboard; admins reset others' on the staff page."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("username")

    def handle(self, *args: Any, username: str, **options: Any) -> None:
        user = User.objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No staff account is called {username!r}.")
        try:
            removed = staff_totp_reset(actor=None, user=user)  # the system: whoever runs commands on the server
        except PartnerError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Removed {removed} authenticator app{'' if removed == 1 else 's'} of {username}.")
