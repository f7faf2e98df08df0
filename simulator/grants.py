"""Delegated permission grants: what a sign-in consents to, and what an access token's `scp` may then hold.

Entra records consent per tenant and client application as resource -> delegated permissions (the
oauth2PermissionGrants). The rules here follow Microsoft's pages (FIDELITY.md, "Consent"):

- `{resource}/.default` consents "all required permissions listed in the application registration (for all APIs
  in the list)", and only when nothing is granted yet for that resource or `prompt=consent` is sent
  (scopes-oidc.md, "The .default scope" and ".default when the user has already given consent");
- explicit scopes are consented one by one, listed in the registration or not (consent-types-developer.md,
  "Incremental and dynamic user consent");
- `openid profile offline_access email` are Microsoft Graph's permissions (scopes-oidc.md, "OpenID Connect
  scopes"), and the initial consent to an app includes Graph's `User.Read` (consent-types-developer.md,
  "Requesting individual user consent");
- the admin-restricted permissions need an administrator (scopes-oidc.md, "Admin-restricted permissions").
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from simulator.world import GRAPH_RESOURCE

logger = logging.getLogger(__name__)

# resource -> permissions
Grants = dict[str, set[str]]

OIDC_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})
DEFAULT_SCOPE = ".default"
# "the offline_access ... and User.Read ... permission are automatically included in the initial consent to an
# application" (consent-types-developer.md)
INITIAL_CONSENT = (GRAPH_RESOURCE, "User.Read")
# Delegated permissions whose "Admin Consent Required" is "Yes" in Microsoft Graph's permissions reference
# (microsoft-graph-docs-contrib concepts/permissions-reference.md); the scopes-oidc.md examples are among them.
ADMIN_CONSENT_REQUIRED: Mapping[str, frozenset[str]] = {
    GRAPH_RESOURCE: frozenset(
        {
            "Application.Read.All",
            "Application.ReadWrite.All",
            "DelegatedAdminRelationship.Read.All",
            "DelegatedAdminRelationship.ReadWrite.All",
            "Directory.AccessAsUser.All",
            "Directory.Read.All",
            "Directory.ReadWrite.All",
            "Group.Read.All",
            "Group.ReadWrite.All",
            "GroupMember.Read.All",
            "GroupMember.ReadWrite.All",
            "RoleManagement.Read.All",
            "RoleManagement.Read.Directory",
            "RoleManagement.ReadWrite.Directory",
            "User.Read.All",
        }
    ),
}


def plan(
    *,
    registration: Mapping[str, Iterable[str]],
    requested: Mapping[str, list[str]],
    oidc: Iterable[str],
    existing: Mapping[str, set[str]],
    prompt_consent: bool,
) -> tuple[Grants, list[str]]:
    """What a sign-in asking `requested` (resource -> permissions, `.default` included) and the OIDC scopes
    consents to, given what is already granted; and the `.default` resources that neither the registration
    lists nor any grant covers (AADSTS650057)."""
    consented: Grants = {}
    unlisted: list[str] = []
    for resource, permissions in requested.items():
        if DEFAULT_SCOPE in permissions:
            if existing.get(resource) and not prompt_consent:
                # "The .default scope parameter only triggers a consent prompt if consent hasn't been granted
                # for any delegated permission between the client and the resource"
                continue
            if not registration.get(resource):
                unlisted.append(resource)
                continue
            for listed, names in registration.items():
                consented.setdefault(listed, set()).update(names)
        else:
            consented.setdefault(resource, set()).update(permissions)
    oidc = set(oidc)
    if oidc:
        consented.setdefault(GRAPH_RESOURCE, set()).update(oidc)
    if not any(existing.values()):
        resource, permission = INITIAL_CONSENT
        consented.setdefault(resource, set()).add(permission)
    return consented, unlisted


def needing_an_administrator(consented: Grants, existing: Mapping[str, set[str]], *, prompt_consent: bool) -> list[str]:
    """The admin-restricted permissions among those the sign-in asks the user to consent to: the new ones, or all
    of them with `prompt=consent` ("If the user is allowed to consent for all the permissions that the application
    registered, they'll be shown the consent prompt. (If not, they'll be shown an error message...)")."""
    needed = []
    for resource, names in consented.items():
        asked = names if prompt_consent else names - existing.get(resource, set())
        needed += sorted(asked & ADMIN_CONSENT_REQUIRED.get(resource, frozenset()))
    return needed


def record(store: dict[str, set[str]], consented: Grants) -> None:
    """Consent accumulates: a later sign-in adds to what was granted, never takes away."""
    for resource, names in consented.items():
        store.setdefault(resource, set()).update(names)


def token_permissions(granted: set[str], requested: list[str]) -> list[str]:
    """The `scp` of an access token for `resource`: every permission granted for that resource ("encoded inside the
    access token is every permission that your application is granted for that resource", consent-types-developer.md),
    whether `.default` or explicit scopes were asked. Empty when an explicit permission asked is not granted: the
    token endpoint cannot prompt, so the client must sign the user in again (AADSTS65001)."""
    if not granted:
        return []
    if DEFAULT_SCOPE not in requested and not set(requested) <= granted:
        return []
    names = set(granted)
    # GUESS (observed tokens): offline_access is consented but never in an access token's scp
    names.discard("offline_access")
    return sorted(names, key=str.lower)


def from_scope_strings(scopes: Iterable[str], registration: Mapping[str, Iterable[str]]) -> Grants:
    """Grants for a sign-in that a state file of an earlier simulator kept as scope strings per tenant and app. That
    simulator gave every consented app the registration's whole list, so that is what the sign-in granted, with
    the OIDC scopes it asked."""
    consented: Grants = {listed: set(names) for listed, names in registration.items()}
    oidc = OIDC_SCOPES.intersection(scopes)
    if oidc:
        consented.setdefault(GRAPH_RESOURCE, set()).update(oidc)
    return consented
