"""A partner's refresh token coming in (a consent, an import) and going away (revocation)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from events.models import EventType
from events.services import event_record
from partners.models import Partner
from partners.services import Actor, PartnerError, audit_record
from tokens.access_tokens import cache_forget
from tokens.models import PartnerToken
from tokens.pointers import (
    partner_token_disable_previous,
    pointer_move,
    pointer_vault,
    vault_choose,
    version_disable_quietly,
)
from tokens.vault import VaultConflict, VaultError, get_vault, resolve_vault_url, secret_name_for, secret_tags

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Obtained:
    """Where a token not from a renewal came from: a consent flow (id, who signed in, scopes), or an import (empty)."""

    flow_id: int | None = None
    user_oid: uuid.UUID | None = None
    user_name: str = ""
    scopes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Stored:
    pointer: PartnerToken
    version: str


def token_store(
    *,
    partner: Partner,
    refresh_token: str,
    obtained: Obtained,
    tags: dict[str, str] | None = None,
    within: Callable[[Partner, str], None] | None = None,
) -> Stored:
    """Make `refresh_token` the partner's current token: a new version in the partner's vault (for a first token, the
    vault `vault_choose` picks), then, locking the token row and the partner (that order), the pointer's move and
    `within`'s rows (it may raise to refuse: all is undone and the new version disabled). Raises VaultError (a
    VaultConflict when another first token of the partner went to another vault meanwhile), or what `within`
    raised."""
    name = secret_name_for(partner.code)
    # The pointer's count spares listing the versions: the web tier's Key Vault identity may only set secrets.
    known = _pointer_known(partner)
    vault_url = resolve_vault_url(known[1]) if known is not None else vault_choose()
    written = get_vault(vault_url).write(
        name=name,
        value=refresh_token,
        tags=tags or secret_tags(partner_code=partner.code, cloud=partner.cloud),
        known_count=known[0] if known is not None else 0,
    )
    committed = False
    try:
        with transaction.atomic():
            if known is None:
                # A first token's row is made here: of two first consents at once, the second's INSERT waits for the
                # first's commit and gives way, and its lock below finds the first's row.
                PartnerToken.objects.bulk_create(
                    [PartnerToken(partner=partner, secret_name=name, vault_url=vault_url)], ignore_conflicts=True
                )
            # Both rows in one statement, the token row's lock first as everywhere (PostgreSQL takes a statement's
            # row locks in the order its FOR UPDATE OF names the tables).
            pointer = (
                PartnerToken.objects.select_related("partner")
                .select_for_update(of=("self", "partner"))
                .get(partner=partner)
            )
            if resolve_vault_url(pointer.vault_url) != vault_url:
                # Another first token of this partner was stored in another vault since the choice: this version's
                # vault is not the pointer's, so it is given up (and disabled below) rather than pointed at.
                raise VaultConflict(
                    "another token of this partner was stored in another vault at the same moment: try again"
                )
            locked = pointer.partner
            previous_status = locked.status
            superseded = pointer_move(
                pointer,
                version=written.version,
                version_count=written.version_count,
                token_value=refresh_token,
                now=timezone.now(),
                obtained=obtained,
            )
            # Last: what `within` changes in memory (a flow's state) is then undone by nothing after it.
            if within is not None:
                within(locked, written.version)
            if locked.status == Partner.Status.ACTIVE and previous_status != Partner.Status.ACTIVE:
                event_record(
                    type=EventType.PARTNER_ACTIVATED,
                    partner=locked,
                    detail={"previous_status": previous_status, "by": "consent" if obtained.flow_id else "import"},
                )
            moved = pointer
            transaction.on_commit(lambda: _replaced_disable(moved, superseded), robust=True)
        committed = True
    finally:
        # Only a version nothing points at may be disabled: after the commit, it is the partner's token.
        if not committed:
            version_disable_quietly(name, written.version, vault_url=vault_url)
    return Stored(pointer=pointer, version=written.version)


def _pointer_known(partner: Partner) -> tuple[int, str] | None:
    """The version count and vault of the partner's pointer (None before its first token): from the partner's row when
    the caller read the pointer with it (`select_related("token")`), else read now. Read a moment before, the vault is
    checked again under the row's lock, and a count a renewal meanwhile left behind by one lets the write past the
    version budget by that one at most."""
    if Partner.token.is_cached(partner):
        pointer = Partner.token.related.get_cached_value(partner)
        return (pointer.version_count, pointer.vault_url) if isinstance(pointer, PartnerToken) else None
    return PartnerToken.objects.filter(partner=partner).values_list("version_count", "vault_url").first()


def _replaced_disable(pointer: PartnerToken, superseded: tuple[str, ...]) -> None:
    partner_token_disable_previous(pointer=pointer)
    for version in superseded:
        version_disable_quietly(pointer.secret_name, version, vault_url=pointer.vault_url)


def partner_token_import(*, actor: Actor, partner: Partner, refresh_token: str) -> PartnerToken:
    """Store a refresh token obtained elsewhere as the partner's current one and make the partner active.
    Raises VaultError, or PartnerError when the partner has no tenant id."""
    if not partner.tenant_id:
        raise PartnerError("A partner needs its tenant id before a token can be imported.")

    def activate(locked: Partner, version: str) -> None:
        locked.status = Partner.Status.ACTIVE
        locked.status_reason = ""
        locked.save(update_fields=["status", "status_reason", "updated_at"])
        audit_record(actor=actor, action="partner.token_imported", partner=locked, detail={"version": version})

    return token_store(partner=partner, refresh_token=refresh_token, obtained=Obtained(), within=activate).pointer


def partner_token_revoke(*, actor: Actor, partner: Partner, reason: str = "") -> Partner:
    """Disable the partner's token versions and mark it re-consent needed (a deactivated one stays so); access tokens
    handed out live out their hour. Raises PartnerError when there is no token or the vault refused (nothing marked)."""
    with transaction.atomic():
        # The pointer's row lock waits for a renewal in progress, so none moves the token under us.
        pointer = PartnerToken.objects.select_for_update().filter(partner_id=partner.pk).first()
        if pointer is None or not pointer.current_version:
            raise PartnerError(f"{partner.name} has no token to revoke.")
        versions = [pointer.current_version]
        if pointer.previous_version and not pointer.previous_disabled:
            versions.append(pointer.previous_version)
        try:
            vault = pointer_vault(pointer)
            for version in versions:
                vault.disable(name=pointer.secret_name, version=version)
        except VaultError as exc:
            raise PartnerError(f"The vault refused to disable the token ({exc}); nothing was changed.") from None
        pointer.previous_disabled = True
        pointer.revoked_at = timezone.now()
        pointer.save(update_fields=["previous_disabled", "revoked_at", "updated_at"])
        locked = Partner.objects.select_for_update().get(pk=partner.pk)
        previous = locked.status
        if locked.status != Partner.Status.DEACTIVATED:
            locked.status = Partner.Status.RECONSENT_NEEDED
        locked.status_reason = (reason.strip() or "The vendor's staff revoked the token")[:500]
        locked.save(update_fields=["status", "status_reason", "updated_at"])
        if locked.status == Partner.Status.RECONSENT_NEEDED and previous != Partner.Status.RECONSENT_NEEDED:
            event_record(
                type=EventType.PARTNER_CONSENT_NEEDED,
                partner=locked,
                detail={"previous_status": previous, "reason": "revoked"},
            )
        audit_record(
            actor=actor,
            action="partner.token_revoked",
            partner=locked,
            detail={"versions_disabled": versions, "previous_status": previous, "reason": locked.status_reason},
        )
        transaction.on_commit(lambda: cache_forget(partner_id=partner.pk))
    return locked
