"""The national clouds the simulator plays beside the global one: each with its own Entra ID, Partner Center and
Graph listeners, token issuers, resource identifiers, signing key and app registrations (FIDELITY.md, "National
clouds")."""

from __future__ import annotations

from dataclasses import dataclass

from simulator.world import GRAPH_RESOURCE, PARTNER_CENTER_RESOURCE

GLOBAL = "global"


@dataclass(frozen=True)
class NationalCloud:
    name: str
    # the resource identifiers (token audiences) of Microsoft Graph and Partner Center in this cloud
    graph_resource: str
    partner_center_resource: str
    # the host of the v1.0 access tokens' issuer, https://<host>/{tid}/
    sts_host: str
    # the discovery document's cloud_instance_name and a tenant's tenant_region_scope
    instance_name: str = "microsoftonline.com"
    region_scope: str = "EU"

    def audience(self, resource: str) -> str:
        """The `aud` this cloud's Entra ID writes for the simulator's canonical (global) resource identifier."""
        if resource == GRAPH_RESOURCE:
            return self.graph_resource
        if resource == PARTNER_CENTER_RESOURCE:
            return self.partner_center_resource
        return resource

    def foreign_identifiers(self) -> list[str]:
        """The global cloud's resource identifiers that are not this cloud's (unknown to its Entra ID and services)."""
        return [
            global_id
            for global_id, own in (
                (GRAPH_RESOURCE, self.graph_resource),
                (PARTNER_CENTER_RESOURCE, self.partner_center_resource),
            )
            if own != global_id
        ]

    def resource_identifiers(self) -> set[str]:
        return {self.graph_resource, self.partner_center_resource}

    def aliases(self) -> dict[str, str]:
        """This cloud's resource identifiers, each standing for the simulator's canonical one."""
        return {self.graph_resource: GRAPH_RESOURCE, self.partner_center_resource: PARTNER_CENTER_RESOURCE}


CLOUDS: dict[str, NationalCloud] = {
    GLOBAL: NationalCloud(GLOBAL, GRAPH_RESOURCE, PARTNER_CENTER_RESOURCE, "https://sts.windows.net"),
    # Graph: graph.microsoft.us (deployments.md); Partner Center is served to US Government partners by the global
    # endpoint and resource (partner-center-rest-urls lists no other); v1.0 issuer sts.windows.net
    "usgov": NationalCloud(
        "usgov",
        "https://graph.microsoft.us",
        PARTNER_CENTER_RESOURCE,
        "https://sts.windows.net",
        instance_name="microsoftonline.us",
        # b2b-government-national-clouds.md: a US Government tenant's discovery document at login.microsoftonline.com
        # carries "tenant_region_scope":"USGOV" (or "USG")
        region_scope="USGOV",
    ),
    "china": NationalCloud(
        "china",
        "https://microsoftgraph.chinacloudapi.cn",
        "https://partner.partnercenterapi.microsoftonline.cn",
        "https://sts.chinacloudapi.cn",
    ),
}
NATIONAL = tuple(name for name in CLOUDS if name != GLOBAL)
# the services each national cloud has listeners of its own for (Key Vault stays the vendor's, in the global cloud).
# Partner Center for Microsoft Cloud for US Government is the global endpoint (partner-center-rest-urls: "Partner
# Center for Microsoft Cloud for US Government | https://api.partnercenter.microsoft.com"; Partner-Center-PowerShell
# PartnerEnvironment.cs pairs AzureUSGovernment's login.microsoftonline.us with that PartnerCenterEndpoint): the
# global listener serves it; 21Vianet has its own.
NATIONAL_SERVICES: dict[str, tuple[str, ...]] = {
    "usgov": ("entra", "graph"),
    "china": ("entra", "partner_center", "graph"),
}


def clouds_served(cloud: str, service: str) -> tuple[str, ...]:
    """The clouds whose tokens `cloud`'s listener for `service` takes: its own, and for the global Partner Center the
    national clouds without a Partner Center of their own (US Government)."""
    if cloud == GLOBAL and service == "partner_center":
        return (GLOBAL, *(name for name in NATIONAL if service not in NATIONAL_SERVICES[name]))
    return (cloud,)
