"""A partner's token pointer: which vault version holds its refresh token, and the moves of that pointer.

The caller holds the PartnerToken row's lock (`select_for_update`) and commits; the version moved away from is
disabled in the vault after the commit.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from django.conf import settings
from django.db import connection
from django.db.models import Case, Field, Value, When
from django.db.models.functions import Cast

from partners.models import Partner
from tokens.models import PartnerToken, TokenEvent
from tokens.vault import VaultError, get_vault

if TYPE_CHECKING:
    from tokens.store import Obtained

logger = logging.getLogger(__name__)


def token_event(partner: Partner, event_kind: str, message: str, *, save: bool = True, **detail: Any) -> TokenEvent:
    """A line of the partner's token history (what happened to its token, for staff); written unless `save` is
    False (a batch writes its events together)."""
    event = TokenEvent(partner=partner, kind=event_kind, message=message[:500], detail=detail)
    if save:
        event.save(force_insert=True)
    return event


def token_fingerprint(token: str) -> str:
    """An HMAC of a token: tells tokens apart in the database and on the dashboard without storing them."""
    key = hashlib.sha256(f"cpv.token-fingerprint:{settings.SECRET_KEY}".encode()).digest()
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()


def pointer_move(
    pointer: PartnerToken,
    *,
    version: str,
    version_count: int,
    token_value: str,
    now: datetime,
    obtained: Obtained | None = None,
    save: bool = True,
) -> tuple[str, ...]:
    """Point a partner's token row at a new vault version, clearing any recorded failure.

    `obtained` marks a token from a consent (or an import) rather than a renewal, and says where it came from.
    The caller holds the row's lock and commits; afterwards the previous version, and any returned one, must be
    disabled. With `save` False the row is only changed in memory, for the caller to
    write its POINTER_MOVED columns (a batch of renewals writes all its rows at once). Returns versions
    superseded besides the previous one.
    """
    old = pointer.current_version
    superseded: tuple[str, ...] = ()
    if pointer.previous_version and not pointer.previous_disabled and pointer.previous_version != old:
        superseded = (pointer.previous_version,)
    pointer.previous_version = old
    pointer.previous_disabled = not old
    pointer.current_version = version
    pointer.version_count = version_count
    pointer.fingerprint = token_fingerprint(token_value)
    pointer.generation += 1
    pointer.last_renewed_at = now
    pointer.failure_count = 0
    pointer.last_error = ""
    pointer.last_error_kind = ""
    pointer.next_attempt_at = None
    if obtained is not None:
        pointer.obtained_at = now
        pointer.consent_flow_id = obtained.flow_id
        pointer.consented_by_oid = obtained.user_oid
        pointer.consented_by_name = obtained.user_name
        pointer.scopes = " ".join(obtained.scopes)[:1000]
    if save:
        pointer.save(update_fields=[*POINTER_MOVED, *(POINTER_OBTAINED if obtained is not None else ())])
    else:
        pointer.updated_at = now  # a bulk update does not apply auto_now
    return superseded


# The columns pointer_move changes (only these are written: renewal is the hot path of the workers).
POINTER_MOVED = (
    "previous_version",
    "previous_disabled",
    "current_version",
    "version_count",
    "fingerprint",
    "generation",
    "last_renewed_at",
    "failure_count",
    "last_error",
    "last_error_kind",
    "next_attempt_at",
    "updated_at",
)


POINTER_OBTAINED = ("obtained_at", "consent_flow", "consented_by_oid", "consented_by_name", "scopes")


def pointers_moved_write(pointers: list[PartnerToken]) -> None:
    """Write the POINTER_MOVED columns of many rows (moved by `pointer_move(save=False)`) in one UPDATE.

    A column all the rows agree on is set to that value and only the others row by row (a CASE on the id),
    rather than a CASE for every column as Django's bulk_update builds.
    """
    if not pointers:
        return
    values: dict[str, Any] = {}
    cast_case = connection.features.requires_casted_case_in_updates
    for name in POINTER_MOVED:
        field = cast("Field[Any, Any]", PartnerToken._meta.get_field(name))
        column = [getattr(pointer, name) for pointer in pointers]
        if all(value == column[0] for value in column):
            values[name] = column[0]
        else:
            whens = [When(pk=p.pk, then=Value(v, output_field=field)) for p, v in zip(pointers, column, strict=True)]
            case = Case(*whens, output_field=field)
            # As bulk_update does: PostgreSQL types a CASE of bare parameters only with a cast.
            values[name] = Cast(case, output_field=field) if cast_case else case
    PartnerToken.objects.filter(pk__in=[pointer.pk for pointer in pointers]).update(**values)


def version_disable_quietly(name: str, version: str) -> bool:
    try:
        get_vault().disable(name=name, version=version)
    except VaultError as exc:
        logger.warning("could not disable vault version %s of %s: %s", version, name, exc)
        return False
    return True


def partner_token_disable_previous(*, pointer: PartnerToken, record: bool = True) -> bool:
    """Disable the version the pointer moved away from. Returns True once it is disabled.

    With `record` False the caller writes the row's `previous_disabled` flag itself (with
    `previous_disabled_record`, for many rows at once); until it does, the sweep may disable the version again,
    which is harmless.
    """
    if pointer.previous_disabled or not pointer.previous_version:
        return True
    if not version_disable_quietly(pointer.secret_name, pointer.previous_version):
        return False
    if record:
        previous_disabled_record([(pointer.pk, pointer.previous_version)])
    pointer.previous_disabled = True
    return True


def previous_disabled_record(disabled: list[tuple[int, str]]) -> int:
    """Flag token rows whose previous version is disabled in the vault, given (row id, that version) pairs.
    A row whose pointer has moved on since is left alone. Returns how many rows were flagged."""
    if not disabled:
        return 0
    # Two lists instead of a pair per row: a vault version id belongs to one secret, so one row, and a row can
    # only match its own pair.
    return PartnerToken.objects.filter(
        pk__in=[pk for pk, _ in disabled], previous_version__in=[version for _, version in disabled]
    ).update(previous_disabled=True)
