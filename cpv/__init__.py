"""The control panel's project package: settings, URLs, the Celery app and the national-cloud table."""

from __future__ import annotations

from cpv.celery import app as celery_app

__all__ = ["celery_app"]
