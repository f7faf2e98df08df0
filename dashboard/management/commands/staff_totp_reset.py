"""`manage.py staff_totp_reset USERNAME`: the audited last resort when the only admin lost their authenticator app."""

from __future__ import annotations

from django.contrib.auth.models import User

from dashboard.management.staff_account import StaffAccountCommand
from partners.staff import staff_totp_reset


class Command(StaffAccountCommand):
    help = (
        "Remove a staff account's authenticator apps, so that its next password sign-in sets one up again "
        "(audited). For an admin locked out of the dashboard; admins reset others' on the staff page."
    )

    def act(self, user: User) -> str:
        removed = staff_totp_reset(actor=None, user=user)  # the system: whoever runs commands on the server
        return f"Removed {removed} authenticator app{'' if removed == 1 else 's'} of {user.username}."
