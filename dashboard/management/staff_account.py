"""What the server's staff-account commands (`staff_totp_reset`, `staff_unfreeze`) share: one USERNAME, an audited
service acting as the system, a line saying what it did."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError

from partners.services import PartnerError


class StaffAccountCommand(BaseCommand):
    """Subclasses give `help` and `act`, which runs the service on the account and returns the line to print."""

    def act(self, user: User) -> str:
        raise NotImplementedError

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("username")

    def handle(self, *args: Any, username: str, **options: Any) -> None:
        user = User.objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No staff account is called {username!r}.")
        try:
            done = self.act(user)
        except PartnerError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(done)
