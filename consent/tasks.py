"""Celery tasks of the consent app: thin callers of services, taking ids, never tokens."""

from __future__ import annotations

from celery import shared_task

from consent import services


@shared_task(name="consent.flows_expire", ignore_result=True)
def flows_expire() -> int:
    """Mark consent flows that never came back from Microsoft as expired (harmless if run twice)."""
    return services.consent_flows_expire()
