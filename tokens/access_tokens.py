"""Short-lived access tokens for the rest of the code (partner, audience, tenant in; token out), cached in this
process's memory only. Nobody else redeems refresh tokens for access."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import NoReturn

from django.db import transaction
from django.utils import timezone

from microsoft import identity, permissions
from partners.models import Partner
from partners.permissions import partner_permission_refused
from partners.registrations import cloud_for
from tokens.failures import partner_mark_reconsent_needed
from tokens.models import PartnerToken, TokenEvent
from tokens.redemption import VERSION_RESERVE, redeem_current_token, superseded_versions_disable
from tokens.selectors import is_due
from tokens.vault import MAX_VERSIONS, VaultError, opening_check

logger = logging.getLogger(__name__)

# The audiences are the APIs of the required-permission table.
PARTNER_CENTER = permissions.PARTNER_CENTER
GRAPH = permissions.GRAPH
AUDIENCES = (PARTNER_CENTER, GRAPH)
# A cached token is handed out only while it has at least this long to live.
EXPIRY_MARGIN = 300.0


class TokenUnavailable(Exception):
    """The partner has no usable token (none stored, or re-consent needed); the message says which."""


class PermissionMissing(TokenUnavailable):
    """The consent grants nothing for that audience (Graph); Partner Center keeps working."""


@dataclass(frozen=True)
class AccessToken:
    token: str = field(repr=False)
    expires_at: float
    audience: str
    tenant: str


_Key = tuple[int, str, str]
_cache: dict[_Key, AccessToken] = {}
_cache_lock = threading.Lock()
_key_locks: dict[_Key, threading.Lock] = {}


def _key(partner: Partner, audience: str, tenant: str | None) -> _Key:
    return (partner.pk, audience, (tenant or str(partner.tenant_id)).lower())


def _key_lock(key: _Key) -> threading.Lock:
    with _cache_lock:
        return _key_locks.setdefault(key, threading.Lock())


def _cached(key: _Key) -> AccessToken | None:
    with _cache_lock:
        token = _cache.get(key)
    if token is not None and token.expires_at - EXPIRY_MARGIN > time.time():
        return token
    return None


def cache_put(*, partner: Partner, audience: str, tenant: str | None, token: identity.TokenResult) -> None:
    """Keep an access token a renewal obtained anyway, for the next caller in this process."""
    if not token.access_token:
        return
    key = _key(partner, audience, tenant)
    with _cache_lock:
        _cache[key] = AccessToken(
            token=token.access_token, expires_at=token.expires_at, audience=audience, tenant=key[2]
        )


def cache_forget(*, partner_id: int | None = None, tenant: str | None = None) -> None:
    """Drop cached tokens (of one partner, or all; in one tenant only, when given)."""
    with _cache_lock:
        for key in [k for k in _cache if partner_id is None or k[0] == partner_id]:
            if tenant is None or key[2] == tenant.lower():
                del _cache[key]


def scope_for(partner: Partner, audience: str) -> str:
    cloud = cloud_for(partner)
    if audience == PARTNER_CENTER:
        return cloud.partner_center_scope
    if audience == GRAPH:
        return cloud.graph_scope
    raise ValueError(f"unknown audience {audience!r}; choose one of {', '.join(AUDIENCES)}")


def access_token_get(*, partner: Partner, audience: str = PARTNER_CENTER, tenant: str | None = None) -> AccessToken:
    """An access token for `partner` to `audience` in `tenant` (default its own), cached or redeemed under the
    pointer's lock. Raises TokenUnavailable, identity's typed errors (a dead consent also marks the partner), or
    VaultError; OpeningRefused in a process that may not open tokens (the web tier), even for a cached token."""
    opening_check()
    key = _key(partner, audience, tenant)
    found = _cached(key)
    if found is not None:
        # Checked on every hand-out: a partner revoked or deactivated in another process gets none from this
        # process's cache either.
        if Partner.objects.filter(pk=partner.pk, status=Partner.Status.ACTIVE).exists():
            return found
        cache_forget(partner_id=partner.pk)
        raise TokenUnavailable(f"Partner {partner.code} is not active: its access tokens are no longer handed out.")
    scope = scope_for(partner, audience)
    # One redemption per key in this process; a rotation to keep, or a failure to record, is the row lock's.
    with _key_lock(key):
        found = _cached(key)
        if found is None:
            found = _redeem_unlocked(partner=partner, audience=audience, scope=scope, tenant=tenant, key=key)
        if found is None:
            found = _redeem_locked(partner=partner, audience=audience, scope=scope, tenant=tenant, key=key)
        return found


# The refusals that say the partner's consent itself is gone, whichever tenant asked: recorded on the partner.
_CONSENT_GONE = (identity.ReconsentRequired, identity.MfaRequired, identity.ConditionalAccessBlocked)


def _redeem_unlocked(
    *, partner: Partner, audience: str, scope: str, tenant: str | None, key: _Key
) -> AccessToken | None:
    """Redeem the current token without the pointer's row lock when there is no rotation to keep (the stored token is
    not due): an access token per customer tenant (a verification's Graph read in each) would otherwise hold the
    partner's row for an HTTP round trip each, one process at a time. Entra leaves the redeemed token valid, so a
    rotation stored meanwhile by another process changes nothing here. A refusal is recorded as the locked path
    records it, without asking Entra again. None: the locked path must do it (no usable pointer, a rotation to keep,
    a version the vault no longer opens, or a refusal of a version another process has replaced meanwhile)."""
    pointer = PartnerToken.objects.select_related("partner").filter(partner=partner).first()
    now = timezone.now()
    if (
        pointer is None
        or not pointer.current_version
        or pointer.partner.status != Partner.Status.ACTIVE
        or is_due(pointer, now=now)
    ):
        return None
    try:
        redemption = redeem_current_token(
            pointer=pointer, scopes=[scope], tenant=tenant, store=False, kind=TokenEvent.Kind.ROTATED, now=now
        )
    except VaultError:
        # A rotation moved the pointer and disabled this version meanwhile: the locked path reads it again.
        return None
    except (*_CONSENT_GONE, identity.PermissionNotGranted) as exc:
        with transaction.atomic():
            locked = PartnerToken.objects.select_for_update(of=("self",)).filter(partner=partner).first()
            if locked is None or locked.current_version != pointer.current_version:
                return None
            if isinstance(exc, _CONSENT_GONE):
                partner_mark_reconsent_needed(pointer=locked, error=exc, now=now)
        _refusal_raise(partner=partner, audience=audience, failure=exc)
    return _cache_keep(partner=partner, audience=audience, key=key, token=redemption.token, stored=False)


def _refusal_raise(*, partner: Partner, audience: str, failure: identity.IdentityError) -> NoReturn:
    """After Entra refused the partner's token (the refusal recorded): forget its access tokens in this process and
    raise PermissionMissing for a permission not granted, else the refusal itself."""
    if isinstance(failure, identity.PermissionNotGranted):
        partner_permission_refused(partner=partner, api=permissions.GRAPH)
        raise PermissionMissing(
            f"Partner {partner.code} has not granted the control panel's app any {audience} permission "
            f"({failure}): what needs it is unavailable until the partner consents again; Partner Center "
            "keeps working."
        )
    cache_forget(partner_id=partner.pk)
    raise failure


def _cache_keep(
    *, partner: Partner, audience: str, key: _Key, token: identity.TokenResult, stored: bool
) -> AccessToken:
    """Keep a redeemed access token for the next caller in this process, and log it (no token in the line)."""
    access = AccessToken(token=token.access_token, expires_at=token.expires_at, audience=audience, tenant=key[2])
    with _cache_lock:
        _cache[key] = access
    logger.info(
        "access token for partner %s, %s in tenant %s (stored rotation: %s)", partner.code, audience, key[2], stored
    )
    return access


def _redeem_locked(*, partner: Partner, audience: str, scope: str, tenant: str | None, key: _Key) -> AccessToken:
    """Redeem the current token under the pointer's row lock, keeping the rotation when the stored token is due
    within the version budget, and recording a dead consent or a permission not granted."""
    now = timezone.now()
    failure: identity.IdentityError | None = None
    with transaction.atomic():
        pointer = (
            PartnerToken.objects.select_for_update(of=("self",))
            .select_related("partner")
            .filter(partner=partner)
            .first()
        )
        if pointer is None or not pointer.current_version:
            raise TokenUnavailable(f"Partner {partner.code} has no stored token: it must consent first.")
        if pointer.partner.status != Partner.Status.ACTIVE:
            raise TokenUnavailable(f"Partner {partner.code} is {pointer.partner.get_status_display().lower()}.")
        # Keep the rotated token only when the stored one is due anyway, within the version budget: storing every
        # rotation would spend the 500 versions of a partner with many customers in a day.
        store = is_due(pointer, now=now) and pointer.version_count < MAX_VERSIONS - VERSION_RESERVE
        try:
            redemption = redeem_current_token(
                pointer=pointer, scopes=[scope], tenant=tenant, store=store, kind=TokenEvent.Kind.ROTATED, now=now
            )
        except _CONSENT_GONE as exc:
            # The partner's consent itself is gone, whichever tenant asked: record it (rows commit).
            partner_mark_reconsent_needed(pointer=pointer, error=exc, now=now)
            failure = exc
        except identity.PermissionNotGranted as exc:
            failure = exc
        else:
            if redemption.written is not None:
                orphans = redemption.orphans
                transaction.on_commit(lambda: superseded_versions_disable(pointer, orphans))
    if failure is not None:
        _refusal_raise(partner=partner, audience=audience, failure=failure)
    return _cache_keep(
        partner=partner, audience=audience, key=key, token=redemption.token, stored=redemption.written is not None
    )
