"""The Celery app. Worker and beat run as separate processes: `celery -A cpv worker`, `celery -A cpv beat`."""

from __future__ import annotations

import logging.config
import os
from typing import Any

from celery import Celery
from celery.signals import setup_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cpv.settings")

app = Celery("cpv")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# The beat schedule, in one place. Everything it triggers is a sweep that does no harm if run twice,
# and far-future work is scheduled in the database, never as a long ETA on the broker.
BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "consent-flows-expire": {"task": "consent.flows_expire", "schedule": 300.0},
    # Hourly: partners whose consent predates the required permissions are asked, once per list, to consent again.
    "consent-permissions-reconsent-ask": {"task": "consent.permissions_reconsent_ask", "schedule": 3600.0},
    # Hourly: queue renewals of the tokens that are due (spread over the hour) and retry disabling old versions.
    "consent-tokens-renew-sweep": {"task": "consent.tokens_renew_sweep", "schedule": 3600.0},
    # Daily: re-sync every active partner's customers and apply ApplicationConsent where it is missing.
    "consent-customers-sync-sweep": {"task": "consent.customers_sync_sweep", "schedule": 24 * 3600.0},
    # Each applied consent read back in its customer's tenant about daily, the reads spread over the day.
    "consent-consents-verify-sweep": {"task": "consent.consents_verify_sweep", "schedule": 600.0},
    # Twice a minute: the overview's counts over every partner and who needs attention, which a page reuses for a
    # minute (dashboard/selectors.py TRENDS_SECONDS), so that no request makes them while beat runs.
    "dashboard-overview-refresh": {"task": "dashboard.overview_refresh", "schedule": 30.0},
    # Every minute: webhook deliveries whose retry is due, whose lease lapsed or whose queueing was lost.
    "events-deliveries-sweep": {"task": "events.deliveries_sweep", "schedule": 60.0},
    # Daily: the app registrations' self-check (credentials accepted and their ends, the registration, Partner
    # Center), alerting operators.
    "consent-app-check": {"task": "consent.app_check", "schedule": 24 * 3600.0},
}
app.conf.beat_schedule = BEAT_SCHEDULE


@setup_logging.connect
def _configure_logging(**_: Any) -> None:
    """Workers log through the project's LOGGING (redaction included) instead of Celery's own setup."""
    from django.conf import settings

    from cpv.logs import install_on_all_handlers

    logging.config.dictConfig(settings.LOGGING)
    install_on_all_handlers()
