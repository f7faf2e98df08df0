"""Redeeming a partner's stored refresh token under its row lock, for renewal and the access-token service.
Entra does not revoke the old token, so a crash anywhere leaves the pointer on a version that still works."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from microsoft import identity
from partners.registrations import app_for, cloud_for
from tokens.alerts import credential_refusals_alert
from tokens.models import PartnerToken, TokenEvent
from tokens.pointers import (
    partner_token_disable_previous,
    pointer_move,
    pointer_vault,
    pointers_moved_write,
    token_event,
)
from tokens.vault import MAX_VERSIONS, SecretVersion, VaultError, WriteResult, opening_check, secret_tags

logger = logging.getLogger(__name__)

Kind = TokenEvent.Kind


# Refuse to renew (and alert) when a secret is this close to the vault's 500-version budget: the versions
# left are kept for re-consents and for an operator's rescue.
VERSION_RESERVE = 10


# A version that no pointer names and is older than this was left by an interrupted write: disable it.
# Younger ones may belong to a consent that has written its token and is about to move the pointer.
ORPHAN_MIN_AGE = timedelta(minutes=15)


# A rotation lists the secret's versions (the true count, and versions interrupted writes left behind) once
# every this many generations, and at every rotation near the version budget. In between, the pointer's own
# count is exact unless a write was interrupted since the last listing, and VERSION_RESERVE absorbs that.
RECONCILE_EVERY = 8


@dataclass(frozen=True)
class Redemption:
    """What a redemption did: the token; with `store`, the version written and those superseded; with `defer`, the
    token event still to save."""

    token: identity.TokenResult
    written: WriteResult | None
    orphans: tuple[str, ...]
    deferred: TokenEvent | None = None


def moved_write(redemptions: list[tuple[PartnerToken, Redemption]]) -> None:
    """Write deferred redemptions' moved pointers and events, one statement each."""
    deferred = [(pointer, r.deferred) for pointer, r in redemptions if r.deferred is not None]
    if deferred:
        pointers_moved_write([pointer for pointer, _ in deferred])
        TokenEvent.objects.bulk_create([event for _, event in deferred])


def _orphans(versions: list[SecretVersion], pointer: PartnerToken, now: datetime) -> tuple[str, ...]:
    keep = {pointer.current_version, pointer.previous_version if not pointer.previous_disabled else ""}
    return tuple(
        v.version
        for v in versions
        if v.enabled and v.version not in keep and v.created_at is not None and v.created_at < now - ORPHAN_MIN_AGE
    )


def reconcile_due(pointer: PartnerToken) -> bool:
    """Whether this rotation lists the secret's versions rather than trusting the pointer's count."""
    return (
        pointer.version_count == 0
        or pointer.generation % RECONCILE_EVERY == 0
        or pointer.version_count >= MAX_VERSIONS - VERSION_RESERVE - RECONCILE_EVERY
    )


def redeem_current_token(
    *,
    pointer: PartnerToken,
    scopes: list[str],
    tenant: str | None,
    store: bool,
    kind: str,
    now: datetime,
    defer: bool = False,
) -> Redemption:
    """Redeem the current token; with `store`, write the rotated one to the same vault and move the pointer. The caller
    holds the row lock. Raises identity's typed errors, VaultError or VersionBudgetExceeded, and OpeningRefused in the
    web tier."""
    opening_check()
    partner = pointer.partner
    vault = pointer_vault(pointer)
    current = vault.read(name=pointer.secret_name, version=pointer.current_version)
    token = identity.refresh_token_redeem(
        cloud=cloud_for(partner),
        app=app_for(partner),
        tenant=tenant or str(partner.tenant_id),
        refresh_token=current.value.reveal(),
        scopes=scopes,
        home_tenant=tenant is None or tenant.lower() == str(partner.tenant_id).lower(),
    )
    credential_refusals_alert(token.refused, now=now)
    if not store or not token.refresh_token:
        return Redemption(token=token, written=None, orphans=())
    # Now and then (reconcile_due), a listing: the true version count for the budget, and any version an
    # interrupted write left behind (it is enabled, and no pointer names it).
    orphans: tuple[str, ...] = ()
    known_count = pointer.version_count
    if reconcile_due(pointer):
        versions = vault.versions(name=pointer.secret_name)
        orphans = _orphans(versions, pointer, now)
        known_count = len(versions)
    written = vault.write(
        name=pointer.secret_name,
        value=token.refresh_token,
        tags=secret_tags(partner_code=partner.code, cloud=partner.cloud),
        known_count=known_count,
    )
    old = pointer.current_version
    # The previous version, if it was never disabled, is superseded too: disable it with the orphans.
    orphans = (
        *orphans,
        *pointer_move(
            pointer,
            version=written.version,
            version_count=written.version_count,
            token_value=token.refresh_token,
            now=now,
            save=not defer,
        ),
    )
    event = token_event(
        partner,
        kind,
        "The refresh token was renewed and the new one stored in the vault"
        if kind == Kind.RENEWED
        else "An access-token request rotated the refresh token; the new one is stored in the vault",
        version=written.version,
        previous_version=old,
        versions=written.version_count,
        generation=pointer.generation,
        save=not defer,
    )
    return Redemption(token=token, written=written, orphans=orphans, deferred=event if defer else None)


def superseded_versions_disable(
    pointer: PartnerToken, orphans: tuple[str, ...], *, record: bool = True
) -> tuple[int, str] | None:
    """Disable the previous version and interrupted writes' versions (failures only logged). With `record` False,
    returns the (row id, version) flag for the caller to write."""
    flag: tuple[int, str] | None = None
    if not record and pointer.previous_version and not pointer.previous_disabled:
        if partner_token_disable_previous(pointer=pointer, record=False):
            flag = (pointer.pk, pointer.previous_version)
    else:
        partner_token_disable_previous(pointer=pointer)
    vault = pointer_vault(pointer)
    disabled = []
    for version in orphans:
        try:
            vault.disable(name=pointer.secret_name, version=version)
        except VaultError as exc:
            logger.warning("could not disable stray version %s of %s: %s", version, pointer.secret_name, exc)
        else:
            disabled.append(version)
    if disabled:
        token_event(
            pointer.partner,
            Kind.RECONCILED,
            f"Disabled {len(disabled)} vault version(s) left behind by an interrupted write",
            versions=disabled,
        )
    return flag
