"""Seeding the benchmarks' worlds quickly: active partners whose refresh tokens sit in the simulator's Key
Vault, written in bulk (threads for the HTTP calls, `bulk_create` for the rows) instead of one service call
per partner. The rows are the ones `partner_token_import` would make: an active partner, a pointer to the
vault version, a fingerprint, and a token renewed long enough ago to be due.

Call after `harness.django_setup()`.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Older than the renewal interval (7 days by default), so every seeded token is due.
DUE_AGE = timedelta(days=8)


def threaded(items: Sequence[T], work: Callable[[T, dict[str, Any]], R], *, threads: int = 8) -> list[R]:
    """`work(item, local)` for each item on `threads` threads, in order; `local` is a per-thread dict."""
    local = threading.local()

    def run(item: T) -> R:
        if not hasattr(local, "d"):
            local.d = {}
        return work(item, local.d)

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(run, items))


def vault_client(sim_env: dict[str, str], *, environment_once: bool = False, vault_url: str = "") -> Any:
    """A SecretClient for the simulator's Key Vault (`vault_url`, by default the first), as the product builds it (no
    SDK retries); with `environment_once`, on the product's HTTP session (microsoft/http.py) instead of the SDK's
    default one."""
    from azure.identity import ClientSecretCredential
    from azure.keyvault.secrets import SecretClient

    options: dict[str, Any] = {}
    if environment_once:
        from azure.core.pipeline.transport import RequestsTransport

        from microsoft.http import EnvironmentOnceSession

        options["transport"] = RequestsTransport(session=EnvironmentOnceSession(), session_owner=True)

    credential = ClientSecretCredential(
        sim_env["AZURE_TENANT_ID"],
        sim_env["AZURE_CLIENT_ID"],
        sim_env["AZURE_CLIENT_SECRET"],
        authority=sim_env["AZURE_AUTHORITY_HOST"],
        disable_instance_discovery=True,
    )
    return SecretClient(vault_url or sim_env["VAULT_URL"], credential, verify_challenge_resource=False, **options)


def active_partners(
    *,
    sim_env: dict[str, str],
    world_partners: Sequence[Any],
    threads: int = 8,
    token_age: timedelta = DUE_AGE,
    vault_urls: Sequence[str] = (),
) -> list[int]:
    """Create one active partner per world partner, with a refresh token issued to its admin (as if they had
    consented) and vaulted: in the simulator's first vault, or in turn in each of `vault_urls` (recorded on the
    pointer, as VAULT_URLS's vault choice records it). Returns the partners' ids."""
    from django.db import transaction
    from django.utils import timezone

    from partners.models import Partner
    from simulator.control_client import SimulatorControl
    from tokens.models import PartnerToken
    from tokens.pointers import token_fingerprint
    from tokens.vault import REFRESH_TOKEN_CONTENT_TYPE, secret_name_for, secret_tags

    client_id = sim_env["CPV_CLIENT_ID"]
    codes = [uuid.uuid4() for _ in world_partners]

    def vault_of(index: int) -> str:
        return vault_urls[index % len(vault_urls)] if vault_urls else ""

    def issue_and_store(index: int, local: dict[str, Any]) -> tuple[str, str]:
        if "control" not in local:
            local["control"] = SimulatorControl(
                sim_env["SIMULATOR_CONTROL_URL"], ca_bundle=sim_env["REQUESTS_CA_BUNDLE"]
            )
            local["vaults"] = {url: vault_client(sim_env, vault_url=url) for url in vault_urls or ("",)}
        admin = next(u for u in world_partners[index].users if u.global_admin and u.admin_agent and u.mfa_registered)
        token = local["control"].issue_refresh_token(admin.oid, client_id=client_id)
        code = codes[index]
        stored = local["vaults"][vault_of(index)].set_secret(
            secret_name_for(code),
            token,
            content_type=REFRESH_TOKEN_CONTENT_TYPE,
            tags=secret_tags(partner_code=code, cloud="global"),
        )
        return token_fingerprint(token), stored.properties.version

    stored = threaded(list(range(len(world_partners))), issue_and_store, threads=threads)
    renewed_at = timezone.now() - token_age
    with transaction.atomic():
        partners = Partner.objects.bulk_create(
            [
                Partner(
                    code=code,
                    name=wp.name,
                    contact_email=f"ops@{wp.domain}",
                    tenant_id=uuid.UUID(wp.tenant_id),
                    default_domain=wp.domain,
                    status=Partner.Status.ACTIVE,
                )
                for code, wp in zip(codes, world_partners, strict=True)
            ],
            batch_size=1000,
        )
        PartnerToken.objects.bulk_create(
            [
                PartnerToken(
                    partner=partner,
                    secret_name=secret_name_for(partner.code),
                    vault_url=vault_of(index),
                    current_version=version,
                    previous_disabled=True,
                    version_count=1,
                    fingerprint=fingerprint,
                    generation=1,
                    obtained_at=renewed_at,
                    last_renewed_at=renewed_at,
                )
                for index, (partner, (fingerprint, version)) in enumerate(zip(partners, stored, strict=True))
            ],
            batch_size=1000,
        )
    return [p.pk for p in partners]


def synced_partner(*, sim_env: dict[str, str], seed_number: int, customers: int) -> int:
    """One active partner of the simulator's world (generated from `seed_number`) with `customers` customers,
    synced into the database as the product's sync writes them. Returns the partner's id."""
    from customers.services import customers_sync
    from simulator.world import World

    world = World.generate(seed=seed_number, partners=1, customers_per_partner=customers)
    (partner_id,) = active_partners(sim_env=sim_env, world_partners=world.partners, token_age=timedelta(hours=1))
    customers_sync(partner_id=partner_id)
    return partner_id


def make_due(*, token_age: timedelta = DUE_AGE) -> int:
    """Every token due again and unclaimed by any sweep. Returns how many pointers."""
    from django.utils import timezone

    from tokens.models import PartnerToken

    return PartnerToken.objects.update(
        last_renewed_at=timezone.now() - token_age, renewal_queued_at=None, next_attempt_at=None
    )
