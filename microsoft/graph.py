"""Microsoft Graph as the partner's consenting user: the user's directory roles (for when no token lists them), its
group memberships, and the partner's GDAP relationships and their access assignments; in a customer's tenant, the
vendor app's service principal and its delegated permission grants. Failures come out as GraphError."""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import requests

from microsoft import http
from microsoft.errors import MicrosoftError, retry_after

logger = logging.getLogger(__name__)

HTTP_TIMEOUT = (5, 20)
# The user's memberships (groups and roles) come a page at a time (100 by default); past this many pages the
# listing is taken for a loop.
MAX_PAGES = 100
DIRECTORY_ROLE_TYPE = "#microsoft.graph.directoryRole"
GROUP_TYPE = "#microsoft.graph.group"
# delegatedAdminRelationships answers up to 300 a page when asked ("`$top` supports up to 300 objects").
RELATIONSHIP_PAGE = 300
# checkMemberGroups: "Up to 20 groups may be specified" in one request.
CHECK_MEMBER_GROUPS_MAX = 20
_FRACTION = re.compile(r"^(?P<head>[^.]+)\.(?P<digits>\d+)(?P<rest>.*)$")


@dataclass(frozen=True)
class GdapRelationship:
    """One delegatedAdminRelationship of the partner, as Graph lists it (role ids lower-cased)."""

    id: str
    display_name: str
    customer_tenant_id: str
    status: str
    roles: frozenset[str]
    created_at: datetime | None
    end_at: datetime | None
    auto_extend: str  # an ISO 8601 duration: "PT0S" is none


@dataclass(frozen=True)
class GdapAssignment:
    """One access assignment of a relationship: roles given to a security group in the partner's tenant."""

    id: str
    group_id: str
    status: str
    roles: frozenset[str]


@dataclass(frozen=True)
class ServicePrincipal:
    """An application's service principal in one tenant: its object id, app id and name."""

    id: str
    app_id: str
    display_name: str


@dataclass(frozen=True)
class PermissionGrant:
    """One oauth2PermissionGrant: a client's delegated scopes on a resource (`principal_id` empty for a grant to all
    users, `consentType` AllPrincipals)."""

    id: str
    client_id: str
    resource_id: str
    consent_type: str
    principal_id: str
    scope: str


def _when(value: Any) -> datetime | None:
    """Graph's DateTimeOffset (up to seven fractional digits, `Z` or an offset) as an aware datetime; a time without
    an offset is taken as UTC."""
    if not isinstance(value, str) or not value:
        return None
    match = _FRACTION.match(value)
    text = f"{match['head']}.{match['digits'][:6]}{match['rest']}" if match else value
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _roles(access_details: Any) -> frozenset[str]:
    roles = access_details.get("unifiedRoles") if isinstance(access_details, dict) else None
    return frozenset(
        str(role["roleDefinitionId"]).lower()
        for role in roles or []
        if isinstance(role, dict) and role.get("roleDefinitionId")
    )


class GraphError(MicrosoftError):
    """Graph refused or failed a call. The message holds the HTTP status and Graph's error code, never a token."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        code: str = "",
        transient: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.status = status
        self.code = code
        self.transient = transient


def _session() -> requests.Session:
    return http.session()


class GraphClient:
    """Calls Microsoft Graph with one delegated access token, which never reaches a repr or a log line."""

    def __init__(self, *, base_url: str, access_token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._access_token = access_token
        # How many requests this client sent (the pre-flight reports what it spent).
        self.requests = 0

    def __repr__(self) -> str:
        return f"GraphClient(base_url={self.base_url!r})"

    def _get(self, url: str) -> dict[str, Any]:
        return self._send("GET", url)

    def _get_or_none(self, url: str) -> dict[str, Any] | None:
        """The object at `url`, or None when Graph answers 404. Raises GraphError."""
        try:
            return self._get(url)
        except GraphError as exc:
            if exc.status == 404:
                return None
            raise

    def _send(self, method: str, url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        # The bearer token goes only to the Graph this client was made for, whatever a nextLink names.
        parts, base = urlsplit(url), urlsplit(self.base_url)
        if (parts.scheme, parts.netloc) != (base.scheme, base.netloc):
            raise GraphError(f"Microsoft Graph named a link on another host ({parts.netloc}); not followed")
        self.requests += 1
        try:
            response = _session().request(
                method,
                url,
                json=body,
                headers={"Authorization": f"Bearer {self._access_token}", "Accept": "application/json"},
                timeout=HTTP_TIMEOUT,
            )
        except requests.RequestException as exc:
            raise GraphError(
                f"Microsoft Graph could not be reached ({exc.__class__.__name__})", transient=True
            ) from None
        if response.status_code == 204:
            return {}
        if response.ok:
            try:
                body = response.json()
            except ValueError:
                raise GraphError("Microsoft Graph gave an unreadable answer", transient=True) from None
            if not isinstance(body, dict):
                raise GraphError("Microsoft Graph gave an unreadable answer", transient=True)
            return body
        try:
            error = response.json().get("error") or {}
        except (ValueError, AttributeError):
            error = {}
        code = str(error.get("code", "")) if isinstance(error, dict) else ""
        status = response.status_code
        raise GraphError(
            f"Microsoft Graph answered {status}" + (f" ({code})" if code else ""),
            status=status,
            code=code,
            transient=status == 429 or status >= 500,
            retry_after=retry_after(response.headers),
        )

    def _pages(self, url: str, what: str) -> Iterator[dict[str, Any]]:
        """The items of a collection, following `@odata.nextLink` for at most MAX_PAGES pages."""
        next_url: str | None = url
        for _ in range(MAX_PAGES):
            if next_url is None:
                return
            page = self._get(next_url)
            yield from (item for item in page.get("value") or [] if isinstance(item, dict))
            next_link = page.get("@odata.nextLink")
            next_url = str(next_link) if next_link else None
        raise GraphError(f"Microsoft Graph kept paging after {MAX_PAGES} pages of {what}")

    def _memberships(self, of_type: str) -> Iterator[dict[str, Any]]:
        # No OData cast: on a membership list it is an advanced query, refused without `ConsistencyLevel: eventual`.
        for item in self._pages(f"{self.base_url}/v1.0/me/transitiveMemberOf", "memberships"):
            if str(item.get("@odata.type", "")).lower() == of_type.lower():
                yield item

    def directory_role_templates(self) -> list[str | None]:
        """The role template ids of the user's directory roles, direct or through groups; None for an item Graph
        returns without `roleTemplateId`. Raises GraphError."""
        templates: list[str | None] = []
        for item in self._memberships(DIRECTORY_ROLE_TYPE):
            value = item.get("roleTemplateId")
            templates.append(str(value).lower() if value else None)
        return templates

    def group_names(self) -> set[str]:
        """The display names of the security groups the user is in, directly or not (read with GroupMember.Read.All;
        without it Graph leaves them empty). Raises GraphError."""
        return {str(item["displayName"]) for item in self._memberships(GROUP_TYPE) if item.get("displayName")}

    def delegated_admin_relationships(self) -> list[GdapRelationship]:
        """Every GDAP relationship of the partner, whatever its status (DelegatedAdminRelationship.Read.All).
        Raises GraphError."""
        query = urlencode({"$top": RELATIONSHIP_PAGE})
        url = f"{self.base_url}/v1.0/tenantRelationships/delegatedAdminRelationships?{query}"
        found = []
        for item in self._pages(url, "GDAP relationships"):
            customer = _object(item.get("customer"))
            if not item.get("id") or not customer.get("tenantId"):
                continue
            found.append(
                GdapRelationship(
                    id=str(item["id"]),
                    display_name=str(item.get("displayName") or ""),
                    customer_tenant_id=str(customer["tenantId"]).lower(),
                    status=str(item.get("status") or ""),
                    roles=_roles(item.get("accessDetails")),
                    created_at=_when(item.get("createdDateTime")),
                    end_at=_when(item.get("endDateTime")),
                    auto_extend=str(item.get("autoExtendDuration") or "PT0S"),
                )
            )
        return found

    def access_assignments(self, relationship_id: str) -> list[GdapAssignment]:
        """The access assignments of one relationship. Raises GraphError."""
        relationship = quote(relationship_id, safe="")
        url = f"{self.base_url}/v1.0/tenantRelationships/delegatedAdminRelationships/{relationship}/accessAssignments"
        found = []
        for item in self._pages(url, "access assignments"):
            container = _object(item.get("accessContainer"))
            if not item.get("id") or not container.get("accessContainerId"):
                continue
            found.append(
                GdapAssignment(
                    id=str(item["id"]),
                    group_id=str(container["accessContainerId"]).lower(),
                    status=str(item.get("status") or ""),
                    roles=_roles(item.get("accessDetails")),
                )
            )
        return found

    def member_groups(self, group_ids: list[str]) -> set[str]:
        """Which of `group_ids` the user is in, transitively, CHECK_MEMBER_GROUPS_MAX a request. Raises GraphError."""
        unique = sorted({group_id.lower() for group_id in group_ids})
        found: set[str] = set()
        for start in range(0, len(unique), CHECK_MEMBER_GROUPS_MAX):
            batch = unique[start : start + CHECK_MEMBER_GROUPS_MAX]
            page = self._send("POST", f"{self.base_url}/v1.0/me/checkMemberGroups", {"groupIds": batch})
            found |= {str(value).lower() for value in page.get("value") or [] if isinstance(value, str)}
        return found

    def service_principal(self, app_id: str) -> ServicePrincipal | None:
        """The service principal of `app_id` in the token's tenant, or None when Graph answers 404 (none there).
        Raises GraphError."""
        item = self._get_or_none(f"{self.base_url}/v1.0/servicePrincipals(appId='{quote(app_id, safe='')}')")
        if item is None:
            return None
        if not item.get("id"):
            raise GraphError("Microsoft Graph answered a service principal without an id")
        return ServicePrincipal(
            id=str(item["id"]).lower(),
            app_id=str(item.get("appId") or app_id).lower(),
            display_name=str(item.get("displayName") or ""),
        )

    def published_scopes(self, app_id: str) -> list[str] | None:
        """The delegated permissions the resource `app_id` publishes (its service principal's
        `oauth2PermissionScopes` values) in the token's tenant, or None when it has no service principal there.
        Raises GraphError."""
        item = self._get_or_none(f"{self.base_url}/v1.0/servicePrincipals(appId='{quote(app_id, safe='')}')")
        if item is None:
            return None
        scopes = item.get("oauth2PermissionScopes") or []
        return [str(s.get("value")) for s in scopes if isinstance(s, dict) and s.get("value")]

    def application(self, app_id: str) -> dict[str, Any] | None:
        """The application object (the app registration) of `app_id` in the token's tenant, as Graph answers it, or
        None when Graph answers 404. Needs Application.Read.All. Raises GraphError (403 without the permission)."""
        return self._get_or_none(f"{self.base_url}/v1.0/applications(appId='{quote(app_id, safe='')}')")

    def application_key_add(self, object_id: str, *, certificate_der: bytes, proof: str) -> dict[str, Any]:
        """addKey: the certificate (its public part only) added to the application `object_id`, with a proof of
        possession signed by one of its valid certificates: the new keyCredential. Raises GraphError."""
        body = {
            "keyCredential": {
                "type": "AsymmetricX509Cert",
                "usage": "Verify",
                "key": base64.b64encode(certificate_der).decode(),
            },
            "passwordCredential": None,
            "proof": proof,
        }
        return self._send("POST", f"{self.base_url}/v1.0/applications/{quote(object_id, safe='')}/addKey", body)

    def application_key_remove(self, object_id: str, *, key_id: str, proof: str) -> None:
        """removeKey: the key credential `key_id` taken off the application (204). Raises GraphError."""
        url = f"{self.base_url}/v1.0/applications/{quote(object_id, safe='')}/removeKey"
        self._send("POST", url, {"keyId": key_id, "proof": proof})

    def permission_grants(self, client_id: str) -> list[PermissionGrant]:
        """The delegated permission grants whose client is the service principal `client_id`, every page.
        Raises GraphError."""
        query = urlencode({"$filter": f"clientId eq '{client_id}'"}, quote_via=quote)
        found = []
        for item in self._pages(f"{self.base_url}/v1.0/oauth2PermissionGrants?{query}", "permission grants"):
            if not item.get("id") or not item.get("resourceId"):
                continue
            found.append(
                PermissionGrant(
                    id=str(item["id"]),
                    client_id=str(item.get("clientId") or "").lower(),
                    resource_id=str(item["resourceId"]).lower(),
                    consent_type=str(item.get("consentType") or ""),
                    principal_id=str(item.get("principalId") or "").lower(),
                    scope=str(item.get("scope") or ""),
                )
            )
        return found
