"""The delegated permissions the vendor's app registration must list: the one table the consent, the README,
`.env.example` and the settings page are made from."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

PARTNER_CENTER = "partner_center"
GRAPH = "graph"

# Where the portal's "API permissions" page lists each API ("APIs my organization uses"), and its application id.
API_NAMES = {PARTNER_CENTER: "Microsoft Partner Center", GRAPH: "Microsoft Graph"}
API_APP_IDS = {
    PARTNER_CENTER: "fa3d9a0c-3fb0-42cc-9193-47c7ecd2edbd",
    GRAPH: "00000003-0000-0000-c000-000000000000",
}
# The OpenID Connect scopes msal adds to every sign-in: Microsoft Graph's, but never a product feature's.
OIDC_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})


@dataclass(frozen=True)
class RequiredPermission:
    api: str  # PARTNER_CENTER or GRAPH
    name: str
    # Only an administrator can consent to it, and only for the whole organisation.
    admin_only: bool
    # What the product does with it, for the README, the settings page and the words of a missing one.
    used_for: str
    # The delegated permission's id (the same in every tenant), as an app registration's `requiredResourceAccess`
    # lists it: Graph's permissions reference, and Partner Center's "user_impersonation | 1cebfa2a-…" table.
    id: str = ""

    @property
    def api_name(self) -> str:
        return API_NAMES[self.api]

    @property
    def label(self) -> str:
        return f"{self.api_name} {self.name}"


REQUIRED_PERMISSIONS: tuple[RequiredPermission, ...] = (
    RequiredPermission(
        PARTNER_CENTER,
        "user_impersonation",
        admin_only=False,
        used_for="acting in Partner Center as the partner's Admin Agent: customers and ApplicationConsent",
        id="1cebfa2a-fb4d-419e-b5f9-839b4383e05a",
    ),
    RequiredPermission(
        GRAPH,
        "User.Read",
        admin_only=False,
        used_for="signing the administrator in and reading their memberships",
        id="e1fe6dd8-ba31-4d61-89e7-88639da4683d",
    ),
    RequiredPermission(
        GRAPH,
        "RoleManagement.Read.Directory",
        admin_only=True,
        used_for="proving that the consenting account is a Global Administrator",
        id="741c54c3-0c1e-44a1-818b-3f97ab4e8c83",
    ),
    RequiredPermission(
        GRAPH,
        "DelegatedAdminRelationship.Read.All",
        admin_only=True,
        used_for="reading the partner's GDAP relationships before ApplicationConsent",
        id="0c0064ea-477b-4130-82a5-4c2cc4ff68aa",
    ),
    RequiredPermission(
        GRAPH,
        "GroupMember.Read.All",
        admin_only=True,
        used_for="checking that the consenting account is in AdminAgents and in the GDAP security groups",
        id="bc024368-1153-4739-b217-4326f2e966d0",
    ),
)
ROLE_CHECK = next(p for p in REQUIRED_PERMISSIONS if p.name == "RoleManagement.Read.Directory")
MEMBERSHIP_READ = next(p for p in REQUIRED_PERMISSIONS if p.name == "User.Read")
GDAP_READ = next(p for p in REQUIRED_PERMISSIONS if p.name == "DelegatedAdminRelationship.Read.All")
GROUP_MEMBERSHIP_READ = next(p for p in REQUIRED_PERMISSIONS if p.name == "GroupMember.Read.All")


def fingerprint(permissions: Iterable[RequiredPermission] | None = None) -> str:
    """A short stable digest of a permission list (the required one by default), kept with each consent."""
    listed = REQUIRED_PERMISSIONS if permissions is None else permissions
    text = "\n".join(sorted(f"{p.api}:{p.name.lower()}" for p in listed))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def granted_names(scope: str | Iterable[str]) -> list[str]:
    """The sorted, unique permission names in a `scope`, without OpenID Connect scopes and `.default`."""
    items = scope.split() if isinstance(scope, str) else list(scope)
    names = {item.rstrip("/").rpartition("/")[2] for item in items}
    return sorted(n for n in names if n and n.lower() not in OIDC_SCOPES and n != ".default")


def missing(granted: dict[str, list[str]]) -> list[RequiredPermission]:
    """The required permissions missing from `granted` (API -> permission names)."""
    have = {(api, name.lower()) for api, names in granted.items() for name in names}
    return [p for p in REQUIRED_PERMISSIONS if (p.api, p.name.lower()) not in have]
