"""The vendor's own systems that may ask the token API for access tokens, and their API keys (never in the clear)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from partners.models import Partner


class ApiClient(models.Model):
    """A system of the vendor's (provisioning, billing, a PSA or CRM) registered by an admin: which partners it may
    see, which audiences it may ask for, from which networks, and how it proves itself."""

    class Audience(models.TextChoices):
        PARTNER_CENTER = "partner_center", "Partner Center"
        GRAPH_PARTNER = "graph_partner", "Microsoft Graph in the partner's tenant"
        GRAPH_CUSTOMERS = "graph_customers", "Microsoft Graph in customer tenants"

    class Credential(models.TextChoices):
        API_KEY = "api_key", "API key"
        ENTRA = "entra", "Client-credentials token from the vendor's Entra tenant"

    # URLs carry this code, never the integer id.
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200, unique=True)
    all_partners = models.BooleanField(default=False)
    partners = models.ManyToManyField(Partner, blank=True, related_name="api_clients")
    audiences = models.JSONField(default=list)
    # CIDR networks the client calls from (IPv4 or IPv6); empty: anywhere.
    networks = models.JSONField(default=list, blank=True)
    credential = models.CharField(max_length=16, choices=Credential.choices)
    # The client's app id in the vendor's tenant (`appid`/`azp` of its tokens), for an Entra credential.
    entra_app_id = models.UUIDField(null=True, blank=True, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Written at most once a minute per client (api/authentication.py), so that a busy client costs no write per call.
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class ApiKey(models.Model):
    """One API key of a client: its SHA-256 digest and its visible prefix. A rotation gives the key it replaces an
    end (`expires_at`), so the client's systems can switch over; a revoked key stops at once."""

    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="keys")
    prefix = models.CharField(max_length=16)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.prefix}… of {self.client_id}"
