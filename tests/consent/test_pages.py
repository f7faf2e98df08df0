"""The partner-facing pages around the sign-in, the staff invitation, and `manage.py invite_partner`."""

from __future__ import annotations

import io
import re
import time
import uuid

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.test import RequestFactory
from django.urls import get_resolver

from consent.models import ConsentFlow
from consent.portal import SESSION_KEY
from consent.services import partner_invite
from cpv.branding import Vendor
from partners.invitations import invitation_read, invitation_token, partner_reconsent_link
from partners.models import AuditEvent, Partner
from tests.factories import active_partner_with_data
from tests.simulated import partner_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def invitation(cpv_sim):  # type: ignore[no-untyped-def]
    return partner_invite(actor=None, name="Contoso Partners", contact_email="admin@contoso.example", send_email=False)


def test_the_landing_page_says_what_will_happen_and_starts_with_a_post(client, invitation) -> None:  # type: ignore[no-untyped-def]
    response = client.get(invitation.url.removeprefix("http://127.0.0.1:8000"))

    page = response.content.decode()
    assert response.status_code == 200
    assert "Contoso Partners" in page
    assert "Global Administrator" in page and "Admin Agent" in page and "multi-factor" in page
    assert "dedicated integration account" in page
    assert "user_impersonation" in page and "Directory.Read.All" in page
    # The app's required permissions, and the administrator's consent for the organisation three of them need.
    for name in ("User.Read", "RoleManagement.Read.Directory", "DelegatedAdminRelationship.Read.All", "GroupMember"):
        assert name in page
    assert page.count("needs an administrator") == 3 and "Consent on behalf of your organization" in page
    assert re.search(r'<form method="post" action="/consent/i/[^"]+/start">', page)
    assert response["Referrer-Policy"] == "same-origin"
    assert "http" not in re.sub(r'href="/static/[^"]+"', "", page.split("<body")[0]).replace("http-equiv", "")


def test_starting_with_a_get_is_not_allowed(client, invitation) -> None:  # type: ignore[no-untyped-def]
    path = invitation.url.removeprefix("http://127.0.0.1:8000") + "start"

    assert client.get(path).status_code == 405
    assert not ConsentFlow.objects.exists()


def test_a_tampered_link_is_refused(client, invitation) -> None:  # type: ignore[no-untyped-def]
    token = invitation.url.rstrip("/").rsplit("/", 1)[1]

    response = client.get(f"/consent/i/{token[:-2]}xx/")

    assert response.status_code == 404
    assert b"This link does not work" in response.content


def test_an_expired_link_says_so(client, invitation, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_INVITATION_MAX_AGE_DAYS = 1
    two_days_ago = time.time() - 2 * 86400
    with monkeypatch.context() as patched:
        patched.setattr("django.core.signing.time.time", lambda: two_days_ago)
        stale = invitation_token(partner=invitation.partner, purpose="invite")

    response = client.get(f"/consent/i/{stale}/")

    assert response.status_code == 410
    assert b"This link has expired" in response.content


def test_a_deactivated_partners_link_no_longer_works(client, invitation) -> None:  # type: ignore[no-untyped-def]
    Partner.objects.filter(pk=invitation.partner.pk).update(status=Partner.Status.DEACTIVATED)

    assert client.get(invitation.url.removeprefix("http://127.0.0.1:8000")).status_code == 410


def test_the_landing_page_says_when_the_app_is_not_configured(client, invitation, settings) -> None:  # type: ignore[no-untyped-def]
    from cpv.config import AppCredential

    settings.CPV_APP = AppCredential(client_id="")

    page = client.get(invitation.url.removeprefix("http://127.0.0.1:8000")).content.decode()

    assert "not finished configuring" in page
    assert 'id="start"' not in page


def test_self_onboarding_creates_a_pending_partner_and_continues_to_the_landing_page(cpv_sim, client) -> None:  # type: ignore[no-untyped-def]
    form = client.get("/onboard/")
    key = re.search(r'name="signup_key" value="([^"]+)"', form.content.decode()).group(1)  # type: ignore[union-attr]
    data = {
        "company_name": "Fabrikam",
        "contact_email": "it@fabrikam.example",
        "cloud": "global",
        "environment": "production",
        "signup_key": key,
    }

    first = client.post("/onboard/", data)
    second = client.post("/onboard/", data)

    assert first.status_code == 303 and second.status_code == 303
    partner = Partner.objects.get()
    assert (partner.name, partner.status) == ("Fabrikam", Partner.Status.PENDING)
    landing = client.get(first["Location"])
    assert b"Fabrikam" in landing.content


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"company_name": "", "contact_email": "a@b.example"}, "This field is required"),
        ({"company_name": "X", "contact_email": "not-an-email"}, "Enter a valid email address"),
        ({"company_name": "X", "contact_email": "a@b.example", "cloud": "germany"}, "Select a valid choice"),
        ({"company_name": "X", "contact_email": "a@b.example", "signup_key": "nope"}, "reload the page"),
    ],
)
def test_self_onboarding_rejects_bad_input_and_writes_nothing(cpv_sim, client, data, message) -> None:  # type: ignore[no-untyped-def]
    payload = {"cloud": "global", "environment": "production", "signup_key": str(uuid.uuid4()), **data}

    response = client.post("/onboard/", payload)

    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Partner.objects.exists()


def test_self_onboarding_is_rate_limited_per_address(cpv_sim, client) -> None:  # type: ignore[no-untyped-def]
    statuses = [
        client.post("/onboard/", {"company_name": "", "signup_key": str(uuid.uuid4())}).status_code for _ in range(11)
    ]

    assert statuses[:10] == [400] * 10
    assert statuses[10] == 429
    limited = client.post("/onboard/", {"company_name": "", "signup_key": str(uuid.uuid4())})
    assert b"Too many attempts" in limited.content and limited["Retry-After"] == "3600"


def test_self_onboarding_can_be_turned_off(client, settings) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_SELF_ONBOARDING = False

    assert client.get("/onboard/").status_code == 404


def test_staff_invite_a_partner_from_the_dashboard_and_it_is_emailed(
    cpv_sim, staff_client, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            "/consent/staff/invite",
            {
                "name": "Northwind",
                "contact_email": "ops@northwind.example",
                "cloud": "usgov",
                "environment": "sandbox",
                "send_email": "on",
            },
        )

    partner = Partner.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/partners/{partner.code}/"
    assert (partner.cloud, partner.environment, partner.status) == ("usgov", "sandbox", "invited")
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["ops@northwind.example"]
    link = re.search(r"http://127\.0\.0\.1:8000/consent/i/\S+/", message.body)
    assert link
    assert staff_client.get(link.group(0).removeprefix("http://127.0.0.1:8000")).status_code == 200
    assert AuditEvent.objects.filter(
        partner=partner, action="partner.invited", actor__username="otto-operator"
    ).exists()


def test_the_invite_page_needs_staff(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/consent/staff/invite").status_code == 302


def test_staff_see_each_flows_timeline_on_the_partners_page(cpv_sim, staff_client, invitation, consent_run) -> None:  # type: ignore[no-untyped-def]
    consent_run(invitation.url, user=partner_user(cpv_sim, global_admin=True, admin_agent=False, mfa_registered=True))

    page = staff_client.get(f"/partners/{invitation.partner.code}/").content.decode()

    assert "First consent" in page and "Staff invitation" in page
    for step in ("Created", "Sent to Microsoft", "Came back from Microsoft", "Token acquired", "Failed"):
        assert step in page
    assert "not_admin_agent" in page


def test_a_staff_re_consent_link_is_audited(cpv_sim, staff_client, invitation) -> None:  # type: ignore[no-untyped-def]
    response = staff_client.post(f"/consent/staff/partners/{invitation.partner.code}/reconsent-link", follow=True)

    assert b"A new consent link" in response.content
    assert AuditEvent.objects.filter(action="partner.reconsent_link_created").count() == 1


def test_invite_partner_prints_the_url_on_its_last_line(cpv_sim, client, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    out = io.StringIO()

    with django_capture_on_commit_callbacks(execute=True):
        call_command(
            "invite_partner",
            "--name",
            "Tailspin",
            "--email",
            "a@tailspin.example",
            "--cloud",
            "china",
            "--environment",
            "sandbox",
            "--tenant",
            "0b7e4c1a-3f2d-4e5a-9c8b-7a6d5e4f3c2b",
            stdout=out,
            stderr=io.StringIO(),
        )

    url = out.getvalue().strip().splitlines()[-1]
    partner = Partner.objects.get()
    # The link's signature carries its time, which may tick over between the command and this line: compare
    # what it names.
    match = re.fullmatch(r"http://127\.0\.0\.1:8000/consent/i/([^/]+)/", url)
    assert match
    target = invitation_read(match.group(1))
    assert (target.partner, target.purpose) == (partner, "invite")
    assert (partner.cloud, partner.environment, str(partner.tenant_id)) == (
        "china",
        "sandbox",
        "0b7e4c1a-3f2d-4e5a-9c8b-7a6d5e4f3c2b",
    )
    assert client.get(url.removeprefix("http://127.0.0.1:8000")).status_code == 200
    assert len(mail.outbox) == 1


def test_invite_partner_refuses_bad_input(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CommandError, match="is not an email address"):
        call_command("invite_partner", "--name", "X", "--email", "nope", stdout=io.StringIO())
    with pytest.raises(CommandError):
        call_command("invite_partner", "--name", "X", "--email", "a@b.example", "--cloud", "germany")
    assert not Partner.objects.exists()


# --- the vendor's branding: every partner-facing page and email names the vendor and where to write ----------

BRAND = Vendor(
    name="Contoso Cloud Services",
    support_email="help@contoso-cloud.example",
    logo_path="/etc/cpv/logo.svg",
    logo_data_uri="data:image/svg+xml;base64,PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciLz4=",
)


@pytest.fixture
def branded(settings):  # type: ignore[no-untyped-def]
    settings.CPV_VENDOR = BRAND
    return BRAND


def assert_branded(page: str) -> None:
    assert "Contoso Cloud Services" in page
    assert '<a href="mailto:help@contoso-cloud.example" id="support-email">help@contoso-cloud.example</a>' in page
    assert f'src="{BRAND.logo_data_uri}"' in page


def path_of(url: str) -> str:
    return url.removeprefix("http://127.0.0.1:8000")


def test_the_landing_page_says_which_vendor_asks_for_consent(client, invitation, branded) -> None:  # type: ignore[no-untyped-def]
    page = client.get(path_of(invitation.url)).content.decode()

    assert_branded(page)
    assert "Contoso Cloud Services asks to work with Contoso Partners" in page
    assert "Contoso Cloud Services asks your organisation's consent to its Microsoft Entra ID application" in page
    assert "asked for by the application Contoso Cloud Services" in page
    assert "is a Control Panel Vendor" not in page


def test_the_landing_page_reads_well_when_no_vendor_name_is_configured(client, invitation) -> None:  # type: ignore[no-untyped-def]
    page = client.get(path_of(invitation.url)).content.decode()

    assert "Your Control Panel Vendor asks to work with Contoso Partners" in page
    assert "Your Control Panel Vendor asks your organisation's consent" in page
    assert "is a Control Panel Vendor" not in page and "mailto:" not in page and "vendor-foot" not in page


def test_the_result_and_message_pages_are_branded(client, invitation, branded, consent_run, cpv_sim) -> None:  # type: ignore[no-untyped-def]
    run = consent_run(invitation.url, user=partner_user(cpv_sim, global_admin=True, admin_agent=True))
    result = run.client.get(run.callback["Location"])
    token = invitation.url.rstrip("/").rsplit("/", 1)[1]
    expired = client.get(f"/consent/i/{token[:-2]}xx/")

    assert result.status_code == 200 and 'id="result"' in result.content.decode()
    assert_branded(result.content.decode())
    assert expired.status_code == 404 and b"This link does not work" in expired.content
    assert_branded(expired.content.decode())


def test_self_onboarding_is_branded(client, branded) -> None:  # type: ignore[no-untyped-def]
    page = client.get("/onboard/").content.decode()

    assert 'id="onboard"' in page
    assert_branded(page)


def test_the_error_pages_are_branded(client, branded) -> None:  # type: ignore[no-untyped-def]
    missing = client.get("/consent/nothing-here")
    failed = get_resolver().resolve_error_handler(500)(RequestFactory().get("/"))

    assert missing.status_code == 404
    assert_branded(missing.content.decode())
    assert failed.status_code == 500
    page = failed.content.decode()
    assert_branded(page)
    assert 'write to <a href="mailto:help@contoso-cloud.example">' in page


def test_the_500_page_works_with_no_branding(client) -> None:  # type: ignore[no-untyped-def]
    failed = get_resolver().resolve_error_handler(500)(RequestFactory().get("/"))

    assert failed.status_code == 500
    assert "tell your Control Panel Vendor the time it happened" in failed.content.decode()


def test_the_portal_pages_are_branded(client, branded, settings) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner_with_data("Contoso Partners", customers=2)
    sign_in_page = client.get("/portal/").content.decode()
    session = client.session
    session[SESSION_KEY] = {
        "tenant_id": str(partner.tenant_id),
        "user_oid": str(uuid.uuid4()),
        "name": "Ada Admin",
        "username": "ada@contoso.example",
        "cloud": partner.cloud,
        "global_admin": True,
        "mfa": True,
    }
    session.save()
    status_page = client.get("/portal/").content.decode()
    session[SESSION_KEY] = {**session[SESSION_KEY], "tenant_id": str(uuid.uuid4())}
    session.save()
    stranger_page = client.get("/portal/").content.decode()

    assert 'id="portal-sign-in"' in sign_in_page
    assert 'id="org-name"' in status_page
    assert 'id="not-partner"' in stranger_page
    for page in (sign_in_page, status_page, stranger_page):
        assert_branded(page)


def test_the_invitation_email_names_the_vendor_and_its_support_address(
    cpv_sim, branded, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        partner_invite(actor=None, name="Northwind", contact_email="ops@northwind.example")

    (message,) = mail.outbox
    assert message.subject == "Contoso Cloud Services: please consent for Northwind"
    assert "Microsoft's sign-in page names the application Contoso Cloud Services." in message.body
    assert message.body.rstrip().endswith("Contoso Cloud Services\nQuestions: help@contoso-cloud.example")


def test_the_reconsent_email_names_the_vendor_and_its_support_address(
    cpv_sim, invitation, branded, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        partner_reconsent_link(actor=None, partner=invitation.partner, send_email=True)

    (message,) = mail.outbox
    assert message.subject == "Contoso Cloud Services: please renew your consent"
    assert "/consent/i/" in message.body
    assert message.body.rstrip().endswith("Contoso Cloud Services\nQuestions: help@contoso-cloud.example")


def test_the_emails_read_well_when_no_vendor_is_configured(cpv_sim, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        invitation = partner_invite(actor=None, name="Northwind", contact_email="ops@northwind.example")
        partner_reconsent_link(actor=None, partner=invitation.partner, send_email=True)

    invite, reconsent = mail.outbox
    assert invite.subject == "Please consent for Northwind"
    assert reconsent.subject == "Please renew your consent"
    assert reconsent.body.rstrip().endswith("The link works for 14 days.")
    assert "None" not in invite.body and "Questions" not in invite.body


def test_what_a_partner_is_told_to_do_names_the_vendor(branded) -> None:  # type: ignore[no-untyped-def]
    from consent.outcomes import OUTCOMES

    worded = [o.worded_for(branded.name) for o in OUTCOMES.values()]
    unbranded = OUTCOMES["role_unproven"].worded_for(Vendor().label)

    assert all("{vendor}" not in f"{o.title} {o.explanation} {o.what_to_do}" for o in worded)
    assert (
        "Tell Contoso Cloud Services: the setup of its Microsoft app"
        in OUTCOMES["role_unproven"].worded_for(branded.name).what_to_do
    )
    assert unbranded.what_to_do.startswith("Tell your Control Panel Vendor: ")


@pytest.mark.django_db
def test_the_portal_says_which_vendor_acts_for_the_partner(branded) -> None:  # type: ignore[no-untyped-def]
    from tests.factories import portal_client

    partner = active_partner_with_data("Walk Partners")

    page = portal_client(partner).get("/portal/").content.decode()

    assert "Connected: Contoso Cloud Services can act for your organisation" in page
