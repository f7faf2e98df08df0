"""The self-check of the vendor's app registrations: each finding in words with its fix, from what the simulator's
Entra, Graph and Partner Center answer; the daily task's alerts, each once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from cpv.config import CERTIFICATE, MANAGED_IDENTITY, SECRET, AppCredential, Credential
from dashboard.app_check import (
    AppReport,
    Kind,
    Severity,
    app_check,
    app_check_alerts,
    callback_urls,
    registration_findings,
)
from dashboard.tasks import app_check_task
from tests.app_certificates import app_certificate, register
from tests.factories import active_partner, client_for
from tests.managed_identities import host_identity, managed
from tokens.alerts import alerts_open
from tokens.models import OperatorAlert

pytestmark = pytest.mark.django_db
Condition = OperatorAlert.Condition
WORLD_GRAPH = "https://graph.microsoft.com"


@pytest.fixture
def vendor_app(cpv_sim, settings):  # type: ignore[no-untyped-def]
    """The simulator's app as the product is configured for it, its registration holding every callback URL."""
    cpv_sim.world.add_redirect_uris(callback_urls())
    return cpv_sim.world.cpv_app


def _configure(settings, sim, *credentials: Credential) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_APP = AppCredential(
        client_id=sim.env["CPV_CLIENT_ID"], credentials=credentials, tenant_id=sim.env["CPV_VENDOR_TENANT_ID"]
    )


def _only(reports: list[AppReport], kind: Kind) -> list:  # type: ignore[type-arg]
    (report,) = reports
    return [f for f in report.findings if f.kind == kind]


def test_a_healthy_registration_has_no_problem_and_names_each_credential(
    vendor_app, cpv_sim, settings, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    path, certificate = app_certificate(tmp_path, "current", not_after_days=200)
    register(vendor_app, certificate)
    _configure(
        settings,
        cpv_sim,
        Credential(CERTIFICATE, certificate_path=path, source="CPV_CLIENT_CERTIFICATE"),
        Credential(SECRET, secret=cpv_sim.env["CPV_CLIENT_SECRET"], source="CPV_CLIENT_SECRET"),
    )

    (report,) = app_check(ask_partner_center=False)

    assert report.problems == []
    assert [c.accepted for c in report.credentials] == [True, True]
    assert report.credentials[0].thumbprint_sha256 == certificate.thumbprint_sha256
    assert report.credentials[0].not_after is not None
    assert {f.kind for f in report.findings} >= {Kind.CREDENTIAL_ACCEPTED, Kind.REGISTRATION_OK}


def test_a_managed_identity_is_reported_by_kind_and_client_id_and_probed(  # type: ignore[no-untyped-def]
    vendor_app, cpv_sim, settings, monkeypatch
) -> None:
    created = host_identity(cpv_sim, monkeypatch)
    _configure(settings, cpv_sim, managed(created["client_id"]))

    (report,) = app_check(ask_partner_center=False)

    assert report.problems == []
    (facts,) = report.credentials
    assert (facts.kind, facts.managed_identity_client_id, facts.accepted) == (
        MANAGED_IDENTITY,
        created["client_id"],
        True,
    )
    assert created["client_id"] in facts.label
    (accepted,) = _only([report], Kind.CREDENTIAL_ACCEPTED)
    assert f"Entra accepts the managed identity {created['client_id']}" in accepted.words


def test_a_managed_identity_the_app_does_not_trust_is_a_problem_with_its_fix(  # type: ignore[no-untyped-def]
    vendor_app, cpv_sim, settings, monkeypatch
) -> None:
    created = host_identity(cpv_sim, monkeypatch, subject="00000000-0000-0000-0000-000000000001")
    _configure(settings, cpv_sim, managed(created["client_id"]))

    (refused,) = _only(app_check(ask_partner_center=False), Kind.CREDENTIAL_REFUSED)

    assert refused.severity == Severity.PROBLEM
    assert "AADSTS70021" in refused.words
    assert "federated identity credential" in refused.fix and "object (principal) id" in refused.fix


def test_a_managed_identity_the_host_does_not_hold_is_not_probed_and_says_where_to_assign_it(  # type: ignore[no-untyped-def]
    vendor_app, cpv_sim, settings, monkeypatch
) -> None:
    host_identity(cpv_sim, monkeypatch)
    _configure(settings, cpv_sim, managed("99999999-2222-4333-8444-555555555555"))

    (not_probed,) = _only(app_check(ask_partner_center=False), Kind.CREDENTIAL_NOT_PROBED)

    assert "gave no token" in not_probed.words
    assert "Assign the user-assigned managed identity to the host" in not_probed.fix


def test_a_missing_permission_is_named_with_where_to_add_it(vendor_app, cpv_sim, settings) -> None:  # type: ignore[no-untyped-def]
    _configure(settings, cpv_sim, Credential(SECRET, secret=cpv_sim.env["CPV_CLIENT_SECRET"]))
    graph = [p for p in vendor_app.delegated_permissions[WORLD_GRAPH] if p != "GroupMember.Read.All"]
    vendor_app.delegated_permissions[WORLD_GRAPH] = graph

    (missing,) = _only(app_check(ask_partner_center=False), Kind.PERMISSION_MISSING)

    assert missing.severity == Severity.PROBLEM
    assert "Microsoft Graph GroupMember.Read.All" in missing.words
    assert "Delegated permissions → GroupMember.Read.All" in missing.fix


def test_a_missing_redirect_uri_is_named(vendor_app, cpv_sim, settings) -> None:  # type: ignore[no-untyped-def]
    _configure(settings, cpv_sim, Credential(SECRET, secret=cpv_sim.env["CPV_CLIENT_SECRET"]))
    staff_callback = callback_urls()[2]
    vendor_app.redirect_uris.remove(staff_callback)

    (missing,) = _only(app_check(ask_partner_center=False), Kind.REDIRECT_URI_MISSING)

    assert staff_callback in missing.words and f"add {staff_callback}" in missing.fix


def test_a_single_tenant_registration_is_a_problem(vendor_app, cpv_sim, settings) -> None:  # type: ignore[no-untyped-def]
    _configure(settings, cpv_sim, Credential(SECRET, secret=cpv_sim.env["CPV_CLIENT_SECRET"]))
    vendor_app.multi_tenant = False

    (finding,) = _only(app_check(ask_partner_center=False), Kind.NOT_MULTI_TENANT)

    assert "AzureADMyOrg" in finding.words and "multitenant" in finding.fix


def test_an_expiring_credential_is_a_warning_with_its_date(vendor_app, cpv_sim, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path, certificate = app_certificate(tmp_path, "ending", not_after_days=10)
    register(vendor_app, certificate)
    _configure(settings, cpv_sim, Credential(CERTIFICATE, certificate_path=path, source="CPV_CLIENT_CERTIFICATE"))

    reports = app_check(ask_partner_center=False)

    (finding,) = _only(reports, Kind.CREDENTIAL_EXPIRING)
    assert finding.severity == Severity.WARNING and "days left" in finding.words
    # The registration lists the same certificate, ending within 30 days too.
    (registered,) = _only(reports, Kind.REGISTERED_CREDENTIAL_EXPIRING)
    assert certificate.thumbprint in registered.words


def test_a_refused_credential_is_a_problem_with_the_fix_for_its_code(vendor_app, cpv_sim, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path, _ = app_certificate(tmp_path, "never-uploaded")
    _configure(
        settings,
        cpv_sim,
        Credential(CERTIFICATE, certificate_path=path, source="CPV_CLIENT_CERTIFICATE"),
        Credential(SECRET, secret="Not8Q~a-secret-of-this-app-0123", source="CPV_CLIENT_SECRET"),
    )

    refused = _only(app_check(ask_partner_center=False), Kind.CREDENTIAL_REFUSED)

    assert [f.severity for f in refused] == [Severity.PROBLEM, Severity.PROBLEM]
    assert "AADSTS700027" in refused[0].words and "upload it to the app registration" in refused[0].fix
    assert "AADSTS7000215" in refused[1].words and "Value (not its ID)" in refused[1].fix
    assert "Not8Q~a-secret-of-this-app-0123" not in repr(refused)


def test_without_application_read_all_the_registration_is_not_read_and_it_says_so(
    vendor_app, cpv_sim, settings
) -> None:  # type: ignore[no-untyped-def]
    _configure(settings, cpv_sim, Credential(SECRET, secret=cpv_sim.env["CPV_CLIENT_SECRET"]))
    vendor_app.graph_app_roles = []

    (reports,) = [app_check(ask_partner_center=False)]
    (finding,) = _only(reports, Kind.REGISTRATION_NOT_READ)

    assert finding.severity == Severity.INFO and "Application.Read.All" in finding.words
    assert reports[0].problems == []


def test_an_app_partner_center_does_not_accept_may_not_be_enrolled(vendor_app, cpv_sim, settings) -> None:  # type: ignore[no-untyped-def]
    _configure(settings, cpv_sim, Credential(SECRET, secret=cpv_sim.env["CPV_CLIENT_SECRET"]))
    partner = active_partner(cpv_sim)
    vendor_app.cpv_enrolled = False

    (finding,) = _only(app_check(), Kind.PARTNER_CENTER_REFUSED)

    assert "may not be enrolled as a CPV app in Partner Center" in finding.words and partner.name in finding.words
    assert "enroll-as-cpv" in finding.fix


def test_partner_center_accepts_an_enrolled_app(vendor_app, cpv_sim, settings) -> None:  # type: ignore[no-untyped-def]
    _configure(settings, cpv_sim, Credential(SECRET, secret=cpv_sim.env["CPV_CLIENT_SECRET"]))
    active_partner(cpv_sim)

    assert _only(app_check(), Kind.PARTNER_CENTER_ACCEPTED)


def test_expiry_alerts_at_30_and_7_days_are_sent_once_each(  # type: ignore[no-untyped-def]
    vendor_app, cpv_sim, settings, tmp_path, admin_with_email, django_capture_on_commit_callbacks
) -> None:
    path, certificate = app_certificate(tmp_path, "ending", not_after_days=20)
    register(vendor_app, certificate)
    _configure(settings, cpv_sim, Credential(CERTIFICATE, certificate_path=path))
    reports = app_check(ask_partner_center=False)

    with django_capture_on_commit_callbacks(execute=True):
        app_check_alerts(reports)
        app_check_alerts(reports)
    assert [a.condition for a in alerts_open()] == [Condition.CREDENTIAL_EXPIRING]
    assert len(mail.outbox) == 1

    eight_days_on = timezone.now() + timedelta(days=14)
    with django_capture_on_commit_callbacks(execute=True):
        app_check_alerts(reports, now=eight_days_on)
        app_check_alerts(reports, now=eight_days_on + timedelta(days=1))
    assert {a.condition for a in alerts_open()} == {Condition.CREDENTIAL_EXPIRING, Condition.CREDENTIAL_EXPIRING_SOON}
    assert len(mail.outbox) == 2


def test_the_daily_task_alerts_while_a_problem_holds(  # type: ignore[no-untyped-def]
    vendor_app, cpv_sim, settings, admin_with_email, django_capture_on_commit_callbacks
) -> None:
    _configure(settings, cpv_sim, Credential(SECRET, secret=cpv_sim.env["CPV_CLIENT_SECRET"]))
    vendor_app.redirect_uris.clear()

    with django_capture_on_commit_callbacks(execute=True):
        assert app_check_task() == 3
    assert [a.condition for a in alerts_open()] == [Condition.APP_CHECK_FAILED]

    vendor_app.redirect_uris.extend(callback_urls())
    app_check_task()
    assert alerts_open() == []


def test_the_command_prints_findings_and_exits_1_on_a_problem(vendor_app, cpv_sim, settings, capsys) -> None:  # type: ignore[no-untyped-def]
    _configure(
        settings, cpv_sim, Credential(SECRET, secret=cpv_sim.env["CPV_CLIENT_SECRET"], source="CPV_CLIENT_SECRET")
    )
    vendor_app.multi_tenant = False

    with pytest.raises(CommandError, match="1 problem"):
        call_command("app_check", "--no-partner-center")

    out = capsys.readouterr().out
    assert "credential: the client secret (CPV_CLIENT_SECRET), not after " in out and ": accepted" in out
    assert "[Problem] The app's signInAudience is AzureADMyOrg" in out
    assert cpv_sim.env["CPV_CLIENT_SECRET"] not in out


def test_the_settings_check_shows_each_app_registration(vendor_app, cpv_sim, settings, admin_user) -> None:  # type: ignore[no-untyped-def]
    _configure(settings, cpv_sim, Credential(SECRET, secret=cpv_sim.env["CPV_CLIENT_SECRET"]))
    vendor_app.redirect_uris.clear()

    checks = client_for(admin_user).get("/settings/check").json()["checks"]

    (row,) = [c for c in checks if c["name"] == "App registration (CPV_CLIENT_ID)"]
    assert row["ok"] is False and "is not registered" in row["detail"] and "fix: Authentication" in row["detail"]


def test_an_application_permission_in_the_registration_is_a_problem(vendor_app, cpv_sim, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    registration = {
        "requiredResourceAccess": [
            {
                "resourceAppId": "00000003-0000-0000-c000-000000000000",
                "resourceAccess": [{"id": "9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30", "type": "Role"}],
            }
        ],
        "signInAudience": "AzureADMultipleOrgs",
    }

    found = registration_findings(registration, app=settings.CPV_APP, now=timezone.now())

    (listed,) = [f for f in found if f.kind == Kind.APPLICATION_PERMISSION_LISTED]
    assert listed.severity == Severity.PROBLEM and "9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30" in listed.words


def test_each_granted_scope_is_checked_against_what_the_resource_publishes(vendor_app, cpv_sim, settings) -> None:  # type: ignore[no-untyped-def]
    _configure(settings, cpv_sim, Credential(SECRET, secret=cpv_sim.env["CPV_CLIENT_SECRET"]))
    graph_id = "00000003-0000-0000-c000-000000000000"
    settings.CPV_APPLICATION_GRANTS = {
        "displayName": "Contoso",
        "applicationGrants": [{"enterpriseApplicationId": graph_id, "scope": "Domain.ReadWrite.All,Mail.Frobnicate"}],
    }

    (unknown,) = _only(app_check(ask_partner_center=False), Kind.GRANT_SCOPE_UNKNOWN)

    assert unknown.severity == Severity.PROBLEM and "Mail.Frobnicate" in unknown.words and graph_id in unknown.words


def test_the_default_grants_are_all_published(vendor_app, cpv_sim, settings) -> None:  # type: ignore[no-untyped-def]
    _configure(settings, cpv_sim, Credential(SECRET, secret=cpv_sim.env["CPV_CLIENT_SECRET"]))

    reports = app_check(ask_partner_center=False)

    assert _only(reports, Kind.GRANT_SCOPE_UNKNOWN) == [] and _only(reports, Kind.GRANT_NOT_CHECKED) == []


def test_a_secret_dated_by_the_registration_raises_the_expiry_alert(  # type: ignore[no-untyped-def]
    vendor_app, cpv_sim, settings, admin_with_email, django_capture_on_commit_callbacks
) -> None:
    vendor_app.secrets[0].expires_at = (timezone.now() + timedelta(days=5)).timestamp()
    _configure(settings, cpv_sim, Credential(SECRET, secret=cpv_sim.env["CPV_CLIENT_SECRET"]))

    reports = app_check(ask_partner_center=False)
    with django_capture_on_commit_callbacks(execute=True):
        app_check_alerts(reports)

    assert reports[0].credentials[0].not_after is not None
    assert {a.condition for a in alerts_open()} == {Condition.CREDENTIAL_EXPIRING, Condition.CREDENTIAL_EXPIRING_SOON}
    assert len(mail.outbox) == 2
