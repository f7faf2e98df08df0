"""What the background commands share: choosing partners, a text progress bar, a summary."""

from __future__ import annotations

import sys
import uuid
from typing import Any, TextIO

from django.core.management.base import CommandError, CommandParser

from partners.models import Partner


def add_partner_arguments(parser: CommandParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--partner", metavar="CODE", help="one partner, by its code (a UUID)")
    group.add_argument("--all", action="store_true", help="every active partner")


def chosen_partners(options: dict[str, Any]) -> list[Partner]:
    if options.get("partner"):
        try:
            code = uuid.UUID(options["partner"])
        except ValueError:
            raise CommandError(f"{options['partner']!r} is not a partner code (a UUID)") from None
        partner = Partner.objects.filter(code=code).first()
        if partner is None:
            raise CommandError(f"no partner with code {code}")
        return [partner]
    return list(Partner.objects.filter(status=Partner.Status.ACTIVE).order_by("pk"))


class Progress:
    """`[#####.....] 5/10 label` on one line of stderr, rewritten in place on a terminal."""

    def __init__(self, total: int, *, stream: TextIO | None = None, width: int = 30) -> None:
        self.total = max(total, 0)
        self.done = 0
        self.stream = stream or sys.stderr
        self.width = width

    def step(self, label: str = "") -> None:
        self.done += 1
        filled = self.width * self.done // self.total if self.total else self.width
        line = f"[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} {label}"[:110]
        end = "\r" if self.stream.isatty() and self.done < self.total else "\n"
        self.stream.write(line + end)
        self.stream.flush()
