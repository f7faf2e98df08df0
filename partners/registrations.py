"""Which app registration and which Microsoft cloud serve a partner."""

from __future__ import annotations

from django.conf import settings

from cpv import clouds
from cpv.config import AppCredential
from partners.models import Partner


def app_for(partner: Partner) -> AppCredential:
    """The app registration a partner consents to: the sandbox's for a sandbox partner, when configured."""
    if partner.environment == Partner.Environment.SANDBOX and settings.CPV_SANDBOX_APP is not None:
        sandbox: AppCredential = settings.CPV_SANDBOX_APP
        return sandbox
    app: AppCredential = settings.CPV_APP
    return app


def cloud_for(partner: Partner) -> clouds.Cloud:
    """The Microsoft cloud a partner lives in. Raises clouds.CloudRetiredError for a cloud Microsoft retired."""
    return clouds.resolve(partner.cloud)
