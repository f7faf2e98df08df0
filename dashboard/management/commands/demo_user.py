from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from partners.services import audit_record


class Command(BaseCommand):
    help = "Create (or reset) the demo staff user with a fresh random password, and print its credentials."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--username", default="demo")

    def handle(self, *args: Any, username: str, **options: Any) -> None:
        password = secrets.token_urlsafe(12)
        User = get_user_model()
        with transaction.atomic():
            user, created = User.objects.get_or_create(username=username)
            user.is_staff = True
            user.is_superuser = True
            user.is_active = True
            user.set_password(password)
            user.save()
            audit_record(
                actor=None,
                action="staff.demo_user_created" if created else "staff.demo_user_reset",
                target=user,
                detail={"username": username},
            )
        self.stdout.write(f"Demo staff user: username {username}  password {password}")
