"""The partner's consent: invitations, self-onboarding, the Microsoft sign-in and its checks, vaulting. Partner
Center proves the Admin Agent role before the token is vaulted, so a failed attempt leaves no token behind."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from consent import oauth_state
from consent.models import ConsentFlow, ConsentFlowEvent
from consent.outcomes import outcome
from consent.sealing import SealError, seal, unseal
from cpv import clouds
from cpv.config import AppCredential
from customers.tasks import customers_sync_after_consent
from events.models import EventType
from events.services import event_record
from microsoft import graph, identity, partner_center, permissions
from partners.invitations import invitation_url, link_send_after_commit, links_invalidate_locked
from partners.models import Partner
from partners.permissions import partner_permissions_missing
from partners.registrations import app_for, app_refusal, cloud_for
from partners.services import Actor, PartnerError, audit_record, partner_create
from tokens.alerts import credential_refusals_alert
from tokens.models import PartnerToken
from tokens.store import Obtained, token_store
from tokens.vault import VaultError, secret_tags

logger = logging.getLogger(__name__)

SEAL_PURPOSE = "consent-flow"
BROWSER_COOKIE = "__Host-cpv-consent"
Status = ConsentFlow.Status


class ConsentUnavailable(Exception):
    """A flow cannot start (no app configured, a retired cloud, Microsoft unreachable); the message is for the
    partner."""

    def __init__(self, message: str, *, reason: str = "our_error") -> None:
        super().__init__(message)
        self.reason = reason


class CallbackRejected(Exception):
    """A callback that names no flow this browser may finish (unknown, used or expired state, no cookie); nothing
    written. `flow` is this browser's flow when the answer named one (a used or expired one)."""

    def __init__(self, message: str, *, reason: str, flow: ConsentFlow | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.flow = flow


def redirect_uri() -> str:
    """The one redirect URI registered for the app: CPV_BASE_URL + the callback path, never the Host header."""
    return settings.CPV_BASE_URL + reverse("consent:callback")


def consent_cloud_for(partner: Partner) -> clouds.Cloud:
    """The partner's cloud, or ConsentUnavailable (for the partner to read) when Microsoft retired it."""
    try:
        return cloud_for(partner)
    except clouds.CloudRetiredError as exc:
        raise ConsentUnavailable(str(exc), reason="retired_cloud") from None


# --- invitations and self-onboarding -----------------------------------------------------------------


@dataclass(frozen=True)
class Invitation:
    partner: Partner
    url: str


def partner_invite(
    *,
    actor: Actor,
    name: str,
    contact_email: str,
    cloud: str = clouds.GLOBAL,
    environment: str = Partner.Environment.PRODUCTION,
    tenant_id: str | uuid.UUID | None = None,
    send_email: bool = True,
) -> Invitation:
    """Create an `invited` partner and its link, emailed after commit: the Invitation. Raises PartnerError (nothing
    written), also for a cloud the vendor has no app registered in."""
    if refusal := app_refusal(cloud, environment):
        raise PartnerError(refusal)
    with transaction.atomic():
        partner = partner_create(
            actor=actor,
            name=name,
            contact_email=contact_email,
            cloud=cloud,
            environment=environment,
            tenant_id=tenant_id,
            status=Partner.Status.INVITED,
        )
        url = invitation_url(partner=partner, purpose="invite")
        audit_record(actor=actor, action="partner.invited", partner=partner, detail={"emailed": send_email})
        if send_email:
            link_send_after_commit(
                partner=partner,
                url=url,
                subject=f"please consent for {partner.name}",
                intro="You are invited to connect your Partner Center account. Open this link to review what is "
                "asked and to consent:",
            )
    return Invitation(partner=partner, url=url)


def self_onboarding_submit(
    *, name: str, contact_email: str, cloud: str, environment: str, signup_key: uuid.UUID
) -> Partner:
    """A partner registers itself (`pending`); the same `signup_key` again returns the first. Raises PartnerError."""
    existing = Partner.objects.filter(signup_key=signup_key).first()
    if existing is not None:
        return existing
    if cloud in clouds.CLOUDS and (refusal := app_refusal(cloud, environment)):
        raise PartnerError(refusal)
    try:
        return partner_create(
            actor=None,
            name=name,
            contact_email=contact_email,
            cloud=cloud,
            environment=environment,
            status=Partner.Status.PENDING,
            signup_key=signup_key,
        )
    except PartnerError:
        # Two submissions of one form can race; the loser finds the winner's partner.
        existing = Partner.objects.filter(signup_key=signup_key).first()
        if existing is not None:
            return existing
        raise


# --- the flow ---------------------------------------------------------------------------------------


def _event(flow: ConsentFlow, status: str, message: str = "", **detail: Any) -> None:
    ConsentFlowEvent.objects.create(flow=flow, status=status, message=message[:500], detail=detail)


def _move(flow: ConsentFlow, status: str, message: str = "", **detail: Any) -> None:
    """Move the flow on from the state it is in here, and only from that one (compare and set)."""
    changes: dict[str, Any] = {"status": status}
    if status not in ConsentFlow.OPEN:
        changes["finished_at"] = timezone.now()
        changes["sealed_flow"] = None  # the PKCE verifier and nonce are of no use once the flow is over
    if not ConsentFlow.objects.filter(pk=flow.pk, status=flow.status).update(**changes):
        raise RuntimeError(f"consent flow {flow.code} left state {flow.status} under us")
    for field, value in changes.items():
        setattr(flow, field, value)
    _event(flow, status, message, **detail)


class _Steps:
    """A callback's steps, kept beside its flow and written with its outcome. The row holds the claim
    (`code_received`, committed before Microsoft is called) until `finish` writes the outcome and every field the steps
    set in one UPDATE, compare-and-set from that claim, and the timeline in one INSERT, each step at its own time. A
    request that dies midway leaves the claimed flow, which `consent_flows_expire` ends; its token was never vaulted."""

    def __init__(self, flow: ConsentFlow) -> None:
        self.flow = flow
        self.claimed = flow.status
        self.fields: dict[str, Any] = {}
        self.timeline: list[tuple[str, str, dict[str, Any], datetime]] = []

    def note(self, status: str, message: str = "", **detail: Any) -> None:
        """A line of the timeline, written with the outcome."""
        self.timeline.append((status, message[:500], detail, timezone.now()))

    def set(self, **fields: Any) -> None:
        """Fields of the flow learnt on the way, written with the outcome."""
        self.fields.update(fields)
        for field, value in fields.items():
            setattr(self.flow, field, value)

    def move(self, status: str, message: str = "", **detail: Any) -> None:
        """An open state reached on the way: in memory and in the timeline."""
        self.flow.status = status
        self.note(status, message, **detail)

    def finish(self, status: str, message: str, *, fields: dict[str, Any] | None = None, **detail: Any) -> None:
        """Write the outcome `status` with the fields set on the way and `fields`, and the timeline ending in it.
        Raises RuntimeError when the row left its claimed state under us. The steps themselves are unchanged, so an
        outcome undone by its transaction can be followed by another."""
        changes = {**self.fields, **(fields or {}), "status": status, "finished_at": timezone.now()}
        changes["sealed_flow"] = None  # the PKCE verifier and nonce are of no use once the flow is over
        if not ConsentFlow.objects.filter(pk=self.flow.pk, status=self.claimed).update(**changes):
            raise RuntimeError(f"consent flow {self.flow.code} left state {self.claimed} under us")
        lines = [*self.timeline, (status, message[:500], detail, changes["finished_at"])]
        ConsentFlowEvent.objects.bulk_create(
            ConsentFlowEvent(flow=self.flow, status=line_status, message=text, detail=line_detail, created_at=at)
            for line_status, text, line_detail, at in lines
        )
        for field, value in changes.items():
            setattr(self.flow, field, value)


def _fail(steps: _Steps, reason: str, detail: str = "", *, status: str = Status.FAILED) -> ConsentFlow:
    flow = steps.flow
    steps.finish(
        status,
        outcome(reason).title,
        fields={"failure_reason": reason, "failure_detail": detail[:500]},
        reason=reason,
        detail=detail[:300],
    )
    logger.info("consent flow %s of partner %s ended: %s %s", flow.code, flow.partner.code, reason, detail)
    return flow


def consent_flow_start(
    *, partner: Partner, origin: str, browser_key: str, link_expires_at: datetime | None = None
) -> tuple[ConsentFlow, str]:
    """Begin a sign-in for `partner` from this browser, from a link of its live generation: the flow and Microsoft's
    URL. Raises ConsentUnavailable."""
    if partner.status == Partner.Status.DEACTIVATED:
        raise ConsentUnavailable("This partner is not accepting consent.", reason="expired_link")
    cloud = consent_cloud_for(partner)
    if refusal := app_refusal(partner.cloud, partner.environment):
        raise ConsentUnavailable(refusal)
    app = app_for(partner)
    if not app.configured:
        raise ConsentUnavailable("The vendor has not finished configuring its Microsoft app yet.")
    first = not PartnerToken.objects.filter(partner=partner).exclude(current_version="").exists()
    tenant = str(partner.tenant_id) if partner.tenant_id else "organizations"
    wanted = permissions.fingerprint()
    try:
        msal_flow = identity.auth_code_flow_start(
            cloud=cloud,
            app=app,
            tenant=tenant,
            redirect_uri=redirect_uri(),
            # Static consent: `.default` consents the registration's whole list, for every API in it.
            scopes=[cloud.partner_center_default_scope],
            # Once any grant exists, Microsoft shows no new permissions unless asked to: a first consent, one after
            # the required list changed, and one whose last consent lacked a permission ask for the consent page.
            prompt="consent"
            if first or partner.permissions_fingerprint != wanted or partner_permissions_missing(partner)
            else None,
        )
    except identity.IdentityError as exc:
        logger.warning("could not start a consent flow for partner %s: %s", partner.code, exc)
        raise ConsentUnavailable("Microsoft's sign-in could not be reached. Please try again shortly.") from None
    with transaction.atomic():
        flow = ConsentFlow.objects.create(
            partner=partner,
            kind=ConsentFlow.Kind.FIRST if first else ConsentFlow.Kind.RECONSENT,
            origin=origin,
            state_hash=oauth_state.digest(msal_flow["state"]),
            browser_hash=oauth_state.digest(browser_key),
            expires_at=timezone.now() + timedelta(minutes=settings.CPV_CONSENT_FLOW_MINUTES),
            link_generation=partner.link_generation,
            link_expires_at=link_expires_at,
            permissions_fingerprint=wanted,
        )
        flow.sealed_flow = seal({"flow": msal_flow, "tenant": tenant}, purpose=SEAL_PURPOSE, bound_to=str(flow.code))
        flow.save(update_fields=["sealed_flow"])
        _event(flow, Status.CREATED, "Started from the consent page", origin=origin, kind=flow.kind)
        _move(flow, Status.REDIRECTED, "Sent to Microsoft's sign-in", authority_tenant=tenant)
    return flow, str(msal_flow["auth_uri"])


def consent_link_live(flow: ConsentFlow, partner: Partner) -> bool:
    """Whether the flow's link still works: the live generation, unexpired, the partner not deactivated."""
    return (
        partner.status != Partner.Status.DEACTIVATED
        and flow.link_generation == partner.link_generation
        and flow.link_expires_at is not None
        and flow.link_expires_at > timezone.now()
    )


def consent_flow_retry(*, flow: ConsentFlow, browser_key: str) -> tuple[ConsentFlow, str]:
    """A new attempt from a failed one a retry can fix, with the same still-live link (its expiry stands): the flow and
    Microsoft's URL. Raises ConsentUnavailable (`expired_link` when the link no longer works)."""
    partner = Partner.objects.get(pk=flow.partner_id)
    if flow.is_open or flow.status == Status.VAULTED or not outcome(flow.failure_reason or "our_error").retry:
        raise ConsentUnavailable("This attempt cannot be tried again.", reason=flow.failure_reason or "our_error")
    if not consent_link_live(flow, partner):
        raise ConsentUnavailable(
            "The link this attempt came from was replaced, used or has expired: ask for a new one.",
            reason="expired_link",
        )
    return consent_flow_start(
        partner=partner, origin=flow.origin, browser_key=browser_key, link_expires_at=flow.link_expires_at
    )


def _find_flow(form: Mapping[str, str], browser_key: str | None) -> ConsentFlow:
    state_hash = oauth_state.state_digest(form.get("state"))
    if not state_hash:
        raise CallbackRejected("The answer from Microsoft carries no sign-in reference.", reason="no_state")
    # The partner's token pointer comes along: the token store reads where the new version goes from it.
    flow = ConsentFlow.objects.select_related("partner", "partner__token").filter(state_hash=state_hash).first()
    if flow is None:
        raise CallbackRejected("This sign-in is not one we started.", reason="unknown_state")
    if not oauth_state.browser_matches(browser_key, flow.browser_hash):
        raise CallbackRejected(
            "This sign-in was started in another browser (or cookies are blocked). Start again from your link.",
            reason="wrong_browser",
        )
    if flow.status != Status.REDIRECTED:
        raise CallbackRejected("This sign-in has already been used.", reason="used_state", flow=flow)
    if flow.expires_at <= timezone.now():
        raise CallbackRejected(
            "This sign-in took too long and has expired. Start again.", reason="expired_flow", flow=flow
        )
    return flow


def consent_flow_complete(*, form: Mapping[str, str], browser_key: str | None) -> ConsentFlow:
    """Finish the flow Microsoft's form_post belongs to: vaulted, declined or failed with a reason. Raises
    CallbackRejected, writing nothing, when it names no open flow of this browser."""
    flow = _find_flow(form, browser_key)
    # Single use even when the same answer is posted twice at once: only one UPDATE wins.
    if not ConsentFlow.objects.filter(pk=flow.pk, status=Status.REDIRECTED).update(status=Status.CODE_RECEIVED):
        raise CallbackRejected("This sign-in has already been used.", reason="used_state", flow=flow)
    flow.status = Status.CODE_RECEIVED
    steps = _Steps(flow)
    steps.note(Status.CODE_RECEIVED, "Came back from Microsoft")
    try:
        return _complete(steps, form)
    except Exception as exc:
        # Whatever broke, the partner gets a page and staff a reason; the flow never stays half-open.
        logger.exception("consent flow %s failed unexpectedly", flow.code)
        flow.refresh_from_db()
        if flow.is_open:
            _fail(steps, "our_error", f"unexpected {exc.__class__.__name__}")
        return flow


def consent_link_replaced(flow: ConsentFlow, partner: Partner) -> bool:
    """Whether a newer link replaced the one the flow started from (staff sent another, or the partner's portal made
    one). A consent that used the same link moves the generation on by one without replacing it: an attempt started
    beside it may still finish, and the later success wins."""
    if flow.link_generation is None or partner.link_generation == flow.link_generation:
        return False
    if partner.link_generation == flow.link_generation + 1:
        used_up = (
            ConsentFlow.objects.filter(partner=partner, link_generation=flow.link_generation, status=Status.VAULTED)
            .exclude(pk=flow.pk)
            .exists()
        )
        return not used_up
    return True


def _complete(steps: _Steps, form: Mapping[str, str]) -> ConsentFlow:
    flow, partner = steps.flow, steps.flow.partner
    if consent_link_replaced(flow, partner):
        # Before the code is redeemed: a replaced link (perhaps because it reached the wrong person) yields no token.
        return _fail(steps, "expired_link", "the link this sign-in started from was replaced while the admin signed in")
    error = form.get("error")
    if error:
        # Branch on `error`, never on Microsoft's free text; keep only the AADSTS number for reference.
        code = re.search(r"AADSTS(\d+)", form.get("error_description", ""))
        detail = error[:64] + (f" (AADSTS{code.group(1)})" if code else "")
        if error == "access_denied":
            return _fail(steps, "declined", detail, status=Status.DECLINED)
        return _fail(steps, "microsoft_error", detail[:100])

    try:
        sealed = unseal(flow.sealed_flow or b"", purpose=SEAL_PURPOSE, bound_to=str(flow.code))
    except SealError:
        return _fail(steps, "our_error", "the stored sign-in could not be opened")
    cloud = consent_cloud_for(partner)
    app = app_for(partner)
    auth_response = {k: v for k, v in form.items() if k in {"code", "state", "session_state", "client_info"}}
    try:
        token = identity.auth_code_flow_finish(
            cloud=cloud, app=app, tenant=sealed["tenant"], flow=sealed["flow"], auth_response=auth_response
        )
    except identity.MfaRequired as exc:
        return _fail(steps, "no_mfa", str(exc))
    except identity.ConditionalAccessBlocked as exc:
        return _fail(steps, "conditional_access", str(exc))
    except identity.InvalidClient as exc:
        logger.error("OPERATOR ALERT: the app credential was refused while finishing a consent: %s", exc)  # noqa: TRY400 - the traceback adds nothing
        return _fail(steps, "our_error", str(exc))
    except identity.IdTokenInvalid as exc:
        logger.warning("consent flow %s: id_token rejected: %s", flow.code, exc)
        return _fail(steps, "our_error", f"id_token rejected: {exc}")
    except identity.IdentityError as exc:
        return _fail(steps, "microsoft_error", str(exc))
    credential_refusals_alert(token.refused)

    claims = token.id_token_claims
    tenant_id = uuid.UUID(str(claims["tid"]))
    steps.set(
        tenant_id=tenant_id,
        user_oid=uuid.UUID(str(claims["oid"])),
        user_name=str(claims.get("preferred_username", ""))[:254],
    )
    steps.move(Status.TOKEN_ACQUIRED, "Microsoft issued a token", tenant_id=str(tenant_id), user=flow.user_name)

    if partner.tenant_id and partner.tenant_id != tenant_id:
        return _fail(steps, "wrong_tenant", f"signed in to tenant {tenant_id}, expected {partner.tenant_id}")
    if Partner.objects.filter(tenant_id=tenant_id).exclude(pk=partner.pk).exists():
        return _fail(steps, "tenant_taken", f"tenant {tenant_id} belongs to another partner")
    # MFA: the Partner Center token's own `amr`, which is what Partner Center itself checks (a v2.0 id_token
    # carries no `amr`). Microsoft's own APIs' tokens are opaque to clients: an unreadable token or one without
    # `amr` is "unknown", and Partner Center's verdict below decides.
    pc_claims = identity.access_token_claims(token.access_token)
    amr_mfa = identity.mfa_verdict(pc_claims)
    if amr_mfa is False:
        return _fail(steps, "no_mfa", "the amr claim of the Partner Center token lists no multi-factor method")
    granted = {permissions.PARTNER_CENTER: permissions.granted_names(token.scopes)}
    try:
        evidence, token, graph_granted = _global_admin_evidence(
            steps, cloud=cloud, app=app, authority_tenant=sealed["tenant"], id_claims=claims, token=token
        )
    except _Refused as refused:
        return _fail(steps, refused.reason, refused.detail)
    if graph_granted is not None:
        granted[permissions.GRAPH] = graph_granted
    steps.set(role_evidence=evidence)

    # Partner Center itself is the proof of the Admin Agent role: a call made with the new token, which also
    # asks it to judge the sign-in's MFA (ValidateMfa).
    try:
        profile, client, token = _partner_center_check(cloud=cloud, app=app, tenant=str(tenant_id), token=token)
    except _Refused as refused:
        return _fail(steps, refused.reason, refused.detail)
    if client.mfa_compliant is False:
        return _fail(steps, "no_mfa", "Partner Center answered isMfaCompliant: false")
    steps.move(
        Status.VERIFIED,
        "Partner Center accepted the account",
        correlation_id=client.correlation_id,
        mfa_compliant=client.mfa_compliant,
        mfa_evidence="amr" if amr_mfa else "partner_center" if client.mfa_compliant is not None else "none",
        role_evidence=evidence,
    )

    # The partner's primary domain, as Partner Center knows it: what staff search the directory by.
    domain = str(profile.get("domain") or "").strip().lower()[:253]
    return _vault_and_activate(steps, token, mfa_compliant=client.mfa_compliant, domain=domain, granted=granted)


def _partner_center_check(
    *, cloud: clouds.Cloud, app: AppCredential, tenant: str, token: identity.TokenResult
) -> tuple[dict[str, Any], partner_center.PartnerCenterClient, identity.TokenResult]:
    """Read the organization profile with the new token, retrying a non-MFA 401 once with a fresh token: the profile,
    the client (`mfa_compliant`) and the token to keep. Raises _Refused."""
    try:
        return (*_organization_profile(cloud, token), token)
    except partner_center.Unauthorized:
        pass  # not its MFA refusal: Partner Center did not take this access token, so a fresh one is tried
    try:
        fresh = identity.refresh_token_redeem(
            cloud=cloud, app=app, tenant=tenant, refresh_token=token.refresh_token, scopes=[cloud.partner_center_scope]
        )
    except identity.IdentityError as exc:
        raise _Refused("microsoft_error", f"a fresh Partner Center token could not be had: {exc}") from None
    token = replace(fresh, refresh_token=fresh.refresh_token or token.refresh_token)
    try:
        return (*_organization_profile(cloud, token), token)
    except partner_center.Unauthorized as exc:
        raise _Refused("partner_center_refused", f"{exc}, twice (a fresh access token was tried)") from None


def _organization_profile(
    cloud: clouds.Cloud, token: identity.TokenResult
) -> tuple[dict[str, Any], partner_center.PartnerCenterClient]:
    """The profile and the client that read it. Raises _Refused, or partner_center.Unauthorized (not 900421)."""
    client = partner_center.PartnerCenterClient(base_url=cloud.partner_center_url, access_token=token.access_token)
    try:
        return client.organization_profile(), client
    except partner_center.MfaRequired as exc:
        raise _Refused("no_mfa", str(exc)) from None
    except partner_center.Forbidden as exc:
        raise _Refused("not_admin_agent", str(exc)) from None
    except partner_center.Unauthorized:
        raise
    except partner_center.PartnerCenterError as exc:
        raise _Refused("microsoft_error", str(exc)) from None


def _global_admin_evidence(
    steps: _Steps,
    *,
    cloud: clouds.Cloud,
    app: AppCredential,
    authority_tenant: str,
    id_claims: dict[str, Any],
    token: identity.TokenResult,
) -> tuple[str, identity.TokenResult, list[str] | None]:
    """Prove the user is a Global Administrator: the id_token's `wids`, else Graph's memberships. Returns the evidence,
    the token to keep and Graph's grants. Raises _Refused (role_unproven and role_permission_missing unless
    CPV_GLOBAL_ADMIN_EVIDENCE is warn)."""
    verdict = identity.claims_global_admin(id_claims)
    if verdict is False:
        raise _Refused("not_global_admin", "the id_token's wids claim lacks the Global Administrator role")
    try:
        # At the authority the sign-in used (a refresh token is tied to no tenant): `organizations` issues for the
        # user's home tenant, which is the tenant that sign-in's id_token named, and its discovery document is the
        # one the code's redemption just read, where the tenant's own would be one more request to Entra.
        graph_token = identity.refresh_token_redeem(
            cloud=cloud,
            app=app,
            tenant=authority_tenant,
            refresh_token=token.refresh_token,
            scopes=[cloud.graph_scope],
        )
    except identity.PermissionNotGranted as exc:
        graph_granted: list[str] = []
        if verdict is True:
            return ConsentFlow.RoleEvidence.ID_TOKEN, token, graph_granted
        return _role_unproven(
            steps,
            token,
            graph_granted,
            "role_permission_missing",
            f"the consent includes no Microsoft Graph permission ({exc}): the app registration must list "
            f"{permissions.ROLE_CHECK.label} (delegated)",
        )
    except identity.IdentityError as exc:
        if verdict is True:
            # The role is proven already: what Graph grants stays unknown, and the consent goes on.
            return ConsentFlow.RoleEvidence.ID_TOKEN, token, None
        if exc.transient:
            raise _Refused("microsoft_error", f"a Microsoft Graph token could not be had: {exc}") from None
        raise _Refused("microsoft_error", f"Microsoft refused a Microsoft Graph token: {exc}") from None
    issued_for = str(graph_token.id_token_claims.get("tid", "")).lower()
    if issued_for and issued_for != str(id_claims.get("tid", "")).lower():
        # Never Graph's memberships of another tenant as this sign-in's evidence (should the authority not have
        # issued for the home tenant the sign-in named).
        raise _Refused(
            "microsoft_error", f"Microsoft issued the Microsoft Graph token for another tenant, {issued_for}"
        )
    # The Graph redemption rotated the refresh token: its successor is the one to keep.
    kept = replace(token, refresh_token=graph_token.refresh_token) if graph_token.refresh_token else token
    graph_granted = permissions.granted_names(graph_token.scopes)
    if verdict is True:
        return ConsentFlow.RoleEvidence.ID_TOKEN, kept, graph_granted
    try:
        roles = graph.GraphClient(
            base_url=cloud.graph_url, access_token=graph_token.access_token
        ).directory_role_templates()
    except graph.GraphError as exc:
        if exc.transient:
            raise _Refused("microsoft_error", f"reading the user's directory roles failed: {exc}") from None
        lacking = permissions.MEMBERSHIP_READ if exc.status == 403 else permissions.ROLE_CHECK
        return _role_unproven(
            steps,
            kept,
            graph_granted,
            "role_permission_missing",
            f"Microsoft Graph refused to list the user's memberships ({exc}): the consent must include "
            f"{lacking.label} (delegated)",
        )
    listed = identity.roles_global_admin(roles)
    if listed is True:
        return ConsentFlow.RoleEvidence.GRAPH, kept, graph_granted
    if listed is False:
        raise _Refused(
            "not_global_admin", "Microsoft Graph lists the user's directory roles without Global Administrator"
        )
    if permissions.ROLE_CHECK.name.lower() not in {name.lower() for name in graph_granted}:
        why = (
            f"Microsoft Graph listed the user's directory roles without naming them: the consent did not include "
            f"{permissions.ROLE_CHECK.label}, so the app registration does not list it"
        )
        return _role_unproven(steps, kept, graph_granted, "role_permission_missing", why)
    why = "Microsoft Graph listed the user's directory roles without naming them"
    return _role_unproven(steps, kept, graph_granted, "role_unproven", why)


def _role_unproven(
    steps: _Steps, token: identity.TokenResult, graph_granted: list[str], reason: str, why: str
) -> tuple[str, identity.TokenResult, list[str]]:
    """No evidence of the role: refused, or accepted as unproven under CPV_GLOBAL_ADMIN_EVIDENCE=warn."""
    if settings.CPV_GLOBAL_ADMIN_EVIDENCE == "warn":
        steps.note(steps.flow.status, f"Global Administrator role not proven: {why}", role_evidence="unproven")
        logger.warning("consent flow %s: the Global Administrator role is not proven: %s", steps.flow.code, why)
        return ConsentFlow.RoleEvidence.UNPROVEN, token, graph_granted
    raise _Refused(reason, why)


def _mfa_turned(locked: Partner, compliant: bool) -> None:
    """The event of a consent whose MFA verdict is the opposite of the partner's last one."""
    if locked.mfa_compliant is not None and locked.mfa_compliant != compliant:
        event_record(
            type=EventType.PARTNER_MFA_VERDICT_CHANGED,
            partner=locked,
            detail={"mfa_compliant": compliant, "previous": locked.mfa_compliant},
        )


def _vault_and_activate(
    steps: _Steps,
    token: identity.TokenResult,
    *,
    mfa_compliant: bool | None,
    domain: str = "",
    granted: dict[str, list[str]] | None = None,
) -> ConsentFlow:
    flow, partner = steps.flow, steps.flow.partner

    def activate(locked: Partner, version: str) -> None:
        """In the token store's transaction, under the partner's lock: what the consent changes."""
        _recheck_under_lock(locked, flow)
        previous_status = locked.status
        now = timezone.now()
        locked.tenant_id = flow.tenant_id
        locked.status = Partner.Status.ACTIVE
        locked.status_reason = ""
        # What this consent asked for and what Microsoft reported granting: a later change of the required
        # list, or a permission the registration lacked, is told apart from a working consent by these.
        locked.permissions_fingerprint = flow.permissions_fingerprint
        locked.permissions_granted = granted or {}
        update = [
            "tenant_id",
            "status",
            "status_reason",
            "permissions_fingerprint",
            "permissions_granted",
            "updated_at",
        ]
        if mfa_compliant is not None:
            _mfa_turned(locked, mfa_compliant)
            locked.mfa_compliant, locked.mfa_checked_at = mfa_compliant, now
            update += ["mfa_compliant", "mfa_checked_at"]
        if domain:
            locked.default_domain = domain
            update.append("default_domain")
        # The link did its work: it, and every earlier one, stops working (a tenant is bound now).
        update.append(links_invalidate_locked(locked))
        locked.save(update_fields=update)
        steps.finish(
            Status.VAULTED,
            "Token stored in the vault; the partner is active",
            fields={"vault_version": version},
            version=version,
        )
        audit_record(
            actor=None,
            action="partner.consented",
            partner=locked,
            target=flow,
            detail={
                "flow": str(flow.code),
                "kind": flow.kind,
                "tenant_id": str(flow.tenant_id),
                "user": flow.user_name,
                "previous_status": previous_status,
                "vault_version": version,
                "role_evidence": flow.role_evidence,
                "mfa_compliant": mfa_compliant,
                "permissions_granted": granted or {},
            },
        )
        # robust: a failure of this follow-up work is logged, never taken for a failed consent.
        transaction.on_commit(lambda: customers_sync_after_consent(partner_id=locked.pk), robust=True)

    try:
        token_store(
            partner=partner,
            refresh_token=token.refresh_token,
            obtained=Obtained(
                flow_id=flow.pk, user_oid=flow.user_oid, user_name=flow.user_name, scopes=tuple(token.scopes)
            ),
            tags=secret_tags(partner_code=partner.code, cloud=partner.cloud, consent_flow_id=flow.code),
            within=activate,
        )
    except VaultError as exc:
        return _fail(steps, "our_error", f"the vault refused the token: {exc}")
    except IntegrityError:
        # Another partner took this tenant between our check and our write.
        return _fail(steps, "tenant_taken", f"tenant {flow.tenant_id} belongs to another partner")
    except _Refused as refused:
        return _fail(steps, refused.reason, refused.detail)
    return flow


class _Refused(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _recheck_under_lock(partner: Partner, flow: ConsentFlow) -> None:
    """Raise _Refused when the partner was deactivated or deleted, its link replaced, or it was bound to another
    tenant, while the admin signed in."""
    if partner.status == Partner.Status.DEACTIVATED or partner.deleted_at is not None:
        raise _Refused("expired_link", "the partner was deactivated or deleted during the sign-in")
    if consent_link_replaced(flow, partner):
        raise _Refused("expired_link", "the link this sign-in started from was replaced during the sign-in")
    if partner.tenant_id and partner.tenant_id != flow.tenant_id:
        raise _Refused("wrong_tenant", f"the partner is now bound to tenant {partner.tenant_id}")


# A flow that came back from Microsoft is being finished by a request; only one stuck this long (its worker
# died mid-way) is expired.
STUCK_AFTER = timedelta(hours=1)


def consent_flows_expire(*, now: datetime | None = None) -> int:
    """Expire flows that never came back from Microsoft (or got stuck finishing): how many."""
    now = now or timezone.now()
    count = 0
    waiting = Q(status__in=[Status.CREATED, Status.REDIRECTED], expires_at__lte=now)
    stuck = Q(status__in=ConsentFlow.OPEN, expires_at__lte=now - STUCK_AFTER)
    for flow in ConsentFlow.objects.filter(waiting | stuck):
        with transaction.atomic():
            if ConsentFlow.objects.filter(pk=flow.pk, status=flow.status).update(
                status=Status.EXPIRED, finished_at=now, sealed_flow=None, failure_reason="expired"
            ):
                _event(flow, Status.EXPIRED, "Never came back from Microsoft in time")
                count += 1
    return count
