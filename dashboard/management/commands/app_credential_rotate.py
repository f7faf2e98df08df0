"""Rotate the vendor app's certificate with no downtime: addKey, probe, switch, and removeKey after the overlap.
Each step is recorded and audited; run it again to resume a rotation that was cut off or is waiting."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from partners.app_rotation import RotationError, RotationPlan, app_key_rotation_run
from partners.models import AppKeyRotation


class Command(BaseCommand):
    help = (
        "Rotate the app's certificate (CPV_CLIENT_CERTIFICATE's first): add the new one to the registration with "
        "a proof of possession signed by the current one, probe it, switch the configured file to it, and remove "
        "the old one after the overlap window. Run again to resume or to finish after the overlap."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        source = parser.add_mutually_exclusive_group()
        source.add_argument("--certificate", help="a PEM file holding the new private key and certificate")
        source.add_argument("--generate", action="store_true", help="make a new key and self-signed certificate")
        parser.add_argument("--days", type=int, default=365, help="the generated certificate's lifetime")
        parser.add_argument("--overlap-hours", type=float, default=24.0, help="hours before the old key is removed")
        parser.add_argument("--dry-run", action="store_true", help="say what would be done; change nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = app_key_rotation_run(
                actor=None,
                app=settings.CPV_APP,
                new_certificate_path=options["certificate"] or "",
                generate_days=options["days"] if options["generate"] else 0,
                overlap=timedelta(hours=options["overlap_hours"]),
                dry_run=options["dry_run"],
            )
        except RotationError as exc:
            raise CommandError(str(exc)) from None
        if isinstance(result, RotationPlan):
            for number, step in enumerate(result.steps, 1):
                self.stdout.write(f"{number}. {step}")
            return
        self._report(result)

    def _report(self, rotation: AppKeyRotation) -> None:
        self.stdout.write(f"Rotation {rotation.pk}: {rotation.get_step_display()}")
        if rotation.last_error:
            raise CommandError(f"Stopped: {rotation.last_error}")
        if rotation.step == AppKeyRotation.Step.SWITCHED and rotation.overlap_until:
            self.stdout.write(
                f"The old certificate is removed after {rotation.overlap_until:%Y-%m-%d %H:%M} UTC: run again then"
            )
