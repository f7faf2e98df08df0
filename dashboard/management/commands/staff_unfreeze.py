"""`manage.py staff_unfreeze USERNAME`: release a password sign-in frozen by wrong codes (audited), for when no other
admin can."""

from __future__ import annotations

from django.contrib.auth.models import User

from dashboard.management.staff_account import StaffAccountCommand
from partners.staff import staff_unfreeze


class Command(StaffAccountCommand):
    help = (
        "Release a staff account's password sign-in, frozen after too many wrong authenticator codes given after its "
        "right password (audited). Another admin can do the same on the staff page."
    )

    def act(self, user: User) -> str:
        staff_unfreeze(actor=None, user=user)  # the system: whoever runs commands on the server
        return f"Released the password sign-in of {user.username} (its count of wrong codes is back to 0)."
