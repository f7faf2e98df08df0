"""Tasks of the project package itself."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="cpv.ping")
def ping(value: str = "pong") -> str:
    """Echo `value`: proves that a worker consumes from the broker and reports through the result backend."""
    return value
