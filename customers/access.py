"""The GDAP pre-flight: before ApplicationConsent is spent on a customer, read in Graph, as the partner's consenting
user, whether Partner Center can accept it, and name the first missing piece.

Partner Center creates an ApplicationConsent only when the calling user is in AdminAgents and, in that customer,
holds a role that can consent applications through an active access assignment of an active GDAP relationship whose
security group contains the user (Partner Center's "GDAP and the secure application model"). Microsoft's pages name
different roles (that page: Global Administrator, Application Administrator, Cloud Application Administrator; the
Exchange Online GDAP page adds Privileged Role Administrator): any of the four passes, and a 403 that still comes
back is recorded for that customer and not spent again on the same evidence.

Graph requests a run spends: ceil(relationships / 300) to list them, one per relationship that can consent for a
customer still to be consented (its access assignments), ceil(groups / 20) membership checks, and the user's
memberships (a page per 100) once a customer gets as far as AdminAgents. Customers already consented get the
relationship-level verdict only (ending, ended), from the listing.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.defaultfilters import pluralize
from django.template.loader import render_to_string
from django.utils import timezone

from cpv.clouds import CLOUDS
from customers.models import WITHOUT_ACCESS, CustomerConsent, GdapNotice
from customers.words import GDAP_GUIDE
from events.models import EventType
from events.services import events_record
from microsoft import graph, identity, permissions
from partners.models import Customer, Partner
from partners.permissions import partner_permission_granted
from partners.registrations import cloud_for
from partners.services import audit_record
from tokens.access_tokens import GRAPH, PermissionMissing, TokenUnavailable, access_token_get
from tokens.alerts import alert_clear, alert_raise
from tokens.models import OperatorAlert
from tokens.vault import VaultError

logger = logging.getLogger(__name__)

Access = CustomerConsent.Access

# Role template ids (Microsoft Entra built-in roles) that can consent an application in a customer tenant.
GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"
CONSENT_ROLES = {
    GLOBAL_ADMINISTRATOR: "Global Administrator",
    "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3": "Application Administrator",
    "158c047a-c907-4556-b7ef-446551a6b5f7": "Cloud Application Administrator",
    "e8611ab8-c189-46e8-94e1-60213ab1f814": "Privileged Role Administrator",
}
# delegatedAdminRelationshipStatus: only `active` gives access (`expiring`: "The relationship has passed its
# expiration date"); the pending ones have not started.
ACTIVE = frozenset({"active"})
PENDING = frozenset({"created", "approvalPending", "approved", "activating"})
ENDED = frozenset({"expiring", "expired", "terminated", "terminating", "terminationRequested"})
# A request not approved within 90 days expires (Partner Center's GDAP pages).
APPROVAL_EXPIRY = timedelta(days=90)
# A relationship ending within this without auto-extend is a warning, and ended relationships are noticed this long.
ENDING_WARNING = timedelta(days=30)
# The relationships Microsoft created when it moved remaining DAP relationships to GDAP are named so (Partner
# Center's "Microsoft-led transition" page). Microsoft gave them nine roles, Privileged Role Administrator among
# them; one left without a role that can consent (trimmed since) gets words of its own.
TRANSITION_PREFIX = "MLT_"
ADMIN_AGENTS = "AdminAgents"
NO_AUTO_EXTEND = {"", "PT0S", "P0D"}
# Where a customer approves a pending GDAP request (Graph's GDAP API overview).
APPROVAL_LINK = "https://admin.microsoft.com/AdminPortal/Home#/partners/invitation/granularAdminRelationships/{id}"


class PreflightFailed(Exception):
    """The pre-flight could not read GDAP now (a Graph outage, no token): every customer keeps its last verdict."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class Verdict:
    access: str
    detail: dict[str, Any] = field(default_factory=dict)
    # A digest of what allowed it (the relationships and assignments through which the user holds a consent role).
    evidence: str = ""


@dataclass
class PreflightResult:
    partner_id: int
    checked: int = 0
    without_access: int = 0
    graph_requests: int = 0
    # NOT_AVAILABLE / NOT_CHECKED when the whole partner could not be checked, else "".
    partner_verdict: str = ""
    counts: dict[str, int] = field(default_factory=dict)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _role_names(roles: Iterable[str]) -> list[str]:
    return sorted(CONSENT_ROLES.get(role, role) for role in roles)


def _ending(relationship: graph.GdapRelationship, now: datetime) -> bool:
    """Ends within ENDING_WARNING and will not extend itself (a relationship holding Global Administrator cannot)."""
    if relationship.end_at is None or relationship.end_at - now > ENDING_WARNING:
        return False
    return relationship.auto_extend.upper() in NO_AUTO_EXTEND or GLOBAL_ADMINISTRATOR in relationship.roles


def _about(relationship: graph.GdapRelationship) -> dict[str, Any]:
    return {"relationship": relationship.display_name, "relationship_id": relationship.id}


def verdict_for(
    relationships: list[graph.GdapRelationship],
    *,
    assignments: dict[str, list[graph.GdapAssignment]] | None,
    member_of: set[str],
    admin_agent: bool | None,
    now: datetime,
) -> Verdict:
    """The first missing piece for one customer, from its relationships; with `assignments` None (a customer already
    consented) only what the relationships themselves say."""
    active = [r for r in relationships if r.status in ACTIVE]
    if not active:
        pending = sorted((r for r in relationships if r.status in PENDING), key=lambda r: r.created_at or now)
        if pending:
            newest = pending[-1]
            expires = newest.created_at + APPROVAL_EXPIRY if newest.created_at else None
            return Verdict(
                Access.PENDING_APPROVAL,
                {
                    **_about(newest),
                    "status": newest.status,
                    "requested_at": _iso(newest.created_at),
                    "expires_at": _iso(expires),
                    "approval_link": APPROVAL_LINK.format(id=newest.id),
                },
            )
        ended = sorted((r for r in relationships if r.status in ENDED), key=lambda r: r.end_at or now)
        if ended:
            last = ended[-1]
            return Verdict(Access.ENDED, {**_about(last), "status": last.status, "ended_at": _iso(last.end_at)})
        return Verdict(Access.NO_RELATIONSHIP)
    consenting = [r for r in active if r.roles & CONSENT_ROLES.keys()]
    if not consenting:
        transition = [r for r in active if r.display_name.upper().startswith(TRANSITION_PREFIX)]
        if transition:
            return Verdict(Access.TRANSITION_READ_ONLY, _about(transition[0]))
        return Verdict(Access.NO_CONSENT_ROLE, {**_about(active[0]), "relationships": [r.display_name for r in active]})
    if assignments is None:
        return _expiry_verdict(consenting, now=now, evidence="")
    holding = [
        (r, a) for r in consenting for a in assignments.get(r.id, []) if a.roles & r.roles & CONSENT_ROLES.keys()
    ]
    if not holding:
        return Verdict(Access.ROLE_UNASSIGNED, {**_about(consenting[0]), "roles": _role_names(consenting[0].roles)})
    working = [(r, a) for r, a in holding if a.status == "active"]
    if not working:
        relationship, assignment = holding[0]
        return Verdict(Access.ASSIGNMENT_INACTIVE, {**_about(relationship), "status": assignment.status})
    mine = [(r, a) for r, a in working if a.group_id in member_of]
    if not mine:
        relationship, _ = working[0]
        return Verdict(
            Access.NOT_IN_GROUP, {**_about(relationship), "groups": sorted({a.group_id for _, a in working})}
        )
    evidence = hashlib.sha256(
        "\n".join(sorted(f"{r.id}:{a.id}:{a.group_id}:{','.join(sorted(a.roles))}" for r, a in mine)).encode()
    ).hexdigest()[:16]
    if admin_agent is False:
        return Verdict(Access.NOT_ADMIN_AGENT, {}, evidence)
    return _expiry_verdict(list({r.id: r for r, _ in mine}.values()), now=now, evidence=evidence)


def _expiry_verdict(passing: list[graph.GdapRelationship], *, now: datetime, evidence: str) -> Verdict:
    if all(_ending(r, now) for r in passing):
        last = max(passing, key=lambda r: r.end_at or now)
        detail = {**_about(last), "ends_at": _iso(last.end_at), "global_admin": GLOBAL_ADMINISTRATOR in last.roles}
        return Verdict(Access.ENDING, detail, evidence)
    return Verdict(Access.OK, {}, evidence)


def _needs_consent(state: CustomerConsent | None, wanted_hash: str) -> bool:
    return state is None or state.status != CustomerConsent.Status.APPLIED or state.grants_hash != wanted_hash


def access_preflight(*, partner_id: int, wanted_hash: str, retry_refused: bool = False) -> PreflightResult:
    """Check GDAP for every present customer of the partner and store each verdict with its time; notice relationships
    ending or ended. `wanted_hash` is the grants' hash (customers applied with it get the relationship-level check
    only); `retry_refused` lets a customer Partner Center refused be tried again on the same evidence. Raises
    PreflightFailed (nothing written) and Partner.DoesNotExist."""
    partner = Partner.objects.get(pk=partner_id)
    result = PreflightResult(partner_id=partner.pk)
    customers = list(
        Customer.objects.filter(partner=partner, removed_at__isnull=True).select_related("application_consent")
    )
    states = {c.pk: getattr(c, "application_consent", None) for c in customers}
    cloud = CLOUDS.get(partner.cloud)
    if cloud is not None and not cloud.gdap_api:
        result.partner_verdict = Access.NOT_AVAILABLE
        verdicts = {c.pk: Verdict(Access.NOT_AVAILABLE, {"cloud": cloud.label}) for c in customers}
        return _store(partner, customers, verdicts, result, wanted_hash=wanted_hash, retry_refused=retry_refused)
    needed = (permissions.GDAP_READ, permissions.GROUP_MEMBERSHIP_READ)
    # What the consent granted in Graph, when known (an imported token's is not: Graph's answer tells).
    known = permissions.GRAPH in (partner.permissions_granted or {})
    missing = [p.label for p in needed if known and not partner_permission_granted(partner, p)]
    if missing:
        return _not_checked(partner, customers, result, {"missing": missing}, wanted_hash=wanted_hash)
    try:
        token = access_token_get(partner=partner, audience=GRAPH)
    except PermissionMissing:
        return _not_checked(partner, customers, result, {"missing": [p.label for p in needed]}, wanted_hash=wanted_hash)
    except TokenUnavailable as exc:
        raise PreflightFailed(str(exc), transient=False) from None
    except identity.IdentityError as exc:
        raise PreflightFailed(f"no Graph token: {exc}", transient=not exc.permanent) from None
    except VaultError as exc:
        raise PreflightFailed(f"no Graph token: {exc}", transient=exc.transient) from None
    client = graph.GraphClient(base_url=cloud_for(partner).graph_url, access_token=token.token)
    now = timezone.now()
    try:
        verdicts = _read_verdicts(client, partner, customers, states, wanted_hash=wanted_hash, now=now)
    except graph.GraphError as exc:
        result.graph_requests = client.requests
        if exc.status in (400, 403, 404):
            # Graph refused the permissions (an administrator removed a grant since) or does not serve the API here
            # (Microsoft's pages disagree on US Government): the customers are not checked, and posted as before.
            return _not_checked(partner, customers, result, {"refused": str(exc)}, wanted_hash=wanted_hash)
        raise PreflightFailed(f"reading GDAP in Microsoft Graph: {exc}", transient=exc.transient) from None
    result.graph_requests = client.requests
    return _store(partner, customers, verdicts, result, wanted_hash=wanted_hash, retry_refused=retry_refused, now=now)


def _not_checked(
    partner: Partner, customers: list[Customer], result: PreflightResult, detail: dict[str, Any], *, wanted_hash: str
) -> PreflightResult:
    result.partner_verdict = Access.NOT_CHECKED
    verdicts = {c.pk: Verdict(Access.NOT_CHECKED, detail) for c in customers}
    return _store(partner, customers, verdicts, result, wanted_hash=wanted_hash, retry_refused=False)


def _read_verdicts(
    client: graph.GraphClient,
    partner: Partner,
    customers: list[Customer],
    states: dict[int, CustomerConsent | None],
    *,
    wanted_hash: str,
    now: datetime,
) -> dict[int, Verdict]:
    relationships = client.delegated_admin_relationships()
    by_tenant: dict[str, list[graph.GdapRelationship]] = defaultdict(list)
    for relationship in relationships:
        by_tenant[relationship.customer_tenant_id].append(relationship)
    _notices_update(partner, customers, by_tenant, now=now)
    full = {c.pk for c in customers if _needs_consent(states[c.pk], wanted_hash)}
    assignments: dict[str, list[graph.GdapAssignment]] = {}
    for customer in customers:
        if customer.pk not in full:
            continue
        for relationship in by_tenant.get(str(customer.tenant_id).lower(), []):
            if relationship.status in ACTIVE and relationship.roles & CONSENT_ROLES.keys():
                assignments[relationship.id] = client.access_assignments(relationship.id)
    groups = {
        a.group_id
        for found in assignments.values()
        for a in found
        if a.status == "active" and a.roles & CONSENT_ROLES.keys()
    }
    member_of = client.member_groups(sorted(groups)) if groups else set()
    first_pass: dict[int, Verdict] = {}
    for customer in customers:
        mine = by_tenant.get(str(customer.tenant_id).lower(), [])
        first_pass[customer.pk] = verdict_for(
            mine,
            assignments=assignments if customer.pk in full else None,
            member_of=member_of,
            admin_agent=None,
            now=now,
        )
    # AdminAgents matters once a customer passes everything else, and where no relationship shows: Graph lists GDAP
    # relationships only to members of AdminAgents (an empty list otherwise). Read the memberships then, once.
    if not any(v.evidence or v.access == Access.NO_RELATIONSHIP for v in first_pass.values()):
        return first_pass
    admin_agent = ADMIN_AGENTS.lower() in {name.lower() for name in client.group_names()}
    if admin_agent:
        return first_pass
    verdicts = dict(first_pass)
    for pk, found in first_pass.items():
        if found.evidence or found.access == Access.NO_RELATIONSHIP:
            verdicts[pk] = Verdict(Access.NOT_ADMIN_AGENT, {"listing_empty": not relationships}, found.evidence)
    return verdicts


def _lost_access_announce(partner: Partner, lost: dict[str, list[Any]]) -> None:
    """The events of the customers whose GDAP verdict moved into WITHOUT_ACCESS, by verdict, in the caller's
    transaction."""
    for verdict, tenants in lost.items():
        kind = EventType.CUSTOMER_WITHOUT_ACCESS
        events_record(type=kind, partner=partner, customer_tenant_ids=tenants, detail={"access": verdict})


def _store(
    partner: Partner,
    customers: list[Customer],
    verdicts: dict[int, Verdict],
    result: PreflightResult,
    *,
    wanted_hash: str,
    retry_refused: bool,
    now: datetime | None = None,
) -> PreflightResult:
    now = now or timezone.now()
    with transaction.atomic():
        CustomerConsent.objects.bulk_create(
            [CustomerConsent(customer_id=c.pk) for c in customers], ignore_conflicts=True, batch_size=1000
        )
        rows = {
            row.customer_id: row
            for row in CustomerConsent.objects.select_for_update().filter(customer_id__in=[c.pk for c in customers])
        }
        changed = []
        lost: dict[str, list[Any]] = {}
        for customer in customers:
            row, found = rows[customer.pk], verdicts[customer.pk]
            access, detail = found.access, dict(found.detail)
            refused = row.refused_evidence
            passes = access in (Access.OK, Access.ENDING)
            if passes and found.evidence and found.evidence == refused and not retry_refused:
                # Partner Center refused this customer on this very evidence: not spent again until it changes.
                access = Access.REFUSED
                detail = {**row.access_detail, **detail} if row.access == Access.REFUSED else detail
            elif refused and (found.evidence != refused or retry_refused):
                refused = ""
            values = {
                "access": access,
                "access_detail": detail,
                "access_evidence": found.evidence,
                "refused_evidence": refused,
                "access_checked_at": now,
            }
            if access in WITHOUT_ACCESS and row.access not in WITHOUT_ACCESS:
                lost.setdefault(access, []).append(customer.tenant_id)
            for name, value in values.items():
                setattr(row, name, value)
            changed.append(row)
            result.counts[access] = result.counts.get(access, 0) + 1
            if access in WITHOUT_ACCESS and row.status != CustomerConsent.Status.APPLIED:
                result.without_access += 1
        CustomerConsent.objects.bulk_update(changed, list(values), batch_size=1000)
        _lost_access_announce(partner, lost)
        result.checked = len(changed)
        audit_record(
            actor=None,
            action="partner.gdap_checked",
            partner=partner,
            detail={
                "checked": result.checked,
                "without_access": result.without_access,
                "graph_requests": result.graph_requests,
                **({"verdict": result.partner_verdict} if result.partner_verdict else {}),
            },
        )
    logger.info(
        "partner %s: GDAP pre-flight of %d customers, %d without access, %d Graph requests",
        partner.code,
        result.checked,
        result.without_access,
        result.graph_requests,
    )
    return result


# --- relationships ending or ended -------------------------------------------------------------------------------


def _notices_update(
    partner: Partner,
    customers: list[Customer],
    by_tenant: dict[str, list[graph.GdapRelationship]],
    *,
    now: datetime,
) -> None:
    """Notice each relationship of a present customer that ends within ENDING_WARNING without auto-extend, or ended
    within that long while nothing else gives the customer a role that can consent: once each (a staff alert, one
    email to the partner listing the new ones); a notice no longer seen is resolved."""
    names = {str(c.tenant_id).lower(): c.company_name or c.domain or str(c.tenant_id) for c in customers}
    seen: dict[tuple[str, str], graph.GdapRelationship] = {}
    for tenant, relationships in by_tenant.items():
        if tenant not in names:
            continue
        covered = any(
            r.status in ACTIVE and r.roles & CONSENT_ROLES.keys() and not _ending(r, now) for r in relationships
        )
        for r in relationships:
            if r.status in ACTIVE and _ending(r, now):
                seen[(r.id, GdapNotice.Kind.ENDING)] = r
            elif r.status in ENDED and not covered and r.end_at and now - r.end_at <= ENDING_WARNING:
                seen[(r.id, GdapNotice.Kind.ENDED)] = r
    new: list[GdapNotice] = []
    with transaction.atomic():
        known = {(n.relationship_id, n.kind): n for n in GdapNotice.objects.select_for_update().filter(partner=partner)}
        gone = [n.pk for key, n in known.items() if key not in seen and n.resolved_at is None]
        GdapNotice.objects.filter(pk__in=gone).update(resolved_at=now)
        for (relationship_id, kind), r in seen.items():
            notice = known.get((relationship_id, kind))
            if notice is not None and notice.resolved_at is None:
                continue
            if notice is not None and notice.ends_at == r.end_at:
                # Seen again as it was: no second email.
                notice.resolved_at = None
                notice.save(update_fields=["resolved_at"])
                continue
            notice = notice or GdapNotice(partner=partner, relationship_id=relationship_id, kind=kind)
            notice.display_name = r.display_name[:200]
            notice.customer_tenant_id = r.customer_tenant_id
            notice.ends_at, notice.noticed_at, notice.emailed_at, notice.resolved_at = r.end_at, now, now, None
            notice.save()
            new.append(notice)
            audit_record(
                actor=None,
                action=f"partner.gdap_{kind}",
                partner=partner,
                detail={
                    "relationship": r.display_name,
                    "customer": names[r.customer_tenant_id],
                    "ends_at": _iso(r.end_at),
                },
            )
        if new:
            alert_raise(OperatorAlert.Condition.GDAP_ENDING, _alert_message(), now=now)
            notices = [(n, names[str(n.customer_tenant_id)]) for n in new]
            transaction.on_commit(lambda: _notice_email(partner, notices), robust=True)
        elif not GdapNotice.objects.filter(resolved_at__isnull=True).exists():
            alert_clear(OperatorAlert.Condition.GDAP_ENDING, now=now)


def _alert_message() -> str:
    open_notices = GdapNotice.objects.filter(resolved_at__isnull=True)
    ending = open_notices.filter(kind=GdapNotice.Kind.ENDING).count()
    ended = open_notices.filter(kind=GdapNotice.Kind.ENDED).count()
    partners = open_notices.values("partner").distinct().count()
    return (
        f"GDAP relationships of {partners} partner{pluralize(partners)}: {ending} end within {ENDING_WARNING.days} "
        f"days without auto-extend, {ended} ended; ApplicationConsent stops working for the customers they cover. "
        "Each partner was emailed; their customer lists show which"
    )


def _notice_email(partner: Partner, notices: list[tuple[GdapNotice, str]]) -> None:
    vendor = settings.CPV_VENDOR
    body = render_to_string(
        "email/gdap_notice.txt",
        {
            "partner": partner,
            "notices": notices,
            "vendor": vendor,
            "gdap_page": GDAP_GUIDE,
            "portal": f"{settings.CPV_BASE_URL}/portal/",
        },
    )
    send_mail(vendor.subject("GDAP relationships ending"), body, None, [partner.contact_email])
