"""What `vault_rotate_key` and `vault_reseal` print of their report, in one place."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from tokens.vault.services import RotationReport


def rows_report(
    command: BaseCommand, report: RotationReport, *, key: str, done: str, current: str, again: str, success: str
) -> None:
    """Print the counts (`key`: the key id's label, `done`/`current`: the rows changed and left), each failure, then
    `success`; raise CommandError with `again` (what to keep before running again) when a row failed."""
    command.stdout.write(f"{key}: {report.key_id}")
    command.stdout.write(f"rows: {report.total}")
    command.stdout.write(f"{done}: {report.rotated}")
    command.stdout.write(f"{current}: {report.already_current}")
    command.stdout.write(f"failed: {report.failed}")
    for failure in report.failures:
        command.stdout.write(f"  {failure}")
    if report.failed:
        raise CommandError(f"{report.failed} row(s) could not be {done}; {again}")
    command.stdout.write(command.style.SUCCESS(success))
