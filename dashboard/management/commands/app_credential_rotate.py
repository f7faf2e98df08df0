"""Rotate the vendor app's certificate with no downtime: addKey, probe, switch, and removeKey after the overlap.
Each step is recorded and audited; run it again to resume a rotation that was cut off or is waiting."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from partners.app_rotation import (
    RotationError,
    RotationPlan,
    app_key_rotation_continue,
    app_key_rotation_start,
    certificate_generate,
    rotation_open,
)
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
        app = settings.CPV_APP
        rotation = rotation_open(app.client_id)
        try:
            if rotation is None:
                started = self._start(app, options)
                if isinstance(started, RotationPlan):
                    for number, step in enumerate(started.steps, 1):
                        self.stdout.write(f"{number}. {step}")
                    return
                rotation = started
            rotation = app_key_rotation_continue(actor=None, rotation=rotation)
        except RotationError as exc:
            raise CommandError(str(exc)) from None
        self._report(rotation)

    def _start(self, app: Any, options: dict[str, Any]) -> AppKeyRotation | RotationPlan:
        path = options["certificate"]
        if options["generate"]:
            current = next((c.certificate_path for c in app.credentials if c.certificate_path), "")
            if not current:
                raise CommandError("No certificate is configured (CPV_CLIENT_CERTIFICATE)")
            target = Path(current).with_name(Path(current).name + ".new")
            if not options["dry_run"]:
                certificate_generate(target, common_name=f"CPV app {app.client_id}", days=options["days"])
            path = str(target)
        if not path:
            raise CommandError("No rotation is under way: give --certificate PATH or --generate to start one")
        if options["dry_run"] and options["generate"]:
            self.stdout.write(f"would generate a new key and certificate at {path}, valid {options['days']} days")
            return RotationPlan(steps=[])
        return app_key_rotation_start(
            actor=None,
            app=app,
            new_certificate_path=path,
            overlap=timedelta(hours=options["overlap_hours"]),
            dry_run=options["dry_run"],
        )

    def _report(self, rotation: AppKeyRotation) -> None:
        self.stdout.write(f"Rotation {rotation.pk}: {rotation.get_step_display()}")
        if rotation.last_error:
            raise CommandError(f"Stopped: {rotation.last_error}")
        if rotation.step == AppKeyRotation.Step.SWITCHED and rotation.overlap_until:
            self.stdout.write(
                f"The old certificate is removed after {rotation.overlap_until:%Y-%m-%d %H:%M} UTC: run again then"
            )
