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

    def audience(self, resource: str) -> str:
        """The `aud` this cloud's Entra ID writes for the simulator's canonical (global) resource identifier."""
        if resource == GRAPH_RESOURCE:
            return self.graph_resource
        if resource == PARTNER_CENTER_RESOURCE:
            return self.partner_center_resource
        return resource

    def aliases(self) -> dict[str, str]:
        """This cloud's resource identifiers, each standing for the simulator's canonical one."""
        return {self.graph_resource: GRAPH_RESOURCE, self.partner_center_resource: PARTNER_CENTER_RESOURCE}


CLOUDS: dict[str, NationalCloud] = {
    GLOBAL: NationalCloud(GLOBAL, GRAPH_RESOURCE, PARTNER_CENTER_RESOURCE, "https://sts.windows.net"),
    # Graph: graph.microsoft.us (deployments.md); Partner Center is served to US Government partners by the global
    # endpoint and resource (partner-center-rest-urls lists no other); v1.0 issuer sts.windows.net
    "usgov": NationalCloud("usgov", "https://graph.microsoft.us", PARTNER_CENTER_RESOURCE, "https://sts.windows.net"),
    "china": NationalCloud(
        "china",
        "https://microsoftgraph.chinacloudapi.cn",
        "https://partner.partnercenterapi.microsoftonline.cn",
        "https://sts.chinacloudapi.cn",
    ),
}
NATIONAL = tuple(name for name in CLOUDS if name != GLOBAL)
# the services each national cloud has listeners of its own for (Key Vault stays the vendor's, in the global cloud)
NATIONAL_SERVICES = ("entra", "partner_center", "graph")
