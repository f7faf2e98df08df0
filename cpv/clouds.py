"""The national-cloud table: every Microsoft host the control panel talks to comes from here. With CPV_CLOUD=custom
every partner cloud resolves to the environment's hosts."""

from __future__ import annotations

from dataclasses import dataclass, replace
from urllib.parse import urlsplit

GLOBAL = "global"
USGOV = "usgov"
CHINA = "china"
GERMANY = "germany"
CUSTOM = "custom"


@dataclass(frozen=True)
class Cloud:
    """One national cloud's endpoints and the resource identifiers its tokens are requested for."""

    name: str
    label: str
    authority_host: str
    graph_url: str
    partner_center_url: str
    # Resource identifiers (token audiences). They are not always the API's host.
    partner_center_resource: str
    graph_resource: str
    vault_resource: str
    vault_dns_suffix: str
    retired: bool = False
    retired_reason: str = ""
    # Graph's GDAP API (delegatedAdminRelationships) is served here. Microsoft's pages disagree on US Government
    # (the list page's include says global only; newer GDAP pages mark L4 and L5 as served): it is tried there, and
    # a refusal leaves the customers unchecked. Every page marks 21Vianet as not served.
    gdap_api: bool = True

    @property
    def partner_center_scope(self) -> str:
        """What a token for Partner Center is asked for once the partner has consented."""
        return f"{self.partner_center_resource}/user_impersonation"

    @property
    def partner_center_default_scope(self) -> str:
        """The consent's scope: `.default` consents every permission the app registration lists."""
        return f"{self.partner_center_resource}/.default"

    @property
    def graph_scope(self) -> str:
        return f"{self.graph_resource}/.default"

    @property
    def is_microsoft(self) -> bool:
        """True for Microsoft's own hosts, where instance discovery and challenge checks stay on."""
        return self.name != CUSTOM

    def authority(self, tenant: str) -> str:
        return f"{self.authority_host}/{tenant}"


_PARTNER_CENTER_RESOURCE = "https://api.partnercenter.microsoft.com"

CLOUDS: dict[str, Cloud] = {
    GLOBAL: Cloud(
        name=GLOBAL,
        label="Microsoft global cloud",
        authority_host="https://login.microsoftonline.com",
        graph_url="https://graph.microsoft.com",
        partner_center_url="https://api.partnercenter.microsoft.com",
        partner_center_resource=_PARTNER_CENTER_RESOURCE,
        graph_resource="https://graph.microsoft.com",
        vault_resource="https://vault.azure.net",
        vault_dns_suffix=".vault.azure.net",
    ),
    USGOV: Cloud(
        name=USGOV,
        label="US Government (GCC High, DoD)",
        authority_host="https://login.microsoftonline.us",
        graph_url="https://graph.microsoft.us",
        # Partner Center serves US Government partners from the global endpoint.
        partner_center_url="https://api.partnercenter.microsoft.com",
        partner_center_resource=_PARTNER_CENTER_RESOURCE,
        graph_resource="https://graph.microsoft.us",
        vault_resource="https://vault.usgovcloudapi.net",
        vault_dns_suffix=".vault.usgovcloudapi.net",
    ),
    CHINA: Cloud(
        name=CHINA,
        label="Microsoft Azure operated by 21Vianet (China)",
        # Microsoft's sample configuration names login.partner.microsoftonline.cn; the documented
        # national-cloud authority is login.chinacloudapi.cn. Unverified which Partner Center expects.
        authority_host="https://login.chinacloudapi.cn",
        graph_url="https://microsoftgraph.chinacloudapi.cn",
        partner_center_url="https://partner.partnercenterapi.microsoftonline.cn",
        partner_center_resource="https://partner.partnercenterapi.microsoftonline.cn",
        graph_resource="https://microsoftgraph.chinacloudapi.cn",
        vault_resource="https://vault.azure.cn",
        vault_dns_suffix=".vault.azure.cn",
        gdap_api=False,
    ),
    GERMANY: Cloud(
        name=GERMANY,
        label="Microsoft Cloud Deutschland (retired)",
        authority_host="https://login.microsoftonline.de",
        graph_url="https://graph.cloudapi.de",
        partner_center_url="",
        partner_center_resource="",
        graph_resource="https://graph.cloudapi.de",
        vault_resource="https://vault.microsoftazure.de",
        vault_dns_suffix=".vault.microsoftazure.de",
        gdap_api=False,
        retired=True,
        retired_reason=(
            "Microsoft Cloud Deutschland was retired by Microsoft in 2021; "
            "partners there have moved to the global cloud."
        ),
    ),
}

# The clouds a partner may choose when it is invited or onboards itself.
PARTNER_CLOUD_CHOICES: list[tuple[str, str]] = [(c.name, c.label) for c in CLOUDS.values() if not c.retired]
# Every cloud a stored partner row may name (a retired one stays readable).
ALL_PARTNER_CLOUDS: list[tuple[str, str]] = [(c.name, c.label) for c in CLOUDS.values()]


class CloudRetiredError(ValueError):
    """A partner asked for a cloud Microsoft has retired."""


def custom_cloud(*, authority_host: str, partner_center_url: str, graph_url: str) -> Cloud:
    """The `custom` cloud: Microsoft's protocols on other hosts, with Microsoft's global resource identifiers."""
    return replace(
        CLOUDS[GLOBAL],
        name=CUSTOM,
        label="Custom hosts",
        authority_host=authority_host.rstrip("/"),
        partner_center_url=partner_center_url.rstrip("/"),
        graph_url=graph_url.rstrip("/"),
    )


def validate_https_url(name: str, value: str) -> str:
    """Return `value` without a trailing slash, or raise ValueError naming the variable."""
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"{name} must be an https:// URL with a host, got {value!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"{name} must not carry a query or a fragment, got {value!r}")
    return value.rstrip("/")


def resolve(partner_cloud: str, *, deployment_cloud: Cloud | None = None) -> Cloud:
    """The endpoints for a partner in `partner_cloud` (the `custom` cloud when the deployment runs on it).
    Raises CloudRetiredError, its message for the person who chose it."""
    if deployment_cloud is None:
        from django.conf import settings

        deployment_cloud = settings.CPV_CLOUD_CONFIG
    try:
        cloud = CLOUDS[partner_cloud]
    except KeyError:
        raise ValueError(f"unknown cloud {partner_cloud!r}; choose one of {', '.join(CLOUDS)}") from None
    if cloud.retired:
        raise CloudRetiredError(cloud.retired_reason)
    if deployment_cloud.name == CUSTOM:
        return deployment_cloud
    return cloud
