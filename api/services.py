"""API clients and their keys: register, change, rotate, revoke; and the audit row of each access token handed out.
Every change writes its audit row in the same transaction. A key is shown once, when issued, and stored as a hash."""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from api.models import ApiClient, ApiKey
from partners.models import Partner
from partners.services import Actor, audit_record

# What every key starts with, so that a leaked one is recognisable (secret scanners, the log redaction).
KEY_MARK = "cpvk_"
# The visible part of a key kept beside its hash: the mark and 7 characters of the random part.
PREFIX_LENGTH = len(KEY_MARK) + 7
# How long a rotated key keeps working by default, while the client's systems switch to the new one.
DEFAULT_OVERLAP = timedelta(hours=24)
MAX_OVERLAP = timedelta(days=30)


class ApiClientError(ValueError):
    """A registration or change that cannot be made; the message says why in words."""


@dataclass(frozen=True)
class Issued:
    """A client with the key just issued to it: `key` is its only appearance in the clear (None for Entra)."""

    client: ApiClient
    api_key: ApiKey | None = None
    key: str | None = field(default=None, repr=False)


def key_digest(key: str) -> str:
    """The stored form of an API key: SHA-256 in hex. A key carries 256 random bits, so a fast hash is as strong as
    a slow one here (nothing to guess from a dictionary), and it lets a request find its key with one indexed read."""
    return hashlib.sha256(key.encode()).hexdigest()


def _staff(actor: Actor) -> User | None:
    return actor if isinstance(actor, User) and actor.is_authenticated else None


def _new_key(*, client: ApiClient, actor: Actor) -> tuple[ApiKey, str]:
    key = KEY_MARK + secrets.token_urlsafe(32)
    user = _staff(actor)
    row = ApiKey.objects.create(client=client, prefix=key[:PREFIX_LENGTH], digest=key_digest(key), created_by=user)
    return row, key


def networks_parse(value: Iterable[str]) -> list[str]:
    """Normalised CIDR networks (a bare address is its own /32 or /128). Raises ApiClientError naming a bad one."""
    networks = []
    for item in (v.strip() for v in value):
        if not item:
            continue
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            example = "203.0.113.0/24 or 2001:db8::/48"
            raise ApiClientError(f"{item!r} is not an IP network (write it as {example})") from None
    return sorted(set(networks))


def _audiences_check(audiences: Iterable[str]) -> list[str]:
    chosen = sorted(set(audiences))
    if not chosen:
        raise ApiClientError("Choose at least one audience the client may ask for.")
    unknown = [a for a in chosen if a not in ApiClient.Audience.values]
    if unknown:
        raise ApiClientError(f"Unknown audience {unknown[0]!r}; choose from {', '.join(ApiClient.Audience.values)}.")
    return chosen


def _scope_detail(client: ApiClient, partners: list[Partner]) -> dict[str, object]:
    return {
        "name": client.name,
        "all_partners": client.all_partners,
        "partners": sorted(str(p.code) for p in partners),
        "audiences": client.audiences,
        "networks": client.networks,
    }


@transaction.atomic
def api_client_create(
    *,
    actor: Actor,
    name: str,
    audiences: Iterable[str],
    all_partners: bool = False,
    partners: Iterable[Partner] = (),
    networks: Iterable[str] = (),
    entra_app_id: uuid.UUID | str | None = None,
) -> Issued:
    """Register a client system: with `entra_app_id` it proves itself with client-credentials tokens of that app from
    the vendor's tenant, else with an API key issued now (in the result, shown once). Raises ApiClientError."""
    name = name.strip()
    if not name:
        raise ApiClientError("Give the client a name.")
    if ApiClient.objects.filter(name__iexact=name).exists():
        raise ApiClientError(f"A client named {name!r} exists already.")
    chosen = list(partners)
    if all_partners and chosen:
        raise ApiClientError("Choose all partners or a list of partners, not both.")
    app_id = None
    if entra_app_id:
        try:
            app_id = uuid.UUID(str(entra_app_id))
        except ValueError:
            raise ApiClientError("The Entra app id must be the app's client id (a GUID).") from None
        if ApiClient.objects.filter(entra_app_id=app_id).exists():
            raise ApiClientError("Another client is registered with this Entra app id.")
    client = ApiClient.objects.create(
        name=name,
        all_partners=all_partners,
        audiences=_audiences_check(audiences),
        networks=networks_parse(networks),
        credential=ApiClient.Credential.ENTRA if app_id else ApiClient.Credential.API_KEY,
        entra_app_id=app_id,
        created_by=_staff(actor),
    )
    client.partners.set(chosen)
    detail = {**_scope_detail(client, chosen), "credential": client.credential}
    issued = Issued(client=client)
    if app_id is not None:
        detail["entra_app_id"] = str(app_id)
    else:
        row, key = _new_key(client=client, actor=actor)
        detail["key_prefix"] = row.prefix
        issued = Issued(client=client, api_key=row, key=key)
    audit_record(actor=actor, action="api_client.created", target=client, detail=detail)
    return issued


@transaction.atomic
def api_client_update(
    *,
    actor: Actor,
    client: ApiClient,
    audiences: Iterable[str],
    all_partners: bool,
    partners: Iterable[Partner],
    networks: Iterable[str],
) -> ApiClient:
    """Change what a client may see and ask for and where from; audited with the before and after."""
    client = ApiClient.objects.select_for_update().get(pk=client.pk)
    chosen = list(partners)
    if all_partners and chosen:
        raise ApiClientError("Choose all partners or a list of partners, not both.")
    before = _scope_detail(client, list(client.partners.all()))
    client.audiences = _audiences_check(audiences)
    client.all_partners = all_partners
    client.networks = networks_parse(networks)
    client.save(update_fields=["audiences", "all_partners", "networks"])
    client.partners.set(chosen)
    after = _scope_detail(client, chosen)
    audit_record(actor=actor, action="api_client.changed", target=client, detail={"before": before, "after": after})
    return client


@transaction.atomic
def api_key_rotate(*, actor: Actor, client: ApiClient, overlap: timedelta = DEFAULT_OVERLAP) -> Issued:
    """Issue a new key; the keys in use keep working for `overlap` (at most MAX_OVERLAP; zero ends them now). The
    result holds the new key, shown once. Raises ApiClientError for a revoked or Entra client."""
    client = ApiClient.objects.select_for_update().get(pk=client.pk)
    if client.revoked_at is not None:
        raise ApiClientError("The client is revoked: register it again instead.")
    if client.credential != ApiClient.Credential.API_KEY:
        raise ApiClientError("This client signs in with Entra tokens: it has no API key to rotate.")
    if overlap < timedelta(0) or overlap > MAX_OVERLAP:
        raise ApiClientError(f"The overlap must be between 0 and {MAX_OVERLAP.days} days.")
    now = timezone.now()
    ends = now + overlap
    replaced = list(
        ApiKey.objects.filter(client=client, revoked_at__isnull=True).exclude(expires_at__lte=now).order_by("pk")
    )
    for old in replaced:
        # A key already ending sooner keeps its earlier end.
        old.expires_at = ends if old.expires_at is None else min(old.expires_at, ends)
    ApiKey.objects.bulk_update(replaced, ["expires_at"])
    row, key = _new_key(client=client, actor=actor)
    audit_record(
        actor=actor,
        action="api_client.key_rotated",
        target=client,
        detail={
            "name": client.name,
            "key_prefix": row.prefix,
            "replaced": [old.prefix for old in replaced],
            "overlap_until": ends.isoformat(),
        },
    )
    return Issued(client=client, api_key=row, key=key)


@transaction.atomic
def api_key_revoke(*, actor: Actor, api_key: ApiKey) -> ApiKey:
    """Stop one key at once (an old key whose overlap is not needed, or a leaked one)."""
    api_key = ApiKey.objects.select_for_update().select_related("client").get(pk=api_key.pk)
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
        audit_record(
            actor=actor,
            action="api_client.key_revoked",
            target=api_key.client,
            detail={"name": api_key.client.name, "key_prefix": api_key.prefix},
        )
    return api_key


@transaction.atomic
def api_client_revoke(*, actor: Actor, client: ApiClient) -> ApiClient:
    """Stop a client and every key of it at once; its history stays."""
    client = ApiClient.objects.select_for_update().get(pk=client.pk)
    if client.revoked_at is None:
        now = timezone.now()
        client.revoked_at = now
        client.save(update_fields=["revoked_at"])
        ApiKey.objects.filter(client=client, revoked_at__isnull=True).update(revoked_at=now)
        audit_record(actor=actor, action="api_client.revoked", target=client, detail={"name": client.name})
    return client


def access_token_handed_out(*, client: ApiClient, partner: Partner, audience: str, tenant: str, scopes: str) -> None:
    """The audit row of one access token handed out: client, partner, audience, tenant; never the token."""
    audit_record(
        actor=None,
        action="api.access_token_issued",
        partner=partner,
        target=client,
        detail={
            "client": client.name,
            "client_code": str(client.code),
            "audience": audience,
            "tenant": tenant,
            "scopes": scopes,
        },
    )
