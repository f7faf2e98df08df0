"""The self-check of the vendor's app registrations: each credential probed, the registration read, Partner Center
asked. Exits 1 when a finding is a problem."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dashboard.app_check import AppReport, Severity, app_check


class Command(BaseCommand):
    help = (
        "Check the control panel's own app registrations: that Entra accepts each configured credential (SHA-256 "
        "thumbprint, expiry), the registration against the required permissions and the callback URLs (with "
        "Application.Read.All), and Partner Center's answer to a partner's token. Exits 1 on a problem."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print a JSON array, one object per app")
        parser.add_argument("--no-partner-center", action="store_true", help="do not call Partner Center")

    def handle(self, *args: Any, **options: Any) -> None:
        reports = app_check(ask_partner_center=not options["no_partner_center"])
        if options["json"]:
            self.stdout.write(json.dumps([_as_json(r) for r in reports], indent=2))
        else:
            for report in reports:
                self._print(report)
        if not reports:
            raise CommandError("No app registration is configured: set CPV_CLIENT_ID and its credentials")
        if any(r.problems for r in reports):
            raise CommandError(f"{sum(len(r.problems) for r in reports)} problem(s) found")

    def _print(self, report: AppReport) -> None:
        self.stdout.write(f"{report.setting} {report.client_id}")
        for c in report.credentials:
            accepted = {True: "accepted", False: "refused", None: "not probed"}[c.accepted]
            ends = f", not after {c.not_after:%Y-%m-%d}" if c.not_after else ""
            thumbprint = f", SHA-256 {c.thumbprint_sha256}" if c.thumbprint_sha256 else ""
            self.stdout.write(f"  credential: {c.label}{thumbprint}{ends}: {accepted}")
        for f in sorted(report.findings, key=lambda f: list(Severity).index(f.severity), reverse=True):
            self.stdout.write(f"  [{f.severity.label}] {f.words}")
            if f.fix:
                self.stdout.write(f"      fix: {f.fix}")


def _as_json(report: AppReport) -> dict[str, Any]:
    return {
        "setting": report.setting,
        "client_id": report.client_id,
        "credentials": [
            {
                "label": c.label,
                "kind": c.kind,
                "thumbprint_sha256": c.thumbprint_sha256 or None,
                "not_after": c.not_after.isoformat() if c.not_after else None,
                "accepted": c.accepted,
            }
            for c in report.credentials
        ],
        "findings": [
            {"kind": str(f.kind), "severity": str(f.severity), "words": f.words, "fix": f.fix} for f in report.findings
        ],
    }
