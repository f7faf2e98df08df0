"""Granular delegated admin privileges (GDAP) in a partner tenant: security groups, relationships, assignments.

Plain dataclasses the world holds per partner (`Partner.security_groups`, `Partner.relationships`), the rules that
read them (which roles a partner user holds in a customer tenant) and their Graph form
(`delegatedAdminRelationship`, `delegatedAdminAccessAssignment`). See FIDELITY.md ("GDAP") for the sources.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import math
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

# Role template ids (MicrosoftDocs/entra-docs docs/identity/role-based-access-control/permissions-reference.md)
GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"
APPLICATION_ADMINISTRATOR = "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3"
CLOUD_APPLICATION_ADMINISTRATOR = "158c047a-c907-4556-b7ef-446551a6b5f7"
PRIVILEGED_ROLE_ADMINISTRATOR = "e8611ab8-c189-46e8-94e1-60213ab1f814"
DIRECTORY_READERS = "88d8e3e3-8f55-4a1e-953a-9b9898b8876b"
GLOBAL_READER = "f2ef992c-3afb-46b9-b7cf-a126ee74c451"
DIRECTORY_WRITERS = "9360feb5-f418-4baa-8175-e2a00bac4301"
LICENSE_ADMINISTRATOR = "4d6ac14f-3453-41d0-bef9-a3e0c569773a"
HELPDESK_ADMINISTRATOR = "729827e3-9c14-49f7-bb1b-9608f156bbb8"
USER_ADMINISTRATOR = "fe930be7-5e62-47db-91af-98c3a49a38b1"
SERVICE_SUPPORT_ADMINISTRATOR = "f023fd81-a637-4b56-95fd-791ac0226033"
PRIVILEGED_AUTHENTICATION_ADMINISTRATOR = "7be44c8a-adaf-4e2a-84d6-ab2649e08a13"

# The roles that let a partner user create an ApplicationConsent in a customer tenant: Partner Center's "GDAP and
# the secure application model" names Global Administrator, Application Administrator and Cloud Application
# Administrator ("Application Administrator (replaced Privileged Role Administrator)", "no longer recommended");
# Microsoft's "Use the Exchange Online PowerShell v3 Module with GDAP and App Consent" still lists Privileged Role
# Administrator. Both are Microsoft's word: the four are accepted.
CONSENT_ROLES = frozenset(
    {GLOBAL_ADMINISTRATOR, APPLICATION_ADMINISTRATOR, CLOUD_APPLICATION_ADMINISTRATOR, PRIVILEGED_ROLE_ADMINISTRATOR}
)
# delegatedAdminRelationshipStatus and delegatedAdminAccessAssignmentStatus (Graph v1.0 resources)
RELATIONSHIP_STATUSES = (
    "activating",
    "active",
    "approvalPending",
    "approved",
    "created",
    "expired",
    "expiring",
    "terminated",
    "terminating",
    "terminationRequested",
)
ASSIGNMENT_STATUSES = ("pending", "active", "deleting", "deleted", "error")

ADMIN_AGENTS_GROUP = "AdminAgents"
HELPDESK_AGENTS_GROUP = "HelpdeskAgents"
DEFAULT_GROUP = "GDAP Cloud Application Administrators"
DEFAULT_ROLES = (CLOUD_APPLICATION_ADMINISTRATOR, DIRECTORY_READERS)
DEFAULT_DURATION = "P730D"
AUTO_EXTEND = "P180D"
NO_AUTO_EXTEND = "PT0S"
# Generated relationships start here (a fixed date, so that a seed always gives the same world) and extend
# themselves by 180 days whenever they reach their end, as autoExtendDuration P180D does.
GENERATED_ACTIVATED = dt.datetime(2026, 6, 1, tzinfo=dt.UTC).timestamp()
DAY = 86400.0

# The Microsoft-led transition's relationship (Partner Center "Microsoft-led transition from DAP to GDAP"): nine
# roles, all assigned to the Admin Agents group, two of them to the Helpdesk Agents group, for one year.
MLT_ROLES = (
    DIRECTORY_READERS,
    DIRECTORY_WRITERS,
    GLOBAL_READER,
    LICENSE_ADMINISTRATOR,
    SERVICE_SUPPORT_ADMINISTRATOR,
    USER_ADMINISTRATOR,
    PRIVILEGED_ROLE_ADMINISTRATOR,
    HELPDESK_ADMINISTRATOR,
    PRIVILEGED_AUTHENTICATION_ADMINISTRATOR,
)
MLT_HELPDESK_ROLES = (SERVICE_SUPPORT_ADMINISTRATOR, HELPDESK_ADMINISTRATOR)
MLT_DURATION = "P365D"

_DURATION_RE = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")


def group_id(tenant_id: str, display_name: str) -> str:
    """A security group's object id: stable for the tenant and the group's name (AdminAgents included)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"group:{tenant_id.lower()}:{display_name}"))


def duration_seconds(duration: str) -> float:
    """Seconds of an ISO 8601 duration of the forms Graph uses here (`P730D`, `P180D`, `PT0S`, `P0D`)."""
    match = _DURATION_RE.match(duration)
    if match is None or duration in ("P", "PT"):
        raise ValueError(f"unsupported duration {duration!r}")
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return days * DAY + hours * 3600.0 + minutes * 60.0 + seconds


@dataclass
class SecurityGroup:
    id: str
    display_name: str
    # object ids of the users who are direct members
    members: list[str] = field(default_factory=list)


@dataclass
class AccessAssignment:
    id: str
    # the access container: a security group of the partner tenant
    group_id: str
    roles: list[str]
    status: str
    created: float
    last_modified: float


@dataclass
class Relationship:
    id: str
    display_name: str
    customer_tenant_id: str
    customer_name: str
    roles: list[str]
    status: str
    duration: str
    auto_extend: str
    created: float
    last_modified: float
    activated: float | None = None
    end: float | None = None
    assignments: list[AccessAssignment] = field(default_factory=list)

    def refresh(self, now: float) -> None:
        """Move the relationship on to `now`: an active one past its end extends itself by autoExtendDuration, or
        expires (and its assignments go) when it has none. A relationship holding Global Administrator never
        extends itself ("Don't autoextend GDAP with Global Administrator")."""
        if self.status != "active" or self.end is None or self.end > now:
            return
        step = duration_seconds(self.auto_extend)
        if step > 0 and GLOBAL_ADMINISTRATOR not in self.roles:
            periods = max(1, math.ceil((now - self.end) / step))
            self.end += periods * step
            self.last_modified = self.end - step
            return
        self.status = "expired"
        self.last_modified = self.end
        for assignment in self.assignments:
            assignment.status = "deleted"
            assignment.last_modified = self.end

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Relationship:
        data = dict(data)
        data["assignments"] = [AccessAssignment(**a) for a in data.get("assignments", [])]
        return cls(**data)


def roles_in_customer(
    relationships: list[Relationship], customer_tenant_id: str, group_ids: set[str], now: float
) -> set[str]:
    """The roles a member of `group_ids` holds in the customer: those of every active access assignment, of an
    active relationship with that customer, to one of the groups (and held by the relationship)."""
    held: set[str] = set()
    for relationship in relationships:
        if relationship.customer_tenant_id != customer_tenant_id:
            continue
        relationship.refresh(now)
        if relationship.status != "active":
            continue
        for assignment in relationship.assignments:
            if assignment.status == "active" and assignment.group_id in group_ids:
                held.update(set(assignment.roles) & set(relationship.roles))
    return held


# ----- Graph's form -----
def graph_time(timestamp: float | None) -> str | None:
    """Graph's DateTimeOffset: UTC with seven fractional digits (`2022-02-10T11:24:42.3148266Z`)."""
    if timestamp is None:
        return None
    moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"


def _etag(entity_id: str, last_modified: float) -> str:
    # RFC 7232 weak ETag; Graph's look like W/"JyIwMzAw...Jw==" (base64 of a quoted version string)
    version = uuid.uuid5(uuid.NAMESPACE_URL, f"etag:{entity_id}:{last_modified}").hex[:24]
    return 'W/"' + base64.b64encode(f"'\"{version}\"'".encode()).decode() + '"'


def relationship_json(relationship: Relationship) -> dict[str, Any]:
    """A `delegatedAdminRelationship` as the list and get answers show it."""
    return {
        "@odata.type": "#microsoft.graph.delegatedAdminRelationship",
        "@odata.etag": _etag(relationship.id, relationship.last_modified),
        "id": relationship.id,
        "displayName": relationship.display_name,
        "duration": relationship.duration,
        "customer": {"tenantId": relationship.customer_tenant_id, "displayName": relationship.customer_name},
        "accessDetails": {"unifiedRoles": [{"roleDefinitionId": role} for role in relationship.roles]},
        "status": relationship.status,
        "autoExtendDuration": relationship.auto_extend,
        "createdDateTime": graph_time(relationship.created),
        "lastModifiedDateTime": graph_time(relationship.last_modified),
        "activatedDateTime": graph_time(relationship.activated),
        "endDateTime": graph_time(relationship.end),
    }


def assignment_json(assignment: AccessAssignment) -> dict[str, Any]:
    """A `delegatedAdminAccessAssignment` as the list answer shows it."""
    return {
        "@odata.type": "#microsoft.graph.delegatedAdminAccessAssignment",
        "@odata.etag": _etag(assignment.id, assignment.last_modified),
        "id": assignment.id,
        "status": assignment.status,
        "createdDateTime": graph_time(assignment.created),
        "lastModifiedDateTime": graph_time(assignment.last_modified),
        "accessContainer": {"accessContainerId": assignment.group_id, "accessContainerType": "securityGroup"},
        "accessDetails": {"unifiedRoles": [{"roleDefinitionId": role} for role in assignment.roles]},
    }
