"""`manage.py staff_unfreeze USERNAME`: release a password sign-in frozen by wrong codes (audited), for when no other
admin can."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError

from partners.services import PartnerError
from partners.staff import staff_unfreeze


class Command(BaseCommand):
    help = (
        "Release a staff account's password sign-in, frozen after too many wrong authenticator codes given after its "
        "right password (audited). Another admin can do the same on the staff page."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("username")

    def handle(self, *args: Any, username: str, **options: Any) -> None:
        user = User.objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No staff account is called {username!r}.")
        try:
            staff_unfreeze(actor=None, user=user)  # the system: whoever runs commands on the server
        except PartnerError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Released the password sign-in of {username} (its count of wrong codes is back to 0).")
