"""The staff dashboard's pages: overview, partner list, a partner's page, the audit log, staff accounts and
settings. Each names its role in `staff_view`; actions that change something are in dashboard/actions.py."""

from __future__ import annotations

import dataclasses
import re
import uuid
from datetime import datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.models import User
from django.core.paginator import Paginator
from django.db.models import Prefetch, QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, render
from django.template.loader import get_template
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import cache_control, never_cache
from django.views.decorators.http import require_GET, require_http_methods
from django_otp.plugins.otp_totp.models import TOTPDevice

from consent.outcomes import outcome
from consent.selectors import consent_flows
from customers.coverage import Coverage
from customers.models import CustomerConsent
from customers.offboarding import offboarding_progress
from customers.proof import CUSTOMER_ACTIONS
from customers.scheduling import consent_progress
from customers.selectors import (
    PROOF_FILTERS,
    WITHOUT_ACCESS_STATE,
    coverage_for,
    customer_page,
    gdap_notices_open,
    partner_state_counts,
)
from customers.words import (
    PROOF_LABELS,
    access_class,
    access_guide,
    access_words,
    consent_error_words,
    proof_state,
    proof_words,
)
from dashboard import exports, operations, selectors
from dashboard.configuration import configuration_groups
from dashboard.forms import (
    AuditFilterForm,
    PartnerFilterForm,
    StaffActiveForm,
    StaffCreateForm,
    StaffMicrosoftForm,
    StaffRoleForm,
)
from dashboard.paging import IdsFirstPaginator
from dashboard.staff_actions import BULK_ACTIONS, actions_for, plural
from microsoft import permissions
from partners.access import ROLE_GROUPS, Role, partner_for_staff, role_of, staff_view
from partners.app_rotation import RotationError, RotationPlan, app_key_rotation_run, rotation_open
from partners.models import AuditEvent, Partner, StaffPasswordGuard
from partners.services import (
    PartnerError,
    staff_identity_set,
    staff_role_set,
    staff_user_create,
    staff_user_set_active,
)
from partners.staff import sign_in_locked, sign_in_window, staff_sign_in_unlock, staff_totp_reset, staff_unfreeze
from tokens.alerts import alerts_open
from tokens.selectors import HEALTH_CHOICES, HEALTH_LABELS, token_events, token_health

PAGE_SIZE = 50
# A filtered list is counted up to this many partners ("more than 1,000 match"): a filter most partners match would
# otherwise be counted through every partner on each page.
FILTERED_COUNT_UP_TO = 1000
# The staff action's new certificate: a year, like the portal's default for an uploaded one.
ROTATION_CERTIFICATE_DAYS = 365


@staff_view(see=Role.VIEWER)
@require_GET
def overview(request: HttpRequest) -> HttpResponse:
    """The overview; counts over every partner may be a minute old (the page says so; `?fresh=1` counts now)."""
    try:
        days = int(request.GET.get("days", 30))
    except ValueError:
        days = 30
    days = days if days in selectors.OVERVIEW_PERIODS else 30
    data = selectors.overview(days=days, cached=not request.GET.get("fresh"))
    context = {
        "o": data,
        "days": days,
        "periods": selectors.OVERVIEW_PERIODS,
        "bulk_actions": BULK_ACTIONS,
        "can_act": request.staff_role >= Role.OPERATOR,  # type: ignore[attr-defined]
        "alerts": alerts_open(),
        "no_partners": not any(bar.value for bar in data.by_status),
    }
    return render(request, "dashboard/overview.html", context)


def _directory(request: HttpRequest) -> tuple[PartnerFilterForm, dict[str, str], QuerySet[Partner]]:
    """The partner list's form, its valid filters and the partners they select (the page and its CSV)."""
    form = PartnerFilterForm(request.GET or None, health_choices=HEALTH_CHOICES)
    filters = form.values() if request.GET else {}
    qs = selectors.partner_directory(
        search=filters.get("q", ""),
        status=filters.get("status", ""),
        cloud=filters.get("cloud", ""),
        environment=filters.get("environment", ""),
        health=filters.get("health", ""),
        mfa=filters.get("mfa", ""),
        sort=filters.get("sort") or "name",
    )
    return form, filters, qs


@staff_view(see=Role.VIEWER)
@require_GET
def partner_list(request: HttpRequest) -> HttpResponse:
    """Every partner: search, filters, sort, 50 to a page, with coverage and token health on each row."""
    form, filters, qs = _directory(request)
    filtered = any(filters.get(k) for k in ("q", "status", "cloud", "environment", "health", "mfa"))
    paginator = IdsFirstPaginator(qs, PAGE_SIZE, count_up_to=FILTERED_COUNT_UP_TO if filtered else None)
    page = paginator.get_page(request.GET.get("page"))
    partners = list(page.object_list)
    coverage = coverage_for([p.pk for p in partners])
    for partner in partners:
        partner.coverage = coverage.get(partner.pk, Coverage())
    context = {
        "form": form,
        "page": page,
        "partners": partners,
        "sort": filters.get("sort") or "name",
        "health_labels": HEALTH_LABELS,
        "bulk_actions": BULK_ACTIONS,
        "can_act": request.staff_role >= Role.OPERATOR,  # type: ignore[attr-defined]
        "filtered": filtered,
        "export_query": _without_page(request),
    }
    return render(request, "dashboard/list.html", context)


@staff_view(see=Role.VIEWER)  # type: ignore[arg-type]  # typed for HttpResponse; a stream passes through
@require_GET
def partner_list_csv(request: HttpRequest) -> StreamingHttpResponse:
    """The partner list as CSV, searched, filtered and sorted as the page is, every row (no page)."""
    _, _, qs = _directory(request)
    return exports.partners_csv(qs)


def _without_page(request: HttpRequest) -> str:
    """The request's query string without its page number: the filters an export keeps."""
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


# A partner's consent link (partners.invitations.invitation_url), as the invitation and re-consent messages carry it.
_CONSENT_LINK = re.compile(r"https?://\S+/consent/i/\S+")


def links_in_messages(request: HttpRequest) -> list[str]:
    """The consent links in this request's messages, for the page to show with a copy button."""
    return [m.group(0) for m in (_CONSENT_LINK.search(str(message)) for message in messages.get_messages(request)) if m]


@staff_view(see=Role.VIEWER)
@require_GET
def detail(request: HttpRequest, code: uuid.UUID) -> HttpResponse:
    """A partner's page: profile, token health, flows, customers, operations, audit trail, actions."""
    partner = partner_for_staff(code)
    state = request.GET.get("consent", "")
    customers = customer_page(
        partner, state=state, after=request.GET.get("cafter", ""), before=request.GET.get("cbefore", "")
    )
    customer: Any
    for customer in customers.customers:
        consent = getattr(customer, "application_consent", None)
        customer.error_words = consent_error_words(consent)
        customer.access_words = access_words(consent)
        customer.access_guide = access_guide(consent)
        customer.access_class = access_class(consent)
        customer.proof_state = proof_state(consent)
        customer.proof_label = PROOF_LABELS.get(customer.proof_state, "")
        customer.proof_words = proof_words(consent)
    coverage = coverage_for([partner.pk]).get(partner.pk, Coverage())
    states = partner_state_counts(partner, customers=coverage.customers)
    without_access, proved = states.without_access, states.proved
    flows: list[Any] = consent_flows(partner)
    for flow in flows:
        flow.failure_title = outcome(flow.failure_reason).title_for_staff if flow.failure_reason else ""
    health = token_health(partner)
    has_token = health.token is not None and bool(health.token.current_version)
    context = {
        "partner": partner,
        "health": health,
        "flows": flows,
        "customers": customers,
        "customers_total": (
            without_access
            if state == WITHOUT_ACCESS_STATE
            else proved[state]
            if state in PROOF_FILTERS
            else coverage.in_state(state)
        ),
        "proved": proved,
        "states_as_of": states.counted_at if states.reused else None,
        "offboarding": offboarding_progress(partner) if partner.offboarding_started_at else None,
        "customer_actions": CUSTOMER_ACTIONS,
        "without_access": without_access,
        "gdap_notices": gdap_notices_open(partner),
        "consent_state": state,
        "coverage": coverage,
        "scheduled": consent_progress([partner.pk]).get(partner.pk),
        "token_events": token_events(partner),
        "operations": operations.operations_recent(partner),
        "audit": list(
            selectors.audit_rows(
                partner.audit_events.select_related("actor", "partner").order_by("-created_at", "-id")[:30]
            )
        ),
        "emails": list(partner.sent_emails.all()[:10]),
        "new_links": links_in_messages(request),
        "link_days": settings.CPV_INVITATION_MAX_AGE_DAYS,
        "can_act": request.staff_role >= Role.OPERATOR,  # type: ignore[attr-defined]
        "actions": actions_for(partner, has_token=has_token, failed_customers=coverage.failed),
    }
    return render(request, "dashboard/detail.html", context)


@staff_view(see=Role.VIEWER)  # type: ignore[arg-type]
@require_GET
def partner_customers_csv(request: HttpRequest, code: uuid.UUID) -> StreamingHttpResponse:
    """A partner's present customers as CSV (in the ApplicationConsent state chosen on its page), every one."""
    partner = partner_for_staff(code)
    state = request.GET.get("consent", "")
    return exports.customers_csv(partner, state=state if state in CustomerConsent.Status.values else "")


@staff_view(see=Role.VIEWER)
@require_GET
@never_cache
def operation_status(request: HttpRequest, code: uuid.UUID, operation: uuid.UUID) -> HttpResponse:
    """An operation's progress: JSON for the page's poller (static/js/progress.js), HTML for a reload."""
    partner = partner_for_staff(code)
    event = operations.operation_find(partner, operation)
    if event is None:
        raise Http404
    progress = operations.operation_progress(event)
    if request.headers.get("Accept", "").startswith("application/json"):
        return JsonResponse(progress.as_dict())
    return render(request, "dashboard/operation.html", {"partner": partner, "p": progress})


@staff_view(see=Role.VIEWER)
@require_GET
@never_cache
def bulk_operations(request: HttpRequest, bulk: uuid.UUID) -> HttpResponse:
    """A bulk action's operations, one per partner: queued → running → done with counts, reloading until all are
    over."""
    progress = operations.operations_bulk(bulk)
    if progress is None:
        raise Http404
    return render(request, "dashboard/bulk_operations.html", {"b": progress})


def _day(value: Any, *, end: bool = False) -> datetime | None:
    if not value:
        return None
    moment = datetime.combine(value, time.min, tzinfo=timezone.get_current_timezone())
    return moment + timedelta(days=1) if end else moment


def _audit_events(request: HttpRequest) -> tuple[AuditFilterForm, QuerySet[AuditEvent]]:
    """The audit log's form and the events its valid filters select (the page and its CSV)."""
    form = AuditFilterForm(request.GET or None, actions=selectors.audit_actions())
    data = form.cleaned_data if form.is_valid() else {}
    events = selectors.audit_log(
        actor=data.get("actor", ""),
        action=data.get("action", ""),
        partner=data.get("partner", ""),
        since=_day(data.get("since")),
        until=_day(data.get("until"), end=True),
    )
    return form, events


@staff_view(see=Role.VIEWER)
@require_GET
def audit_log(request: HttpRequest) -> HttpResponse:
    """Every audited action in words, filterable by actor, action, partner and time, 50 to a page."""
    form, events = _audit_events(request)
    page = Paginator(events, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "form": form,
        "page": page,
        "rows": list(selectors.audit_rows(page.object_list)),
        "export_query": _without_page(request),
    }
    return render(request, "dashboard/audit.html", context)


@staff_view(see=Role.VIEWER)  # type: ignore[arg-type]
@require_GET
def audit_log_csv(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """The audit log as CSV, filtered as the page is, unpaged; invalid filters are a 400 that says why."""
    form, events = _audit_events(request)
    if form.is_bound and not form.is_valid():
        # An export of everything is not what a mistyped filter asked for.
        message = f"The filters are not valid: {form.errors.as_text()}\n"
        return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")
    return exports.audit_csv(events)


@staff_view(see=Role.ADMIN)
@require_http_methods(["GET", "POST"])
def staff_accounts(request: HttpRequest) -> HttpResponse:
    """Staff accounts and their roles (admins only). Each change is a POST and is audited."""
    create_form = StaffCreateForm(prefix="new")
    if request.method == "POST":
        what = request.POST.get("what", "")
        try:
            if what == "create":
                create_form = StaffCreateForm(request.POST, prefix="new")
                if create_form.is_valid():
                    d = create_form.cleaned_data
                    user = staff_user_create(
                        actor=request.user,
                        username=d["username"],
                        email=d["email"],
                        password=d["password"],
                        role=d["role"],
                    )
                    messages.success(request, f"Created {user.get_username()} as {d['role'].label}.")
                    return HttpResponseRedirect(reverse("dashboard:staff"))
            elif what == "role":
                form = StaffRoleForm(request.POST)
                if form.is_valid():
                    target = get_object_or_404(User, username=form.cleaned_data["username"])
                    staff_role_set(actor=request.user, user=target, role=form.cleaned_data["role"])
                    messages.success(request, f"{target.get_username()} is now {form.cleaned_data['role'].label}.")
                    return HttpResponseRedirect(reverse("dashboard:staff"))
            elif what == "microsoft":
                microsoft_form = StaffMicrosoftForm(request.POST)
                if not microsoft_form.is_valid():
                    messages.error(request, " ".join(str(m) for errs in microsoft_form.errors.values() for m in errs))
                    return HttpResponseRedirect(reverse("dashboard:staff"))
                target = get_object_or_404(User, username=microsoft_form.cleaned_data["username"])
                object_id = microsoft_form.cleaned_data["object_id"]
                staff_identity_set(actor=request.user, user=target, object_id=object_id)
                messages.success(
                    request,
                    f"{target.get_username()} signs in with the Microsoft account {object_id}."
                    if object_id
                    else f"{target.get_username()} has no Microsoft account any more.",
                )
                return HttpResponseRedirect(reverse("dashboard:staff"))
            elif what == "totp_reset":
                target = get_object_or_404(User, username=request.POST.get("username", ""))
                removed = staff_totp_reset(actor=request.user, user=target)
                messages.success(
                    request,
                    f"Removed {plural(removed, 'authenticator app')} of {target.get_username()}."
                    if removed
                    else f"{target.get_username()} had no authenticator app.",
                )
                return HttpResponseRedirect(reverse("dashboard:staff"))
            elif what == "unfreeze":
                target = get_object_or_404(User, username=request.POST.get("username", ""))
                staff_unfreeze(actor=request.user, user=target)
                messages.success(request, f"The password sign-in of {target.get_username()} works again.")
            elif what == "unlock":
                target = get_object_or_404(User, username=request.POST.get("username", ""))
                was_locked = staff_sign_in_unlock(actor=request.user, user=target)
                messages.success(
                    request,
                    f"{target.get_username()} can sign in again."
                    if was_locked
                    else f"{target.get_username()} was not locked out; nothing changed.",
                )
                return HttpResponseRedirect(reverse("dashboard:staff"))
            elif what == "active":
                active_form = StaffActiveForm(request.POST)
                if active_form.is_valid():
                    target = get_object_or_404(User, username=active_form.cleaned_data["username"])
                    staff_user_set_active(actor=request.user, user=target, active=active_form.cleaned_data["active"])
                    messages.success(
                        request, f"{target.get_username()} is {'enabled' if target.is_active else 'disabled'}."
                    )
                    return HttpResponseRedirect(reverse("dashboard:staff"))
        except PartnerError as exc:
            messages.error(request, str(exc))
            return HttpResponseRedirect(reverse("dashboard:staff"))
    users = list(
        User.objects.filter(is_active__in=[True, False])
        .select_related("staff_identity")
        .prefetch_related(Prefetch("groups"))
        .order_by("username")[:500]
    )
    with_totp = set(
        TOTPDevice.objects.filter(user__in=users, confirmed=True).values_list("user_id", flat=True).distinct()
    )
    frozen = set(
        StaffPasswordGuard.objects.filter(user__in=users, frozen_at__isnull=False).values_list("user_id", flat=True)
    )
    rows = []
    for user in users:
        names = {g.name for g in user.groups.all()}
        role = (
            Role.ADMIN
            if user.is_superuser
            else max((r for r, name in ROLE_GROUPS.items() if name in names), default=Role.NONE)
        )
        rows.append(
            {
                "user": user,
                "role": role,
                "identity": getattr(user, "staff_identity", None),
                "totp": user.pk in with_totp,
                "frozen": user.pk in frozen,
                "locked": sign_in_locked(None, user.get_username()),
            }
        )
    context = {
        "rows": rows,
        "roles": [(int(r), name) for r, name in [(Role.NONE, "no role"), *ROLE_GROUPS.items()]],
        "create_form": create_form,
        "me": request.user,
        "staff_tenant_id": settings.CPV_STAFF_TENANT_ID,
        "lockout_minutes": sign_in_window() // 60,
    }
    return render(request, "dashboard/staff.html", context, status=400 if create_form.errors else 200)


# The pages' own small scripts (templates/dashboard/js/), served from here so that the site's policy (scripts
# from this origin only, none inline) allows them. Anyone may fetch them: they hold no data.
PAGE_SCRIPTS = {"settings-check", "copy-link"}


@require_GET
@cache_control(max_age=3600, public=True)
def page_script(request: HttpRequest, name: str) -> HttpResponse:
    """One of PAGE_SCRIPTS as JavaScript; any other name is a 404."""
    if name not in PAGE_SCRIPTS:
        raise Http404
    # The file as it is: found where templates are, never rendered as one.
    script = get_template(f"dashboard/js/{name}.js").template.source  # type: ignore[attr-defined]
    return HttpResponse(script, content_type="text/javascript; charset=utf-8")


@staff_view(see=Role.ADMIN)
@require_GET
def settings_page(request: HttpRequest) -> HttpResponse:
    """The effective configuration in words, never a secret; the live check runs from its script (`?check=1` here)."""
    checks = operations.live_checks() if request.GET.get("check") else None
    context = {
        "groups": configuration_groups(),
        "checks": checks,
        "role": role_of(request.user),
        "required_permissions": permissions.REQUIRED_PERMISSIONS,
        "rotation": rotation_open(settings.CPV_APP.client_id) if settings.CPV_APP.client_id else None,
    }
    return render(request, "dashboard/settings.html", context)


@staff_view(see=Role.ADMIN)
@require_http_methods(["POST"])
def app_key_rotate(request: HttpRequest) -> HttpResponse:
    """The staff action of the certificate rotation: start one with a new self-signed certificate, or continue the
    one under way; with `dry_run`, only say what it would do."""
    try:
        result = app_key_rotation_run(
            actor=request.user,
            app=settings.CPV_APP,
            generate_days=ROTATION_CERTIFICATE_DAYS,
            dry_run=bool(request.POST.get("dry_run")),
        )
    except RotationError as exc:
        messages.error(request, str(exc))
    else:
        if isinstance(result, RotationPlan):
            messages.info(request, "The rotation would: " + "; ".join(result.steps))
        elif result.last_error:
            messages.error(request, f"The rotation stopped at “{result.get_step_display()}”: {result.last_error}")
        else:
            messages.success(request, f"Certificate rotation: {result.get_step_display()}.")
    return HttpResponseRedirect(reverse("dashboard:settings") + "#app-key-rotation")


@staff_view(see=Role.ADMIN)
@require_GET
@never_cache
def settings_check(request: HttpRequest) -> JsonResponse:
    """The live check as JSON for the settings page's script (redacted: never a secret)."""
    return JsonResponse({"checks": [dataclasses.asdict(c) for c in operations.live_checks()]})
