"""Which app registration and which Microsoft cloud serve a partner: the one place that chooses."""

from __future__ import annotations

from django.conf import settings

from cpv import clouds
from cpv.config import AppCredential, app_prefix
from partners.models import Partner

PRODUCTION = Partner.Environment.PRODUCTION.value
SANDBOX = Partner.Environment.SANDBOX.value


def registered_apps() -> dict[tuple[str, str], AppCredential]:
    """Every configured app registration by (national cloud, environment). CPV_CLIENT_ID (and CPV_SANDBOX_CLIENT_ID)
    is registered in the deployment's cloud (CPV_CLOUD, global for custom hosts); the others in their own cloud."""
    apps: dict[tuple[str, str], AppCredential] = dict(settings.CPV_NATIONAL_APPS)
    home = settings.CPV_CLOUD_CONFIG.national
    apps.setdefault((home, PRODUCTION), settings.CPV_APP)
    if settings.CPV_SANDBOX_APP is not None:
        apps.setdefault((home, SANDBOX), settings.CPV_SANDBOX_APP)
    return apps


def app_in(cloud: clouds.Cloud, environment: str = PRODUCTION) -> AppCredential | None:
    """The app registered in `cloud` for `environment` (a sandbox without its own app uses the cloud's production
    app), or None: an app registered in another cloud is never used (Microsoft's clouds do not know each other's)."""
    apps = registered_apps()
    return apps.get((cloud.national, environment)) or apps.get((cloud.national, PRODUCTION))


def app_for(partner: Partner) -> AppCredential:
    """The app registration a partner consents to, for its cloud and environment; one with no client id when its
    cloud has none (`app_refusal` says why, in words)."""
    return app_in(cloud_for(partner), partner.environment) or AppCredential(client_id="")


def app_refusal(cloud_name: str, environment: str = PRODUCTION) -> str | None:
    """Why a partner in `cloud_name` cannot consent for want of an app registered in its cloud, or None."""
    try:
        cloud = clouds.resolve(cloud_name)
    except (ValueError, clouds.CloudRetiredError) as exc:
        return str(exc)
    if app_in(cloud, environment) is not None:
        # The deployment's own cloud always has CPV_CLIENT_ID's entry; a missing one there is "not configured yet".
        return None
    label = clouds.CLOUDS[cloud.national].label
    prefix = app_prefix(cloud.national, PRODUCTION)
    return (
        f"The vendor has no app registered in {label}: Microsoft's national clouds only accept an app registered "
        f"in that cloud. Set {prefix}_CLIENT_ID with {prefix}_CLIENT_MANAGED_IDENTITY, {prefix}_CLIENT_CERTIFICATE or "
        f"{prefix}_CLIENT_SECRET."
    )


def cloud_for(partner: Partner) -> clouds.Cloud:
    """The Microsoft cloud a partner lives in. Raises clouds.CloudRetiredError for a cloud Microsoft retired."""
    return clouds.resolve(partner.cloud)
