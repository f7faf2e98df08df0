"""The national-cloud table: every Microsoft host the control panel talks to comes from here. With CPV_CLOUD=custom
a partner cloud resolves to its own custom hosts when they are set (CPV_USGOV_AUTHORITY_HOST, ...), else to the
environment's hosts (CPV_AUTHORITY_HOST, ...), which stand for the global cloud."""

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
    # The national cloud whose protocols, resource identifiers and app registrations these hosts serve: the cloud's
    # own name, or for custom hosts (the simulator) the cloud they stand for.
    national: str = GLOBAL

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

    @property
    def token_exchange_audience(self) -> str:
        """The audience of the managed identity token an app exchanges in this cloud ("Configure an application to
        trust a managed identity": one value per cloud)."""
        return TOKEN_EXCHANGE_AUDIENCES.get(self.national, TOKEN_EXCHANGE_AUDIENCES[GLOBAL])

    @property
    def v1_issuer_host(self) -> str:
        """The host in the `iss` of Entra's v1.0 access tokens (what a client-credentials grant gets for an API that
        did not ask for v2.0 tokens): sts.windows.net, except in the cloud operated by 21Vianet."""
        return V1_ISSUER_HOSTS.get(self.national, V1_ISSUER_HOSTS[GLOBAL])


_PARTNER_CENTER_RESOURCE = "https://api.partnercenter.microsoft.com"
# workload-identity-federation-config-app-trust-managed-identity.md: the federated identity credential's audience
# "must be one of the following depending on the target cloud".
TOKEN_EXCHANGE_AUDIENCES = {
    GLOBAL: "api://AzureADTokenExchange",
    USGOV: "api://AzureADTokenExchangeUSGov",
    CHINA: "api://AzureADTokenExchangeChina",
}

# A Microsoft Q&A answer's table of the sovereign clouds' token issuers: "Azure AD for US Government:
# https://sts.windows.net, ...; Azure AD China operated by 21Vianet: https://sts.chinacloudapi.cn".
V1_ISSUER_HOSTS = {
    GLOBAL: "https://sts.windows.net",
    USGOV: "https://sts.windows.net",
    CHINA: "https://sts.chinacloudapi.cn",
}

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
        # Partner Center's REST URLs page: "Partner Center for Microsoft Cloud for US Government |
        # https://api.partnercenter.microsoft.com" (Partner-Center-PowerShell's PartnerEnvironment.cs pairs
        # login.microsoftonline.us with that endpoint). "usgov" is GCC High (and DoD, whose Graph is
        # dod-graph.microsoft.us, not modelled); a GCC (moderate) partner uses the worldwide endpoints: global.
        partner_center_url="https://api.partnercenter.microsoft.com",
        partner_center_resource=_PARTNER_CENTER_RESOURCE,
        graph_resource="https://graph.microsoft.us",
        vault_resource="https://vault.usgovcloudapi.net",
        vault_dns_suffix=".vault.usgovcloudapi.net",
        national=USGOV,
    ),
    CHINA: Cloud(
        name=CHINA,
        label="Microsoft Azure operated by 21Vianet (China)",
        # Entra's national-cloud page (entra-docs authentication-national-cloud.md, 2025) names
        # login.partner.microsoftonline.cn; Graph's deployments page still names login.chinacloudapi.cn.
        authority_host="https://login.partner.microsoftonline.cn",
        graph_url="https://microsoftgraph.chinacloudapi.cn",
        partner_center_url="https://partner.partnercenterapi.microsoftonline.cn",
        partner_center_resource="https://partner.partnercenterapi.microsoftonline.cn",
        graph_resource="https://microsoftgraph.chinacloudapi.cn",
        vault_resource="https://vault.azure.cn",
        vault_dns_suffix=".vault.azure.cn",
        gdap_api=False,
        national=CHINA,
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
        national=GERMANY,
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


# The national clouds that may have hosts and app registrations of their own beside the global cloud's.
NATIONAL_CLOUDS = (USGOV, CHINA)


def custom_cloud(*, authority_host: str, partner_center_url: str, graph_url: str, national: str = GLOBAL) -> Cloud:
    """The `custom` cloud: Microsoft's protocols on other hosts, standing for the `national` cloud (its resource
    identifiers, its GDAP availability, its app registrations)."""
    return replace(
        CLOUDS[national],
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


def resolve(
    partner_cloud: str, *, deployment_cloud: Cloud | None = None, custom_clouds: dict[str, Cloud] | None = None
) -> Cloud:
    """The endpoints for a partner in `partner_cloud`: on a `custom` deployment, that cloud's custom hosts
    (`custom_clouds`) when set, else the deployment's. Raises CloudRetiredError, its message for the person who chose
    it."""
    if deployment_cloud is None or custom_clouds is None:
        from django.conf import settings

        deployment_cloud = deployment_cloud or settings.CPV_CLOUD_CONFIG
        custom_clouds = custom_clouds if custom_clouds is not None else settings.CPV_CUSTOM_CLOUDS
    try:
        cloud = CLOUDS[partner_cloud]
    except KeyError:
        raise ValueError(f"unknown cloud {partner_cloud!r}; choose one of {', '.join(CLOUDS)}") from None
    if cloud.retired:
        raise CloudRetiredError(cloud.retired_reason)
    if deployment_cloud.name == CUSTOM:
        return custom_clouds.get(partner_cloud, deployment_cloud)
    return cloud
