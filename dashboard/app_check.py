"""The self-check of the vendor's own app registrations: that Entra accepts each configured credential, when each
expires, what the registration itself holds (read from Graph where the app may read it), and whether Partner
Center takes the app's App+User tokens. Each finding in words, with the fix. `python manage.py app_check`, the
settings page and the daily task `consent.app_check` all run `app_check`."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from cpv.clouds import Cloud
from cpv.config import CERTIFICATE, MANAGED_IDENTITY, SECRET, AppCredential, Credential
from microsoft import app_credentials, identity, partner_center, permissions
from microsoft.errors import MicrosoftError
from microsoft.graph import GraphClient, GraphError
from partners.models import Partner
from partners.registrations import app_for, cloud_for
from tokens.access_tokens import access_token_get
from tokens.alerts import alert_clear, alert_raise
from tokens.models import OperatorAlert
from tokens.selectors import token_health_expression
from tokens.vault import process_opens_tokens

logger = logging.getLogger(__name__)

# Alerts before a credential's end: at 30 days, and again at 7 (each once: an open alert is not raised again).
EXPIRY_WARNINGS = (
    (timedelta(days=7), OperatorAlert.Condition.CREDENTIAL_EXPIRING_SOON),
    (timedelta(days=30), OperatorAlert.Condition.CREDENTIAL_EXPIRING),
)
MULTI_TENANT_AUDIENCES = frozenset({"AzureADMultipleOrgs", "AzureADandPersonalMicrosoftAccount"})
DIRECTORY_ROLE_CLAIMS = frozenset({"DirectoryRole", "All"})
# The URL names of the three sign-ins' callbacks (the staff sign-in's is `dashboard.sign_in.SIGN_IN.callback`,
# whose module needs the pages' forms: the name, not the module, is imported here).
CALLBACK_URL_NAMES = ("consent:callback", "portal:callback", "sign_in_microsoft_callback")
CPV_ENROLLMENT_URL = "https://learn.microsoft.com/partner-center/enroll/enroll-as-cpv"


class Severity(models.TextChoices):
    OK = "ok", "OK"
    INFO = "info", "Note"
    WARNING = "warning", "Warning"
    PROBLEM = "problem", "Problem"


class Kind(models.TextChoices):
    CREDENTIAL_ACCEPTED = "credential_accepted", "Entra accepts the credential"
    CREDENTIAL_REFUSED = "credential_refused", "Entra refuses the credential"
    CREDENTIAL_UNREADABLE = "credential_unreadable", "The credential cannot be read"
    CREDENTIAL_NOT_PROBED = "credential_not_probed", "The credential could not be probed"
    CREDENTIAL_EXPIRING = "credential_expiring", "The credential expires soon"
    CREDENTIAL_EXPIRED = "credential_expired", "The credential has expired"
    REGISTRATION_NOT_READ = "registration_not_read", "The registration was not read"
    REGISTRATION_NOT_FOUND = "registration_not_found", "Graph does not find the registration"
    PERMISSION_MISSING = "permission_missing", "A required permission is missing"
    GRANT_SCOPE_UNKNOWN = "grant_scope_unknown", "ApplicationConsent asks for a permission the resource lacks"
    GRANT_NOT_CHECKED = "grant_not_checked", "A grant's permissions could not be checked"
    APPLICATION_PERMISSION_LISTED = "application_permission_listed", "The registration lists application permissions"
    REDIRECT_URI_MISSING = "redirect_uri_missing", "A redirect URI is missing"
    NOT_MULTI_TENANT = "not_multi_tenant", "The app is not multi-tenant"
    NO_DIRECTORY_ROLES = "no_directory_roles", "id_tokens carry no directory roles"
    REGISTERED_CREDENTIAL_EXPIRING = "registered_credential_expiring", "A credential of the registration expires"
    REGISTRATION_OK = "registration_ok", "The registration holds what the control panel needs"
    PARTNER_CENTER_ACCEPTED = "partner_center_accepted", "Partner Center accepts the app"
    PARTNER_CENTER_REFUSED = "partner_center_refused", "Partner Center refuses the app"
    PARTNER_CENTER_NOT_CHECKED = "partner_center_not_checked", "Partner Center was not asked"


@dataclass(frozen=True)
class Finding:
    kind: Kind
    severity: Severity
    words: str
    fix: str = ""


@dataclass(frozen=True)
class CredentialFacts:
    """One configured credential as the check saw it: never its value."""

    label: str
    kind: str
    thumbprint_sha256: str = ""
    not_after: datetime | None = None
    accepted: bool | None = None
    # a managed identity's client id (the identity the host asks for its token)
    managed_identity_client_id: str = ""


@dataclass
class AppReport:
    """One configured app registration: its credentials and the findings, worst first when read."""

    setting: str  # the variable naming it: CPV_CLIENT_ID, CPV_SANDBOX_CLIENT_ID
    client_id: str
    credentials: list[CredentialFacts] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == Severity.PROBLEM]


def configured_apps() -> list[tuple[str, AppCredential]]:
    """The app registrations the control panel signs in as, with the variable that names each."""
    apps = [("CPV_CLIENT_ID", settings.CPV_APP)]
    if settings.CPV_SANDBOX_APP is not None:
        apps.append(("CPV_SANDBOX_CLIENT_ID", settings.CPV_SANDBOX_APP))
    return [(name, app) for name, app in apps if app.client_id]


def callback_urls() -> list[str]:
    """Every URL Microsoft posts a sign-in back to: the consent's, the partner portal's and the staff sign-in's."""
    base = settings.CPV_BASE_URL.rstrip("/")
    return [base + reverse(name) for name in CALLBACK_URL_NAMES]


def app_check(*, now: datetime | None = None, ask_partner_center: bool = True) -> list[AppReport]:
    """Check every configured app registration now; nothing is written. Raises nothing a Microsoft call raises:
    each failure is a finding."""
    now = now or timezone.now()
    cloud: Cloud = settings.CPV_CLOUD_CONFIG
    reports = []
    for setting, app in configured_apps():
        report = AppReport(setting=setting, client_id=app.client_id)
        token = _credentials_check(report, app, cloud=cloud, now=now)
        if token:
            _registration_check(report, app, cloud=cloud, token=token, now=now)
        else:
            report.findings.append(
                Finding(
                    Kind.REGISTRATION_NOT_READ,
                    Severity.INFO,
                    "The registration was not read: no credential got an app-only token from Entra",
                )
            )
        if ask_partner_center:
            report.findings.append(_partner_center_check(app))
        reports.append(report)
    return reports


def _credentials_check(report: AppReport, app: AppCredential, *, cloud: Cloud, now: datetime) -> str:
    """Probe each credential (client credentials in the app's own tenant) and read its dates: the first Graph token
    that came back, or ""."""
    graph_token = ""
    for credential in app.credentials:
        facts, findings = _credential_facts(credential, now=now)
        report.findings.extend(findings)
        if facts is None:
            report.credentials.append(CredentialFacts(label=credential.label, kind=credential.kind, accepted=False))
            continue
        try:
            token = identity.client_credentials_token(
                cloud=cloud, app=app, credential=credential, resource=cloud.graph_resource
            )
        except identity.InvalidClient as exc:
            report.credentials.append(_with(facts, accepted=False))
            report.findings.append(_refused(credential, exc))
            continue
        except MicrosoftError as exc:
            report.credentials.append(facts)
            report.findings.append(
                Finding(
                    Kind.CREDENTIAL_NOT_PROBED,
                    Severity.WARNING,
                    f"{credential.label} could not be probed: {exc}",
                    _NOT_PROBED_FIXES.get(
                        credential.kind,
                        "Set CPV_TENANT_ID to the tenant the app is registered in, or try again when Entra answers",
                    ),
                )
            )
            continue
        report.credentials.append(_with(facts, accepted=True))
        report.findings.append(Finding(Kind.CREDENTIAL_ACCEPTED, Severity.OK, f"Entra accepts {credential.label}"))
        graph_token = graph_token or token
    return graph_token


_NOT_PROBED_FIXES = {
    MANAGED_IDENTITY: "Assign the user-assigned managed identity to the host the control panel runs on (its "
    "Identity blade) and check that CPV_CLIENT_MANAGED_IDENTITY is its client id; or set CPV_TENANT_ID to the tenant "
    "the app is registered in",
}


def _with(facts: CredentialFacts, *, accepted: bool) -> CredentialFacts:
    return dataclasses.replace(facts, accepted=accepted)


def _credential_facts(credential: Credential, *, now: datetime) -> tuple[CredentialFacts | None, list[Finding]]:
    """A certificate's thumbprint and end, with a finding when it ended or ends within 30 days; a managed identity's
    client id (it has no key and no end); a secret's end is known only from the registration."""
    if credential.kind == MANAGED_IDENTITY:
        return (
            CredentialFacts(
                label=credential.label,
                kind=credential.kind,
                managed_identity_client_id=credential.managed_identity_client_id,
            ),
            [],
        )
    if credential.kind != CERTIFICATE:
        return CredentialFacts(label=credential.label, kind=credential.kind), []
    try:
        certificate = app_credentials.certificate_facts(credential.certificate_path)
    except app_credentials.CredentialUnreadable as exc:
        fix = "Point CPV_CLIENT_CERTIFICATE at a PEM file holding the private key and the certificate"
        return None, [Finding(Kind.CREDENTIAL_UNREADABLE, Severity.PROBLEM, str(exc), fix)]
    facts = CredentialFacts(
        label=credential.label,
        kind=credential.kind,
        thumbprint_sha256=certificate.thumbprint_sha256,
        not_after=certificate.not_after,
    )
    return facts, _expiry_findings(credential.label, certificate.not_after, now=now)


def _expiry_findings(label: str, not_after: datetime, *, now: datetime) -> list[Finding]:
    fix = (
        "Rotate it: python manage.py app_credential_rotate --generate (or the settings page), or upload a new one, "
        "list it first in CPV_CLIENT_CERTIFICATE, and remove this one once Entra accepts the new one"
    )
    if not_after <= now:
        return [Finding(Kind.CREDENTIAL_EXPIRED, Severity.PROBLEM, f"{label} expired on {not_after:%Y-%m-%d}", fix)]
    left = not_after - now
    if left <= timedelta(days=30):
        return [
            Finding(
                Kind.CREDENTIAL_EXPIRING,
                Severity.WARNING,
                f"{label} expires on {not_after:%Y-%m-%d} ({left.days} days left)",
                fix,
            )
        ]
    return []


_REFUSAL_FIXES = {
    700027: "Entra does not hold this certificate (or it is outside its dates): upload it to the app registration "
    "(Certificates & secrets), or remove it from CPV_CLIENT_CERTIFICATE",
    7000215: "The secret is not one of the app's: copy the secret's Value (not its ID) into CPV_CLIENT_SECRET, or "
    "remove it",
    7000222: "The secret has expired: add a new one to the app registration and list it first in CPV_CLIENT_SECRET",
    70021: "The app registration does not trust this managed identity: add a federated identity credential "
    "(Certificates & secrets > Federated credentials > Managed Identity) with the tenant's issuer "
    "(https://login.microsoftonline.com/<tenant id>/v2.0), the identity's object (principal) id as subject, and the "
    "cloud's audience (api://AzureADTokenExchange)",
}


def _refused(credential: Credential, exc: identity.InvalidClient) -> Finding:
    code = next((c for c in exc.codes if c in _REFUSAL_FIXES), None)
    fix = _REFUSAL_FIXES.get(code or 0, "Look at the app registration's Certificates & secrets")
    return Finding(Kind.CREDENTIAL_REFUSED, Severity.PROBLEM, f"Entra refuses {credential.label}: {exc}", fix)


def _registration_check(report: AppReport, app: AppCredential, *, cloud: Cloud, token: str, now: datetime) -> None:
    """Read the app's registration from Graph (Application.Read.All, optional) and compare it with what the control
    panel needs."""
    graph = GraphClient(base_url=cloud.graph_url, access_token=token)
    try:
        registration = graph.application(app.client_id)
    except GraphError as exc:
        if exc.status in (401, 403):
            report.findings.append(
                Finding(
                    Kind.REGISTRATION_NOT_READ,
                    Severity.INFO,
                    "The app may not read its own registration (Microsoft Graph Application.Read.All is not granted "
                    "to it in its tenant): its permissions, redirect URIs and registered credentials were not checked",
                    "Optional: assign Microsoft Graph's Application.Read.All app role to the app's service principal "
                    "in your own tenant only (an app role assignment, e.g. New-MgServicePrincipalAppRoleAssignment), "
                    "never as an API permission of the registration, which every partner would consent to",
                )
            )
        else:
            report.findings.append(
                Finding(Kind.REGISTRATION_NOT_READ, Severity.WARNING, f"The registration could not be read: {exc}")
            )
        return
    if registration is None:
        report.findings.append(
            Finding(
                Kind.REGISTRATION_NOT_FOUND,
                Severity.PROBLEM,
                f"Microsoft Graph finds no application with the client id {app.client_id} in tenant {app.tenant_id}",
                "Check CPV_CLIENT_ID and CPV_TENANT_ID against the app registration's overview page",
            )
        )
        return
    report.credentials = _secret_ends(report.credentials, app, registration)
    found = registration_findings(registration, app=app, now=now) + _grant_findings(graph)
    report.findings.extend(found)
    if not any(f.severity in (Severity.PROBLEM, Severity.WARNING) for f in found):
        words = "The registration holds every required permission and redirect URI, and is multi-tenant"
        report.findings.append(Finding(Kind.REGISTRATION_OK, Severity.OK, words))


def _secret_ends(
    facts: list[CredentialFacts], app: AppCredential, registration: dict[str, Any]
) -> list[CredentialFacts]:
    """Each configured secret's end, from the registration's passwordCredential whose `hint` (its first three
    characters) is the secret's alone; the expiry alerts read it as a certificate's."""
    ends: dict[str, list[datetime | None]] = {}
    for item in registration.get("passwordCredentials") or []:
        ends.setdefault(str(item.get("hint") or ""), []).append(parse_datetime(str(item.get("endDateTime") or "")))
    dated = []
    for credential, seen in zip(app.credentials, facts, strict=True):
        matching = ends.get(credential.secret[:3], []) if credential.kind == SECRET else []
        if len(matching) == 1 and matching[0] is not None:
            seen = dataclasses.replace(seen, not_after=matching[0])
        dated.append(seen)
    return dated


def _grant_findings(graph: GraphClient) -> list[Finding]:
    """Each scope CPV_APPLICATION_GRANTS asks of a resource, against what that resource publishes where Graph lists
    it (its service principal in the vendor's tenant): a name it does not publish would fail every
    ApplicationConsent."""
    findings = []
    for grant in settings.CPV_APPLICATION_GRANTS["applicationGrants"]:
        resource = str(grant["enterpriseApplicationId"])
        try:
            published = graph.published_scopes(resource)
        except GraphError as exc:
            words = f"The permissions of {resource} could not be listed ({exc}): its grant was not checked"
            findings.append(Finding(Kind.GRANT_NOT_CHECKED, Severity.INFO, words))
            continue
        if not published:
            words = f"Graph lists no permissions of {resource} in your tenant: its grant was not checked"
            findings.append(Finding(Kind.GRANT_NOT_CHECKED, Severity.INFO, words))
            continue
        known = {name.lower() for name in published}
        for scope in (s.strip() for s in str(grant["scope"]).split(",") if s.strip()):
            if scope.lower() not in known:
                findings.append(
                    Finding(
                        Kind.GRANT_SCOPE_UNKNOWN,
                        Severity.PROBLEM,
                        f"CPV_APPLICATION_GRANTS asks {resource} for {scope}, a permission it does not publish",
                        f"Correct or remove {scope} in CPV_APPLICATION_GRANTS' grant for {resource}",
                    )
                )
    return findings


def registration_findings(registration: dict[str, Any], *, app: AppCredential, now: datetime) -> list[Finding]:
    """What the application object lacks against the required permissions and the product's callback URLs, and
    what it says of its audience, its id_tokens' roles and its credentials' ends."""
    findings = []
    listed = {
        (str(resource.get("resourceAppId", "")).lower(), str(access.get("id", "")).lower())
        for resource in registration.get("requiredResourceAccess") or []
        for access in resource.get("resourceAccess") or []
        if str(access.get("type", "")) == "Scope"
    }
    for permission in permissions.REQUIRED_PERMISSIONS:
        if (permissions.API_APP_IDS[permission.api], permission.id) not in listed:
            findings.append(
                Finding(
                    Kind.PERMISSION_MISSING,
                    Severity.PROBLEM,
                    f"The registration does not list the delegated permission {permission.label}, needed for "
                    f"{permission.used_for}",
                    f"API permissions → Add a permission → {permission.api_name} → Delegated permissions → "
                    f"{permission.name}; partners then consent again",
                )
            )
    roles = [
        f"{resource.get('resourceAppId')}/{access.get('id')}"
        for resource in registration.get("requiredResourceAccess") or []
        for access in resource.get("resourceAccess") or []
        if str(access.get("type", "")) == "Role"
    ]
    if roles:
        findings.append(
            Finding(
                Kind.APPLICATION_PERMISSION_LISTED,
                Severity.PROBLEM,
                f"The registration lists application permissions ({', '.join(roles)}): every partner's administrator "
                "would be asked to grant them in the partner's tenant",
                "API permissions → remove every Application permission: the control panel needs delegated ones only",
            )
        )
    registered = set((registration.get("web") or {}).get("redirectUris") or [])
    for url in callback_urls():
        if url not in registered:
            findings.append(
                Finding(
                    Kind.REDIRECT_URI_MISSING,
                    Severity.PROBLEM,
                    f"The redirect URI {url} is not registered: Entra refuses that sign-in (AADSTS50011)",
                    f"Authentication → Web → Redirect URIs → add {url}",
                )
            )
    findings.extend(_audience_findings(registration))
    findings.extend(_registered_credential_findings(registration, now=now))
    return findings


def _audience_findings(registration: dict[str, Any]) -> list[Finding]:
    findings = []
    audience = str(registration.get("signInAudience") or "")
    if audience not in MULTI_TENANT_AUDIENCES:
        findings.append(
            Finding(
                Kind.NOT_MULTI_TENANT,
                Severity.PROBLEM,
                f"The app's signInAudience is {audience or 'not set'}: partners' tenants cannot consent to it",
                "Authentication → Supported account types → Accounts in any organizational directory (multitenant)",
            )
        )
    claims = registration.get("groupMembershipClaims")
    if claims not in DIRECTORY_ROLE_CLAIMS:
        findings.append(
            Finding(
                Kind.NO_DIRECTORY_ROLES,
                Severity.INFO,
                f"groupMembershipClaims is {claims or 'not set'}: id_tokens carry no directory roles (wids), so the "
                "Global Administrator check reads Graph at every consent",
                'Optional: set "groupMembershipClaims": "DirectoryRole" in the app\'s manifest',
            )
        )
    return findings


def _registered_credential_findings(registration: dict[str, Any], *, now: datetime) -> list[Finding]:
    """Every credential the registration holds that ends within 30 days (an ended one is only noted)."""
    findings = []
    for item, what in (
        *((k, "certificate") for k in registration.get("keyCredentials") or []),
        *((p, "client secret") for p in registration.get("passwordCredentials") or []),
    ):
        end = parse_datetime(str(item.get("endDateTime") or ""))
        if end is None or end - now > timedelta(days=30):
            continue
        name = _registered_name(item, what)
        if end <= now:
            words, severity = f"The registration's {name} expired on {end:%Y-%m-%d}", Severity.INFO
        else:
            words, severity = f"The registration's {name} expires on {end:%Y-%m-%d}", Severity.WARNING
        findings.append(
            Finding(Kind.REGISTERED_CREDENTIAL_EXPIRING, severity, words, "Add a new one before, or remove it")
        )
    return findings


def _registered_name(item: dict[str, Any], what: str) -> str:
    if what == "client secret":
        return f"client secret {item.get('hint') or ''}… ({item.get('keyId')})"
    try:
        thumbprint = base64.b64decode(str(item.get("customKeyIdentifier") or ""), validate=True).hex().upper()
    except (binascii.Error, ValueError):
        thumbprint = ""
    return f"certificate {thumbprint or item.get('keyId')}"


def _partner_center_check(app: AppCredential) -> Finding:
    """Partner Center called with an App+User token of a partner of this app: a 401/403 to a valid token says the
    app may not be enrolled as a CPV app."""
    if not process_opens_tokens():
        return Finding(
            Kind.PARTNER_CENTER_NOT_CHECKED,
            Severity.INFO,
            "Partner Center was not asked: this process opens no partner's token",
            "Run python manage.py app_check on a worker",
        )
    partner = next(
        (
            p
            for p in Partner.objects.filter(status=Partner.Status.ACTIVE)
            .annotate(health=token_health_expression())
            .filter(health="healthy")
            .order_by("-token__last_renewed_at")[:50]
            if app_for(p).client_id == app.client_id
        ),
        None,
    )
    if partner is None:
        return Finding(
            Kind.PARTNER_CENTER_NOT_CHECKED,
            Severity.INFO,
            "Partner Center was not asked: no active partner of this app has a healthy token",
        )
    try:
        token = access_token_get(partner=partner)
        client = partner_center.PartnerCenterClient(
            base_url=cloud_for(partner).partner_center_url, access_token=token.token
        )
        client.organization_profile()
    except partner_center.MfaRequired as exc:
        return Finding(
            Kind.PARTNER_CENTER_NOT_CHECKED,
            Severity.INFO,
            f"Partner Center asked {partner.name}'s token for MFA: {exc}",
        )
    except (partner_center.Unauthorized, partner_center.Forbidden) as exc:
        return Finding(
            Kind.PARTNER_CENTER_REFUSED,
            Severity.PROBLEM,
            f"Partner Center refused a valid App+User token of {partner.name} ({exc}): this app id may not be "
            "enrolled as a CPV app in Partner Center",
            f"Register the app id {app.client_id} in Partner Center's CPV experience ({CPV_ENROLLMENT_URL}): "
            "adding it in the Azure portal alone does not authorize a CPV application",
        )
    except MicrosoftError as exc:
        return Finding(
            Kind.PARTNER_CENTER_NOT_CHECKED,
            Severity.WARNING,
            f"Partner Center could not be asked as {partner.name}: {exc}",
        )
    return Finding(
        Kind.PARTNER_CENTER_ACCEPTED, Severity.OK, f"Partner Center accepts the app's token of {partner.name}"
    )


def app_check_words(report: AppReport) -> str:
    """One app's findings in words, worst first, each with its fix; then each credential's thumbprint and end."""
    ranked = sorted(report.findings, key=lambda f: list(Severity).index(f.severity), reverse=True)
    words = [f"{f.severity.label}: {f.words}" + (f" (fix: {f.fix})" if f.fix else "") for f in ranked]
    words += [
        f"{c.label}: SHA-256 {c.thumbprint_sha256}, not after {c.not_after:%Y-%m-%d}"
        for c in report.credentials
        if c.thumbprint_sha256 and c.not_after
    ]
    return ". ".join(words)


def app_check_alerts(reports: list[AppReport], *, now: datetime | None = None) -> None:
    """The daily task's alerts: one while any finding is a problem; the expiry alerts at 30 and 7 days before an
    app's last credential of known end ends (each once: an open alert is not raised again); the fallback alert
    cleared once Entra accepts every credential."""
    now = now or timezone.now()
    problems = [f"{r.setting}: {f.words}" for r in reports for f in r.problems]
    if problems:
        alert_raise(
            OperatorAlert.Condition.APP_CHECK_FAILED, "The app self-check found: " + "; ".join(problems), now=now
        )
    else:
        alert_clear(OperatorAlert.Condition.APP_CHECK_FAILED, now=now)
    if reports and all(c.accepted for r in reports for c in r.credentials):
        alert_clear(OperatorAlert.Condition.CREDENTIAL_FALLBACK, now=now)
    credential_expiry_alerts(reports, now=now)


def credential_expiry_alerts(reports: list[AppReport], *, now: datetime) -> None:
    """For each threshold (30 days, 7 days): raise its alert while some app's longest-lived credential of known end
    (a certificate, or a secret the registration dates) ends within it, and clear it once none does."""
    ends = [
        (r.setting, max(c.not_after for c in r.credentials if c.not_after is not None))
        for r in reports
        if any(c.not_after is not None for c in r.credentials)
    ]
    for window, condition in EXPIRY_WARNINGS:
        ending = [(setting, end) for setting, end in ends if end - now <= window]
        if ending:
            words = ", ".join(f"{setting} on {end:%Y-%m-%d}" for setting, end in ending)
            alert_raise(
                condition,
                f"The app's last credential ends within {window.days} days ({words}): every renewal and "
                "ApplicationConsent stops then: rotate the certificate (python manage.py app_credential_rotate) or "
                "add a new one first in CPV_CLIENT_CERTIFICATE",
                now=now,
            )
        else:
            alert_clear(condition, now=now)
