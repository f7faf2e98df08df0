"""Real Celery worker processes for the background tests of tokens/ and customers/: the environment that points
them at the test's simulator, database, Redis and vault key, and a client that queues their tasks."""

from __future__ import annotations

import base64
from typing import Any

from celery import Celery
from django.conf import settings
from django.db import connection


def worker_env(sim: Any, redis_url: str) -> dict[str, str]:
    """The environment of a worker sharing the test's simulator, database and Redis, and the local vault's key
    that `cpv_sim` gave the test."""
    env = {k: v for k, v in sim.env.items() if k.startswith(("CPV_", "REQUESTS_", "SSL_"))}
    env.pop("CPV_CLIENT_CERTIFICATE", None)
    env.pop("CPV_VENDOR_TENANT_ID", None)
    env.pop("CPV_CLIENT_CERTIFICATE_THUMBPRINT", None)
    db = connection.settings_dict
    env.update(
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        CELERY_BROKER_URL=redis_url,
        CELERY_RESULT_BACKEND=redis_url,
        CPV_THROTTLE_URL=redis_url,
        VAULT_BACKEND="local",
        VAULT_KEY=base64.urlsafe_b64encode(settings.VAULT_KEYS[0]).decode(),
        CELERY_TASK_SOFT_TIME_LIMIT="50",
        CELERY_TASK_TIME_LIMIT="60",
        CELERY_VISIBILITY_TIMEOUT="120",
    )
    return env


def celery_client(redis_url: str) -> Celery:
    """A client of the workers' broker (never the current app)."""
    app = Celery("tests", broker=redis_url, backend=redis_url, set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"], result_serializer="json")
    return app
