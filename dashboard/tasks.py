"""Celery tasks of the dashboard app: thin callers of its services."""

from __future__ import annotations

from celery import shared_task

from dashboard.app_check import app_check, app_check_alerts
from dashboard.selectors import overview_trends_refresh


@shared_task(name="consent.app_check", ignore_result=True)
def app_check_task() -> int:
    """The daily self-check of the app registrations: alerts while a problem holds, and at 30 and 7 days before the
    last certificate ends. Returns the number of problems. Harmless if run twice (an open alert is not raised
    again)."""
    reports = app_check()
    app_check_alerts(reports)
    return sum(len(r.problems) for r in reports)


@shared_task(name="dashboard.overview_refresh", ignore_result=True)
def overview_refresh_task() -> None:
    """Make the overview's trends of its default period anew (a beat, twice a minute), so that no staff request waits
    for the counts over every partner nor the ranking of who needs attention. Harmless if run twice."""
    overview_trends_refresh()
