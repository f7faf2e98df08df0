"""The probes: `/healthz` (the process serves) and `/readyz` (database, broker and vault answer), on top with the
pages because the vault check reaches into tokens."""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import connections
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from cpv.celery import app
from cpv.logs import redact
from partners.access import Role, SignInStep, role_of, staff_sign_in_step
from tokens.vault import get_vault, vault_urls

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    milliseconds: float
    error: str = ""

    def as_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"ok": self.ok, "ms": round(self.milliseconds, 1)}
        if self.error:
            data["error"] = self.error
        return data


def _describe(exc: BaseException) -> str:
    # The class and a short, redacted message: enough for an operator, never a URL's password or a token.
    message = redact(str(exc).splitlines()[0] if str(exc) else "")[:200]
    return f"{exc.__class__.__name__}: {message}" if message else exc.__class__.__name__


def _timed(name: str, check: Callable[[], None]) -> CheckResult:
    started = time.perf_counter()
    try:
        check()
    except Exception as exc:  # noqa: BLE001 - a readiness probe reports every failure, it never raises
        logger.warning("readiness check %s failed: %s", name, _describe(exc))
        return CheckResult(name, False, (time.perf_counter() - started) * 1000, _describe(exc))
    return CheckResult(name, True, (time.perf_counter() - started) * 1000)


def check_database() -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_broker() -> None:
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=3)
        # Opening a channel proves the broker answers, not only that a socket was accepted.
        connection.default_channel  # noqa: B018


def check_vault() -> None:
    # Every vault of VAULT_URLS: a partner whose token one of them keeps is served by no other.
    for url in vault_urls():
        get_vault(url).health()


CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "broker": check_broker,
    "vault": check_vault,
}


def run_checks() -> list[CheckResult]:
    return [_timed(name, check) for name, check in CHECKS.items()]


# A probe polled by anyone costs at most one round of checks (one vault read) per process this often.
READY_CACHE_SECONDS = 5.0
_ready_lock = threading.Lock()
_ready: tuple[float, list[CheckResult]] | None = None


_clock = time.monotonic


def checks_cached() -> list[CheckResult]:
    """The last round of checks while younger than READY_CACHE_SECONDS, else a new one (one round at a time, shared)."""
    global _ready
    with _ready_lock:
        now = _clock()
        if _ready is None or now - _ready[0] >= READY_CACHE_SECONDS:
            _ready = (now, run_checks())
        return _ready[1]


def checks_forget() -> None:
    global _ready
    with _ready_lock:
        _ready = None


def _may_see_details(request: HttpRequest) -> bool:
    token = settings.CPV_READYZ_TOKEN
    offered = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(offered.encode(), f"Bearer {token}".encode()):
        return True
    try:
        # staff whose sign-in is finished (a password without its TOTP code is not)
        return role_of(request.user) >= Role.VIEWER and staff_sign_in_step(request) == SignInStep.DONE
    except Exception:  # noqa: BLE001 - with the database down, the session cannot be read: no details
        return False


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and serving requests. Touches nothing else."""
    return JsonResponse({"status": "ok"})


@require_GET
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    """200 when database, broker and vault answer, else 503; each check's result only to staff or CPV_READYZ_TOKEN."""
    results = checks_cached()
    ok = all(r.ok for r in results)
    body: dict[str, object] = {"status": "ok" if ok else "failing"}
    if _may_see_details(request):
        body["checks"] = {r.name: r.as_dict() for r in results}
    return JsonResponse(body, status=200 if ok else 503)
