from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest


def site(request: HttpRequest) -> dict[str, Any]:
    return {
        "cpv_mode": settings.CPV_MODE,
        "cpv_cloud": settings.CPV_CLOUD_CONFIG,
        "cpv_missing_for_consent": [] if settings.CPV_APP.configured else settings.CONFIG.missing_for_consent,
        # The vendor's branding (cpv.branding.Vendor) for the partner-facing layouts.
        "vendor": settings.CPV_VENDOR,
    }
