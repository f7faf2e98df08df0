from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from cpv.health import run_checks


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and serving requests. Touches nothing else."""
    return JsonResponse({"status": "ok"})


@require_GET
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    """The database, the broker and the vault answer; 503 with each check's result when one does not."""
    results = run_checks()
    ok = all(r.ok for r in results)
    return JsonResponse(
        {"status": "ok" if ok else "failing", "checks": {r.name: r.as_dict() for r in results}},
        status=200 if ok else 503,
    )
