"""Offboarding a partner: take the vendor's app out of every one of its customers (ApplicationConsent DELETE, seen
gone in Graph where the partner can still read the tenant), then revoke its token, deactivate it and tell it in words
how to withdraw its own consent. Resumable: each customer is recorded REMOVED as it is done, and a run picks up what
is left; from its start, nothing applies or repairs a consent for the partner."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.template.loader import render_to_string
from django.utils import timezone

from customers import services
from customers.models import CustomerConsent
from microsoft import graph, identity
from partners.invitations import partner_email_send
from partners.models import Customer, Partner
from partners.registrations import app_for, cloud_for
from partners.services import Actor, PartnerError, audit_record, partner_deactivate
from tokens.access_tokens import GRAPH, TokenUnavailable, access_token_get, cache_forget
from tokens.models import PartnerToken
from tokens.store import partner_token_revoke
from tokens.vault import VaultError

logger = logging.getLogger(__name__)

REMOVED = CustomerConsent.Status.REMOVED


def partner_offboard_start(*, actor: Actor, partner: Partner) -> Partner:
    """Start offboarding (audited): from now no consent is applied or repaired for the partner. Raises PartnerError
    when it is already offboarded or offboarding, or deactivated (its token can no longer remove anything)."""
    with transaction.atomic():
        locked = Partner.objects.select_for_update().get(pk=partner.pk)
        if locked.offboarded_at is not None or locked.offboarding_started_at is not None:
            raise PartnerError(f"{locked.name} is already being offboarded.")
        if locked.status == Partner.Status.DEACTIVATED:
            raise PartnerError(
                f"{locked.name} is deactivated: reactivate it first, so its token can take the app out of its "
                "customers."
            )
        locked.offboarding_started_at = timezone.now()
        locked.save(update_fields=["offboarding_started_at", "updated_at"])
        audit_record(
            actor=actor,
            action="partner.offboarding_started",
            partner=locked,
            detail={"customers": _remaining(locked).count()},
        )
    return locked


def _remaining(partner: Partner) -> Any:
    return Customer.objects.filter(partner=partner, removed_at__isnull=True).exclude(
        application_consent__status=REMOVED
    )


def app_gone(*, partner: Partner, customer: Customer) -> bool | None:
    """Whether Graph, read as the partner in the customer's tenant with a fresh token, shows the vendor's app gone
    (True), still there (False), or cannot say (None: no access left, Graph refusing or failing)."""
    tenant = str(customer.tenant_id)
    cache_forget(partner_id=partner.pk, tenant=tenant)
    try:
        token = access_token_get(partner=partner, audience=GRAPH, tenant=tenant)
    except identity.AppNotConsentedInTenant:
        return True
    except (identity.IdentityError, TokenUnavailable, VaultError):
        return None
    client = graph.GraphClient(base_url=cloud_for(partner).graph_url, access_token=token.token)
    try:
        return client.service_principal(app_for(partner).client_id) is None
    except graph.GraphError:
        return None


@dataclass
class Offboarding:
    """Where a partner's offboarding stands."""

    customers: int = 0
    removed: int = 0
    still_there: int = 0  # DELETE answered, but Graph still shows the app: tried again
    not_removed: list[str] | None = None  # refused for good (tenant: why)
    finished: bool = False

    @property
    def left(self) -> int:
        return self.customers - self.removed


def offboarding_progress(partner: Partner) -> Offboarding:
    """The partner's present customers and how many have the app taken out."""
    counts = Customer.objects.filter(partner=partner, removed_at__isnull=True).aggregate(
        customers=Count("id"), removed=Count("id", filter=Q(application_consent__status=REMOVED))
    )
    return Offboarding(
        customers=counts["customers"], removed=counts["removed"], finished=partner.offboarded_at is not None
    )


def partner_offboard_run(
    *, partner_id: int, limit: int | None = None, sleep: Callable[[float], None] = time.sleep
) -> Offboarding:
    """Take the app out of up to `limit` (all when None) of the partner's customers still holding it, then, when none
    is left, finish (revoke, deactivate, tell the partner). Raises services.CallFailed when Partner Center failed for
    now (run again later), PartnerError when offboarding was not started."""
    partner = Partner.objects.get(pk=partner_id)
    if partner.offboarded_at is not None:
        return offboarding_progress(partner)
    if partner.offboarding_started_at is None:
        raise PartnerError(f"{partner.name} is not being offboarded.")
    still_there = 0
    refused: list[str] = []

    def confirm(customer: Customer) -> bool:
        nonlocal still_there
        if app_gone(partner=partner, customer=customer) is False:
            still_there += 1
            return False
        return True

    ids = list(_remaining(partner).order_by("pk").values_list("pk", flat=True))
    for customer_id in ids[:limit] if limit is not None else ids:
        try:
            services.consent_remove(customer_id=customer_id, confirm=confirm, sleep=sleep)
        except services.CallFailed as exc:
            if exc.transient:
                raise
            tenant = str(Customer.objects.get(pk=customer_id).tenant_id)
            refused.append(f"{tenant}: {exc}"[:300])
            logger.warning("offboarding %s: the app could not be removed from %s: %s", partner.code, tenant, exc)
    progress = offboarding_progress(partner)
    progress.still_there = still_there
    progress.not_removed = refused
    if progress.left > len(refused) or still_there:
        return progress
    _finish(partner, refused)
    progress.finished = True
    return progress


def _finish(partner: Partner, refused: list[str]) -> None:
    """Every customer done: the token revoked, the partner deactivated and told how to withdraw its consent."""
    if PartnerToken.objects.filter(partner=partner).exclude(current_version="").exists():
        partner_token_revoke(actor=None, partner=partner, reason="Offboarded")
    partner.refresh_from_db()
    if partner.status != Partner.Status.DEACTIVATED:
        partner_deactivate(actor=None, partner=partner, reason="Offboarded: the vendor's app was removed")
    with transaction.atomic():
        Partner.objects.filter(pk=partner.pk).update(offboarded_at=timezone.now())
        audit_record(
            actor=None,
            action="partner.offboarded",
            partner=partner,
            detail={"not_removed": refused[:50], "not_removed_count": len(refused)},
        )
    if partner.contact_email:
        context = {
            "partner": partner,
            "vendor": settings.CPV_VENDOR,
            "app_name": services.desired_grants()["displayName"],
            "client_id": app_for(partner).client_id,
            "not_removed": len(refused),
        }
        partner_email_send(
            partner=partner,
            subject=f"{settings.CPV_VENDOR.label}: your organisation has been offboarded",
            body=render_to_string("email/offboarded.txt", context),
        )
    logger.info("partner %s offboarded (%d customer(s) not removed)", partner.code, len(refused))
