"""A partner's token pointer: which vault (of VAULT_URLS) and which version in it hold its refresh token, and its moves.
Callers hold the PartnerToken row's lock; the version moved away from is disabled after the commit."""

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
from tokens.selectors import vault_shares
from tokens.vault import Vault, VaultError, get_vault, resolve_vault_url, vault_urls

if TYPE_CHECKING:
    from tokens.store import Obtained

logger = logging.getLogger(__name__)


def token_event(partner: Partner, event_kind: str, message: str, *, save: bool = True, **detail: Any) -> TokenEvent:
    """A line of the partner's token history for staff, saved unless `save` is False."""
    event = TokenEvent(partner=partner, kind=event_kind, message=message[:500], detail=detail)
    if save:
        event.save(force_insert=True)
    return event


def token_fingerprint(token: str) -> str:
    """An HMAC of a token, to tell tokens apart without storing them."""
    key = hashlib.sha256(f"cpv.token-fingerprint:{settings.SECRET_KEY}".encode()).digest()
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()


def pointer_vault(pointer: PartnerToken) -> Vault:
    """The vault that keeps the pointer's secret (its recorded one; the first of VAULT_URLS when none is recorded).
    Raises VaultMisconfigured when VAULT_URLS no longer names it."""
    return get_vault(pointer.vault_url)


def vault_choose() -> str:
    """The vault a partner's first token goes to: the configured one keeping the fewest partners' tokens (the first of
    those tied). Renewals write to a partner's vault once a day each, so equal shares keep each vault equally far from
    its write limit, and a vault added later takes the new partners until it has caught up; a hash of the partner
    would leave an added vault a share of new partners only. "" for the embedded vault."""
    configured = vault_urls()
    if len(configured) == 1:
        return configured[0]  # nothing to weigh: the one vault, without counting every partner's token
    shares = [share for share in vault_shares() if share.configured]
    return min(shares, key=lambda share: share.partners).url


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
    """Point a locked token row at a new vault version, clearing any failure (`obtained` for a consent or import);
    with `save` False only in memory. Returns versions superseded besides the previous one."""
    old = pointer.current_version
    # A pointer stored before vaults were recorded learns its vault (the first of VAULT_URLS) at its next move.
    pointer.vault_url = resolve_vault_url(pointer.vault_url)
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
        pointer.revoked_at = None
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
    "vault_url",
)


POINTER_OBTAINED = ("obtained_at", "consent_flow", "consented_by_oid", "consented_by_name", "scopes", "revoked_at")


def pointers_moved_write(pointers: list[PartnerToken]) -> None:
    """Write the POINTER_MOVED columns of rows moved with `save=False`, in one UPDATE."""
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


def version_disable_quietly(name: str, version: str, *, vault_url: str) -> bool:
    """Disable `version` of `name` in the vault `vault_url` (a pointer's): False, logged, when the vault refused."""
    try:
        get_vault(vault_url).disable(name=name, version=version)
    except VaultError as exc:
        logger.warning("could not disable vault version %s of %s: %s", version, name, exc)
        return False
    return True


def partner_token_disable_previous(*, pointer: PartnerToken, record: bool = True) -> bool:
    """Disable the version the pointer moved away from: True once disabled. With `record` False the caller writes
    the row's `previous_disabled` flag."""
    if pointer.previous_disabled or not pointer.previous_version:
        return True
    if not version_disable_quietly(pointer.secret_name, pointer.previous_version, vault_url=pointer.vault_url):
        return False
    if record:
        previous_disabled_record([(pointer.pk, pointer.previous_version)])
    pointer.previous_disabled = True
    return True


def previous_disabled_record(disabled: list[tuple[int, str]]) -> int:
    """Flag rows whose previous version is disabled, given (row id, version), unless moved on: the count."""
    if not disabled:
        return 0
    # Two lists instead of a pair per row: a vault version id belongs to one secret, so one row, and a row can
    # only match its own pair.
    return PartnerToken.objects.filter(
        pk__in=[pk for pk, _ in disabled], previous_version__in=[version for _, version in disabled]
    ).update(previous_disabled=True)
