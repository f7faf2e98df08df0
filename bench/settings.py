"""The product's settings for the benchmarks' processes, with what the benchmark varies on top.

The benchmarks point DJANGO_SETTINGS_MODULE here instead of at `cpv.settings` only to set knobs that have
no environment variable of their own: the pace of Key Vault creates (0 when the simulator's vault limits
are off, as a vault without limits needs no pacing).
"""

from __future__ import annotations

import os

from cpv.settings import *  # noqa: F403

CPV_VAULT_CREATES_PER_SECOND = int(os.environ.get("CPV_BENCH_VAULT_CREATES_PER_SECOND", "29"))
# Work a benchmark queues but does not run goes to a queue of its own, removed afterwards.
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CPV_BENCH_DEFAULT_QUEUE", "celery")
