"""A customer tenant's directory: its service principals and delegated permission grants (oauth2PermissionGrants).

Partner Center's ApplicationConsent creates, in the customer tenant, the vendor app's service principal and one
`AllPrincipals` grant per resource; Graph reads them back (`simulator/graph.py`); Entra issues a partner user's
customer-tenant token with the `scp` the grant for that resource holds (`simulator/entra.py`). Each tenant holds the
service principals of Microsoft's resources for the workloads it has: Microsoft Graph always, Exchange Online,
SharePoint Online and Azure Service Management where the tenant has them. See FIDELITY.md ("Customer tenants").
"""

from __future__ import annotations

import base64
import logging
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from simulator import published_scopes

logger = logging.getLogger(__name__)

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
EXCHANGE_APP_ID = "00000002-0000-0ff1-ce00-000000000000"
SHAREPOINT_APP_ID = "00000003-0000-0ff1-ce00-000000000000"
ARM_APP_ID = "797f4846-ba00-4fd7-ba43-dac1f8f63013"
# the tenant that owns Microsoft's first-party apps (their service principals' appOwnerOrganizationId)
MICROSOFT_SERVICES_TENANT = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"

# workload -> (resource app id, the service principal's display name), as Microsoft names them
WORKLOADS: dict[str, tuple[str, str]] = {
    "graph": (GRAPH_APP_ID, "Microsoft Graph"),
    "exchange": (EXCHANGE_APP_ID, "Office 365 Exchange Online"),
    "sharepoint": (SHAREPOINT_APP_ID, "Office 365 SharePoint Online"),
    "azure": (ARM_APP_ID, "Windows Azure Service Management API"),
}
# Microsoft Graph's service principal is in every tenant: it cannot be taken out
ALWAYS = ("graph",)
DEFAULT_WORKLOADS = tuple(WORKLOADS)


class MissingResource(Exception):
    """A grant names a resource whose service principal the tenant does not have."""

    def __init__(self, app_id: str) -> None:
        super().__init__(app_id)
        self.app_id = app_id


def workload_of(app_id: str) -> str | None:
    """The workload whose resource app id this is (None for any other app)."""
    wanted = app_id.lower()
    return next((name for name, (known, _) in WORKLOADS.items() if known == wanted), None)


def object_id(tenant_id: str, *parts: str) -> str:
    """A directory object's id: stable for the tenant and what it stands for."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "directory:" + tenant_id.lower() + ":" + ":".join(parts)))


def vendor_principal_id(tenant_id: str, app_id: str, serial: int = 0) -> str:
    """The object id of an app's service principal in a tenant (a re-created one gets a new id)."""
    parts = ("sp", app_id.lower(), str(serial)) if serial else ("sp", app_id.lower())
    return object_id(tenant_id, *parts)


def grant_id(client_id: str, resource_id: str) -> str:
    """An AllPrincipals grant's id as Graph shows it: base64url (no padding) of the client's and the resource's
    object ids in Microsoft's GUID byte order (oauth2permissiongrant-list.md: client `263a5b01-…` gives an id that
    begins `AVs6JuUDjkCF…`)."""
    raw = uuid.UUID(client_id).bytes_le + uuid.UUID(resource_id).bytes_le
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@dataclass
class ServicePrincipal:
    id: str
    app_id: str
    display_name: str
    app_owner_organization_id: str
    # the resource's workload ("graph", "exchange", ...) for Microsoft's service principals; None for other apps
    workload: str | None = None
    publisher_name: str | None = None
    created: float = 0.0


@dataclass
class PermissionGrant:
    id: str
    client_id: str
    resource_id: str
    scope: str
    consent_type: str = "AllPrincipals"
    principal_id: str | None = None


@dataclass
class Directory:
    tenant_id: str
    service_principals: list[ServicePrincipal] = field(default_factory=list)
    grants: list[PermissionGrant] = field(default_factory=list)
    # how many times a service principal was made for each app (a new one after a deletion gets a new id)
    serials: dict[str, int] = field(default_factory=dict)

    # ----- reads -----
    def by_app_id(self, app_id: str) -> ServicePrincipal | None:
        wanted = app_id.lower()
        return next((sp for sp in self.service_principals if sp.app_id.lower() == wanted), None)

    def by_id(self, object_id: str) -> ServicePrincipal | None:
        wanted = object_id.lower()
        return next((sp for sp in self.service_principals if sp.id == wanted), None)

    def grants_of(self, client_id: str) -> list[PermissionGrant]:
        return [g for g in self.grants if g.client_id == client_id]

    def scopes_for(self, app_id: str, resource_app_id: str) -> list[str] | None:
        """The permissions the tenant's AllPrincipals grant gives the app on the resource; None when the app has no
        service principal here, [] when it has one and no grant on that resource."""
        client = self.by_app_id(app_id)
        if client is None:
            return None
        resource = self.by_app_id(resource_app_id)
        if resource is None:
            return []
        names: list[str] = []
        for grant in self.grants_of(client.id):
            if grant.resource_id == resource.id and grant.consent_type == "AllPrincipals":
                names += [name for name in grant.scope.split(" ") if name]
        return list(dict.fromkeys(names))

    def workloads(self) -> list[str]:
        return [sp.workload for sp in self.service_principals if sp.workload]

    # ----- changes -----
    def add_workload(self, workload: str) -> ServicePrincipal:
        app_id, name = WORKLOADS[workload]
        found = self.by_app_id(app_id)
        if found is not None:
            return found
        sp = ServicePrincipal(
            id=object_id(self.tenant_id, "resource", app_id),
            app_id=app_id,
            display_name=name,
            app_owner_organization_id=MICROSOFT_SERVICES_TENANT,
            workload=workload,
            publisher_name="Microsoft Services",
        )
        self.service_principals.append(sp)
        return sp

    def remove_workload(self, workload: str) -> bool:
        """Take a resource's service principal out of the tenant (with the grants on it)."""
        if workload in ALWAYS:
            raise ValueError(f"the {workload} service principal is in every tenant")
        app_id, _ = WORKLOADS[workload]
        sp = self.by_app_id(app_id)
        if sp is None:
            return False
        self.service_principals.remove(sp)
        self.grants = [g for g in self.grants if g.resource_id != sp.id]
        return True

    def consent(
        self,
        *,
        app_id: str,
        display_name: str,
        owner_tenant_id: str,
        publisher: str | None,
        grants: list[tuple[str, list[str]]],
        now: float,
        create_missing: bool = False,
    ) -> ServicePrincipal:
        """An administrator's consent for the organisation: the app's service principal (made when missing) and,
        per resource, one AllPrincipals grant holding the permissions (replacing the app's earlier grant on that
        resource). Raises MissingResource, changing nothing, when a resource has no service principal here, unless
        `create_missing` and it is one of Microsoft's resources (WORKLOADS), whose service principal is then made
        (as Entra's own consent makes a missing first-party resource's)."""
        missing = [app for app, _ in grants if self.by_app_id(app) is None]
        for resource_app_id in missing:
            if not create_missing or workload_of(resource_app_id) is None:
                raise MissingResource(resource_app_id)
        for resource_app_id in missing:
            self.add_workload(str(workload_of(resource_app_id)))
        resources = [sp for resource_app_id, _ in grants if (sp := self.by_app_id(resource_app_id)) is not None]
        client = self.by_app_id(app_id)
        if client is None:
            serial = self.serials.get(app_id.lower(), 0)
            self.serials[app_id.lower()] = serial + 1
            client = ServicePrincipal(
                id=vendor_principal_id(self.tenant_id, app_id, serial),
                app_id=app_id.lower(),
                display_name=display_name,
                app_owner_organization_id=owner_tenant_id,
                publisher_name=publisher,
                created=now,
            )
            self.service_principals.append(client)
        for resource, (_, names) in zip(resources, grants, strict=True):
            scope = " ".join(dict.fromkeys(n for n in names if n))
            self.grants = [g for g in self.grants if not (g.client_id == client.id and g.resource_id == resource.id)]
            self.grants.append(PermissionGrant(grant_id(client.id, resource.id), client.id, resource.id, scope))
        return client

    def remove_app(self, app_id: str) -> bool:
        """Delete the app's service principal; its grants go with it (Entra deletes the grants of a deleted client)."""
        client = self.by_app_id(app_id)
        if client is None:
            return False
        self.service_principals.remove(client)
        self.grants = [g for g in self.grants if g.client_id != client.id]
        return True

    def remove_grants(self, app_id: str) -> int:
        client = self.by_app_id(app_id)
        if client is None:
            return 0
        before = len(self.grants)
        self.grants = [g for g in self.grants if g.client_id != client.id]
        return before - len(self.grants)

    def narrow(self, app_id: str, resource_app_id: str | None, remove: list[str]) -> int:
        """Take permissions out of the app's grants (on one resource, or every one); a grant left empty stays with
        an empty scope. Returns how many grants changed."""
        client = self.by_app_id(app_id)
        if client is None:
            return 0
        resource = self.by_app_id(resource_app_id) if resource_app_id else None
        if resource_app_id and resource is None:
            return 0
        changed = 0
        gone = set(remove)
        for grant in self.grants_of(client.id):
            if resource is not None and grant.resource_id != resource.id:
                continue
            kept = [n for n in grant.scope.split(" ") if n and n not in gone]
            if " ".join(kept) != grant.scope:
                grant.scope = " ".join(kept)
                changed += 1
        return changed

    # ----- (de)serialisation -----
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Directory:
        return cls(
            tenant_id=data["tenant_id"],
            service_principals=[ServicePrincipal(**sp) for sp in data.get("service_principals", [])],
            grants=[PermissionGrant(**g) for g in data.get("grants", [])],
            serials={k: int(v) for k, v in data.get("serials", {}).items()},
        )

    @classmethod
    def new(cls, tenant_id: str, workloads: tuple[str, ...] | list[str] = DEFAULT_WORKLOADS) -> Directory:
        directory = cls(tenant_id=tenant_id.lower())
        for workload in dict.fromkeys((*ALWAYS, *workloads)):
            directory.add_workload(workload)
        return directory


# ----- Graph's form -----
def service_principal_json(sp: ServicePrincipal) -> dict[str, Any]:
    """A `servicePrincipal` with the properties the list and get examples show (serviceprincipal-get.md). No
    `publisherName`: v1.0's servicePrincipal has none (resources/serviceprincipal.md, Graph's v1.0 metadata), though
    an older v1.0 example shows it; `publisher_name` is stored but not served."""
    return {
        "id": sp.id,
        "deletedDateTime": None,
        "accountEnabled": True,
        "alternativeNames": [],
        "appDisplayName": sp.display_name,
        "appDescription": None,
        "appId": sp.app_id,
        "applicationTemplateId": None,
        "appOwnerOrganizationId": sp.app_owner_organization_id,
        "appRoleAssignmentRequired": False,
        "description": None,
        "disabledByMicrosoftStatus": None,
        "displayName": sp.display_name,
        "homepage": None,
        "loginUrl": None,
        "logoutUrl": None,
        "notes": None,
        "notificationEmailAddresses": [],
        "preferredSingleSignOnMode": None,
        "preferredTokenSigningKeyThumbprint": None,
        "replyUrls": [],
        "servicePrincipalNames": [sp.app_id],
        "servicePrincipalType": "Application",
        "signInAudience": "AzureADMultipleOrgs",
        "tags": [],
        "tokenEncryptionKeyId": None,
        "info": {
            "logoUrl": None,
            "marketingUrl": None,
            "privacyStatementUrl": None,
            "supportUrl": None,
            "termsOfServiceUrl": None,
        },
        "addIns": [],
        "appRoles": [],
        "keyCredentials": [],
        "oauth2PermissionScopes": published_scopes.scopes_json(sp.app_id),
        "passwordCredentials": [],
        "resourceSpecificApplicationPermissions": [],
        "verifiedPublisher": {"displayName": None, "verifiedPublisherId": None, "addedDateTime": None},
    }


def grant_json(grant: PermissionGrant) -> dict[str, Any]:
    """An `oAuth2PermissionGrant` as the list example shows it (oauth2permissiongrant-list.md)."""
    return {
        "clientId": grant.client_id,
        "consentType": grant.consent_type,
        "id": grant.id,
        "principalId": grant.principal_id,
        "resourceId": grant.resource_id,
        "scope": grant.scope,
    }
