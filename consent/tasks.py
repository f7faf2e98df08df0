"""Celery tasks of the consent app: thin callers of services, taking ids, never tokens."""

from __future__ import annotations

from celery import shared_task

from consent import services
from partners.permissions import permissions_reconsent_ask


@shared_task(name="consent.flows_expire", ignore_result=True)
def flows_expire() -> int:
    """Mark consent flows that never came back from Microsoft as expired (harmless if run twice)."""
    return services.consent_flows_expire()


@shared_task(name="consent.permissions_reconsent_ask", ignore_result=True)
def permissions_reconsent_ask_task() -> int:
    """Ask partners whose consent predates the required-permission list to consent again, once per list."""
    return permissions_reconsent_ask()
