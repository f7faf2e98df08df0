"""Staff sign-in: with Microsoft against the vendor's own tenant (the simulator's, with the real msal client),
matched by tenant and object id and only with MFA; with a password as the admins' break-glass, the lockout, and a
TOTP code from an authenticator app (django-otp); the admin site behind the same finished sign-in."""

from __future__ import annotations

import io
import json
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from consent import oauth_state
from consent.sealing import seal
from partners.access import MICROSOFT, SIGN_IN_SESSION_KEY, Role
from partners.models import AuditEvent, StaffIdentity
from partners.services import staff_identity_set
from tests.factories import PASSWORD, make_staff, signed_in
from tests.simulated import sign_in, vendor_user

pytestmark = pytest.mark.django_db
BASE_URL = "http://127.0.0.1:8000"
CALLBACK = f"{BASE_URL}/accounts/microsoft/callback/"


@pytest.fixture
def staff_sim(sim_settings, settings):  # type: ignore[no-untyped-def]
    """The vendor's tenant in the simulator is the staff tenant, and the staff callback is a redirect URI. The
    deployment's cloud is the custom one, as the demo's is."""
    sim_settings.world.add_redirect_uris([CALLBACK])
    settings.CPV_CLOUD = "custom"
    settings.CPV_STAFF_TENANT_ID = sim_settings.world.vendor.tenant_id
    settings.CPV_STAFF_PASSWORD_SIGN_IN = "admins"
    return sim_settings


def microsoft_sign_in(client: Client, user_oid: str, *, next_url: str = "") -> Any:
    """Press "Sign in with Microsoft", pick the account on Microsoft's page, and follow the answer back."""
    start = client.post("/accounts/microsoft/", {"next": next_url})
    assert start.status_code == 303, start.content
    target, fields = sign_in(str(start["Location"]), user_oid=user_oid)
    assert target == CALLBACK
    callback = client.post("/accounts/microsoft/callback/", fields)
    assert callback.status_code == 303, callback.content
    return client.get(callback["Location"])


def code_for(device: TOTPDevice, *, later: int = 0) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time += later
    return f"{totp.token():06d}"


def authenticator(user: Any) -> TOTPDevice:
    return TOTPDevice.objects.create(user=user, name="phone", confirmed=True)


def password_sign_in(client: Client, username: str, next_url: str = "/") -> Any:
    return client.post("/accounts/login/", {"username": username, "password": PASSWORD, "next": next_url})


# --- Microsoft ---------------------------------------------------------------------------------------------------


def test_staff_sign_in_with_microsoft_on_the_vendors_tenant_and_reach_the_dashboard(staff_sim, operator) -> None:  # type: ignore[no-untyped-def]
    person = vendor_user(staff_sim, "staff.operator")
    staff_identity_set(actor=None, user=operator, object_id=uuid.UUID(person.oid))
    client = Client()

    page = client.get("/accounts/login/").content.decode()
    start = client.post("/accounts/microsoft/", {"next": "/partners/"})
    query = parse_qs(urlsplit(start["Location"]).query)
    landed = microsoft_sign_in(client, person.oid, next_url="/partners/")

    assert 'id="sign-in-microsoft"' in page
    # the vendor's own tenant is the authority: only its accounts can sign in
    assert urlsplit(start["Location"]).path.startswith(f"/{staff_sim.world.vendor.tenant_id}/oauth2/v2.0/authorize")
    assert query["scope"] == ["openid profile"] and query["code_challenge_method"] == ["S256"]
    assert landed.status_code == 303 and landed["Location"] == "/partners/"
    assert client.get("/partners/").status_code == 200
    identity = StaffIdentity.objects.get(user=operator)
    assert client.session[SIGN_IN_SESSION_KEY] == {
        "method": MICROSOFT, "identity": identity.pk, "object_id": str(identity.object_id)
    }  # fmt: skip
    assert identity.last_username == person.upn and identity.last_signed_in_at is not None
    signed = AuditEvent.objects.get(action="staff.signed_in")
    assert signed.actor_id == operator.pk and signed.detail["method"] == "microsoft"


def test_a_microsoft_account_nobody_bound_is_refused_and_told_its_object_id(staff_sim, django_user_model) -> None:  # type: ignore[no-untyped-def]
    person = vendor_user(staff_sim, "staff.stranger")
    # An account whose email is the person's sign-in name is still not theirs: matching is by tenant and object id.
    make_staff(django_user_model, "lookalike", Role.ADMIN).__class__.objects.filter(username="lookalike").update(
        email=person.upn
    )
    client = Client()

    refused = microsoft_sign_in(client, person.oid)

    assert refused.status_code == 403
    assert b"no staff access here" in refused.content and person.oid.encode() in refused.content
    failed = AuditEvent.objects.get(action="staff.sign_in_failed")
    assert failed.detail["reason"] == "microsoft_refused" and failed.detail["why"] == "not_staff"
    assert "_auth_user_id" not in client.session
    assert client.get("/").status_code == 302


def test_a_microsoft_sign_in_without_mfa_is_refused(staff_sim, operator) -> None:  # type: ignore[no-untyped-def]
    person = vendor_user(staff_sim, "staff.nomfa")
    staff_identity_set(actor=None, user=operator, object_id=uuid.UUID(person.oid))
    client = Client()

    refused = microsoft_sign_in(client, person.oid)

    assert refused.status_code == 403 and b"Multi-factor authentication is required" in refused.content
    assert "_auth_user_id" not in client.session


def test_with_an_authentication_context_the_sign_in_asks_for_it_and_requires_it_in_the_id_token(  # type: ignore[no-untyped-def]
    staff_sim, operator, settings
) -> None:
    """Microsoft's authentication-context guide: the app asks the `acrs` claim as essential, Conditional Access on
    the vendor's tenant enforces MFA for that context, and the app checks `acrs` in the verified id_token."""
    settings.CPV_STAFF_AUTH_CONTEXT = "c1"
    person = vendor_user(staff_sim, "staff.operator")
    staff_identity_set(actor=None, user=operator, object_id=uuid.UUID(person.oid))
    client = Client()
    start = client.post("/accounts/microsoft/", {"next": "/partners/"})
    claims = parse_qs(urlsplit(start["Location"]).query)["claims"]
    assert json.loads(claims[0]) == {"id_token": {"acrs": {"essential": True, "value": "c1"}}}

    landed = microsoft_sign_in(client, person.oid, next_url="/partners/")

    assert landed.status_code == 303 and landed["Location"] == "/partners/"
    assert client.session["_auth_user_id"] == str(operator.pk)


def test_with_an_authentication_context_a_sign_in_that_did_not_satisfy_it_is_refused_in_words(  # type: ignore[no-untyped-def]
    staff_sim, operator, settings
) -> None:
    settings.CPV_STAFF_AUTH_CONTEXT = "c1"
    person = vendor_user(staff_sim, "staff.nomfa")
    staff_identity_set(actor=None, user=operator, object_id=uuid.UUID(person.oid))
    client = Client()

    refused = microsoft_sign_in(client, person.oid)

    assert refused.status_code == 403
    assert b"did not meet the vendor&#x27;s sign-in policy" in refused.content and b"(c1)" in refused.content
    assert "_auth_user_id" not in client.session


def test_an_unknown_mfa_verdict_is_not_taken_for_mfa(staff_sim, operator, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A Graph token that cannot be read (Microsoft may change its format) says nothing about MFA: refused, with
    words naming the authentication context that would prove it."""
    from microsoft import identity

    monkeypatch.setattr(identity, "access_token_claims", lambda token: {})
    person = vendor_user(staff_sim, "staff.operator")
    staff_identity_set(actor=None, user=operator, object_id=uuid.UUID(person.oid))
    client = Client()

    refused = microsoft_sign_in(client, person.oid)

    assert refused.status_code == 403 and b"CPV_STAFF_AUTH_CONTEXT" in refused.content
    assert "_auth_user_id" not in client.session


@pytest.mark.parametrize("why", ["disabled", "no role"])
def test_a_bound_account_that_is_disabled_or_has_no_role_is_refused(staff_sim, django_user_model, why) -> None:  # type: ignore[no-untyped-def]
    person = vendor_user(staff_sim, "staff.operator")
    user = make_staff(django_user_model, "someone", Role.NONE if why == "no role" else Role.OPERATOR)
    staff_identity_set(actor=None, user=user, object_id=uuid.UUID(person.oid))
    if why == "disabled":
        django_user_model.objects.filter(pk=user.pk).update(is_active=False)
    client = Client()

    refused = microsoft_sign_in(client, person.oid)

    assert refused.status_code == 403 and "_auth_user_id" not in client.session


def test_an_identity_of_another_tenant_is_refused_even_when_its_object_id_is_bound(staff_sim, operator) -> None:  # type: ignore[no-untyped-def]
    """The hand-over names another tenant (as an account of another organisation would): nothing matches it."""
    staff_identity_set(actor=None, user=operator, object_id=uuid.UUID(int=7))
    client = Client()
    client.cookies["__Host-cpv-staff"] = "browser-key"
    handoff = "one-time-key"
    handoff_hash = oauth_state.digest(handoff)
    identity = {
        "tenant_id": str(uuid.uuid4()), "user_oid": str(uuid.UUID(int=7)), "name": "Mallory",
        "username": "m@evil.example", "cloud": "global", "global_admin": None, "mfa": True,
    }  # fmt: skip
    cache.set(
        f"staff-handoff:{handoff_hash}",
        seal({"browser": oauth_state.digest("browser-key"), "identity": identity}, purpose="staff-handoff",
             bound_to=handoff_hash),
        timeout=60,
    )  # fmt: skip

    refused = client.get(f"/accounts/microsoft/welcome/{handoff}/")

    assert refused.status_code == 403 and b"another organisation" in refused.content
    assert "_auth_user_id" not in client.session


def test_a_microsoft_answer_is_single_use_and_bound_to_the_browser_that_started_it(staff_sim, operator) -> None:  # type: ignore[no-untyped-def]
    person = vendor_user(staff_sim, "staff.operator")
    staff_identity_set(actor=None, user=operator, object_id=uuid.UUID(person.oid))
    client = Client()
    start = client.post("/accounts/microsoft/", {})
    _target, fields = sign_in(str(start["Location"]), user_oid=person.oid)

    stranger = Client().post("/accounts/microsoft/callback/", fields)
    first = client.post("/accounts/microsoft/callback/", fields)
    second = client.post("/accounts/microsoft/callback/", fields)

    assert stranger.status_code == 400 and b"not started in this browser" in stranger.content
    assert first.status_code == 303 and second.status_code == 400


def test_microsoft_sign_in_is_not_offered_without_a_staff_tenant(sim_settings, settings) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_STAFF_TENANT_ID = ""

    page = Client().get("/accounts/login/").content.decode()
    start = Client().post("/accounts/microsoft/", {})

    assert 'id="sign-in-microsoft"' not in page and start.status_code == 404


# --- passwords: the admins' break-glass, with the TOTP code --------------------------------------------------------


def test_with_microsoft_sign_in_only_admins_may_use_a_password(staff_sim, operator, admin_user) -> None:  # type: ignore[no-untyped-def]
    refused_client, admin_client = Client(), Client()

    refused = password_sign_in(refused_client, "otto-operator")
    admitted = password_sign_in(admin_client, "ada-admin")

    # The right password of an account that signs in with Microsoft gets the wrong password's answer.
    assert refused.status_code == 200 and b"did not match" in refused.content
    assert "_auth_user_id" not in refused_client.session
    assert admitted.status_code == 302 and admin_client.get("/").status_code == 200


def test_a_session_of_a_non_admin_password_sign_in_is_ended_when_passwords_become_admin_only(
    settings, operator
) -> None:  # type: ignore[no-untyped-def]
    client = signed_in(Client(), operator)
    settings.CPV_STAFF_PASSWORD_SIGN_IN = "admins"

    response = client.get("/")

    assert response.status_code == 302 and response["Location"] == "/accounts/login/?refused=password"
    assert "_auth_user_id" not in client.session


def test_an_account_with_an_authenticator_app_gives_its_code_after_the_password(admin_user, settings) -> None:  # type: ignore[no-untyped-def]
    settings.OTP_TOTP_THROTTLE_FACTOR = 0  # django-otp's growing delay after a wrong code, tested apart below
    device = authenticator(admin_user)
    client = Client()

    after_password = password_sign_in(client, "ada-admin", next_url="/partners/")
    before_code = client.get("/partners/")
    wrong = client.post("/accounts/verify/", {"code": code_for(device, later=-3600)})
    right = client.post("/accounts/verify/", {"code": code_for(device)})

    assert after_password.status_code == 302 and after_password["Location"] == "/accounts/verify/"
    assert before_code.status_code == 302 and before_code["Location"].startswith("/accounts/verify/")
    assert wrong.status_code == 400 and b"not right" in wrong.content
    assert right.status_code == 302 and right["Location"] == "/partners/"
    assert client.get("/partners/").status_code == 200


def test_wrong_codes_lock_the_account_like_wrong_passwords(admin_user, settings) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_SIGNIN_MAX_FAILURES = 3
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    device = authenticator(admin_user)
    client = Client()
    password_sign_in(client, "ada-admin")

    for _ in range(3):
        client.post("/accounts/verify/", {"code": code_for(device, later=-3600)})
    locked = client.post("/accounts/verify/", {"code": code_for(device)})
    again = Client()
    password_again = password_sign_in(again, "ada-admin")

    assert locked.status_code == 429 and b"Too many wrong codes" in locked.content
    # the right password does not buy another round of guesses: the account stays locked
    assert password_again.status_code == 200 and b"Too many failed sign-ins" in password_again.content


def test_django_otp_delays_the_next_try_after_a_wrong_code(admin_user) -> None:  # type: ignore[no-untyped-def]
    device = authenticator(admin_user)
    client = Client()
    password_sign_in(client, "ada-admin")

    client.post("/accounts/verify/", {"code": code_for(device, later=-3600)})
    too_soon = client.post("/accounts/verify/", {"code": code_for(device)})
    TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_timestamp=timezone.now() - timedelta(seconds=30))
    later = client.post("/accounts/verify/", {"code": code_for(device)})

    # The right code given during the delay is not read, not refused as wrong, and not counted as a failure.
    assert too_soon.status_code == 429 and b"Wait a few seconds" in too_soon.content
    assert later.status_code == 302 and client.get("/").status_code == 200


def test_a_right_password_clears_django_otps_delay_so_it_cannot_grow_into_days(admin_user, settings) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_SIGNIN_MAX_FAILURES = 50
    device = authenticator(admin_user)
    TOTPDevice.objects.filter(pk=device.pk).update(
        throttling_failure_count=20, throttling_failure_timestamp=timezone.now()
    )
    client = Client()

    password_sign_in(client, "ada-admin")
    right = client.post("/accounts/verify/", {"code": code_for(device)})

    assert right.status_code == 302 and client.get("/").status_code == 200


def test_spelling_the_username_differently_does_not_buy_more_guesses(admin_user, settings) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_SIGNIN_MAX_FAILURES = 2
    for variant in ("ada-admin ", "ADA-ADMIN"):
        Client().post("/accounts/login/", {"username": variant, "password": "wrong-password"})

    locked = password_sign_in(Client(), "ａｄａ-ａｄｍｉｎ")  # noqa: RUF001 - the full-width spelling, on purpose

    assert locked.status_code == 200 and b"Too many failed sign-ins" in locked.content


def test_a_foreign_value_under_a_lockout_counter_neither_locks_nor_breaks_the_sign_in(admin_user) -> None:  # type: ignore[no-untyped-def]
    from partners.staff import sign_in_keys

    cache.set(sign_in_keys(None, "ada-admin")["username"], "not a number", timeout=60)

    assert password_sign_in(Client(), "ada-admin").status_code == 302


def test_unbinding_a_microsoft_account_ends_its_sessions_at_once(staff_sim, operator) -> None:  # type: ignore[no-untyped-def]
    person = vendor_user(staff_sim, "staff.operator")
    staff_identity_set(actor=None, user=operator, object_id=uuid.UUID(person.oid))
    client = Client()
    microsoft_sign_in(client, person.oid)
    before = client.get("/partners/")

    staff_identity_set(actor=None, user=operator, object_id=None)
    after = client.get("/partners/")

    assert before.status_code == 200
    assert after.status_code == 302 and after["Location"] == "/accounts/login/?refused=unbound"
    assert "_auth_user_id" not in client.session
    assert b"no longer bound" in client.get(after["Location"]).content


def test_a_session_that_skipped_the_code_must_set_one_up_once_totp_becomes_required(admin_user, settings) -> None:  # type: ignore[no-untyped-def]
    client = signed_in(Client(), admin_user)
    settings.CPV_STAFF_TOTP = "required"

    response = client.get("/")

    assert response.status_code == 302 and response["Location"].startswith("/accounts/authenticator/")


def test_each_set_up_shows_a_fresh_secret_and_an_earlier_one_is_never_confirmed(admin_user, settings) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_STAFF_TOTP = "required"
    first, second = Client(), Client()
    password_sign_in(first, "ada-admin")
    first_secret = first.get("/accounts/authenticator/").context["secret"]
    early = TOTPDevice.objects.get(user=admin_user, confirmed=False)
    password_sign_in(second, "ada-admin")
    second_secret = second.get("/accounts/authenticator/").context["secret"]

    stale = first.post("/accounts/authenticator/", {"code": code_for(early)})

    assert first_secret != second_secret
    assert stale.status_code == 400 and not TOTPDevice.objects.filter(user=admin_user, confirmed=True).exists()


def test_an_account_that_signs_in_with_microsoft_only_sets_up_no_authenticator(staff_sim, operator) -> None:  # type: ignore[no-untyped-def]
    person = vendor_user(staff_sim, "staff.operator")
    staff_identity_set(actor=None, user=operator, object_id=uuid.UUID(person.oid))
    client = Client()
    microsoft_sign_in(client, person.oid)

    response = client.get("/accounts/authenticator/")

    assert response.status_code == 302 and response["Location"] == "/accounts/security/"
    assert not TOTPDevice.objects.exists()


def test_the_pages_with_forms_keep_the_referrer_policy_that_lets_their_posts_through(admin_user, settings) -> None:  # type: ignore[no-untyped-def]
    """Under `no-referrer` a browser posts `Origin: null`, which Django's CSRF check refuses."""
    settings.CPV_STAFF_TOTP = "required"
    client = Client(enforce_csrf_checks=True)
    page = client.get("/accounts/login/")
    token = page.cookies["csrftoken"].value
    signed = client.post(
        "/accounts/login/", {"username": "ada-admin", "password": PASSWORD, "csrfmiddlewaretoken": token},
        HTTP_ORIGIN="http://testserver",
    )  # fmt: skip
    enroll = client.get("/accounts/authenticator/")
    device = TOTPDevice.objects.get(user=admin_user)
    token = client.cookies["csrftoken"].value
    confirmed = client.post(
        "/accounts/authenticator/", {"code": code_for(device), "csrfmiddlewaretoken": token},
        HTTP_ORIGIN="http://testserver",
    )  # fmt: skip

    assert signed.status_code == 302
    for response in (page, enroll, client.get("/accounts/security/")):
        assert response["Referrer-Policy"] != "no-referrer"
    assert confirmed.status_code == 302


def test_the_sign_in_page_lets_its_microsoft_form_lead_to_the_authority(staff_sim) -> None:  # type: ignore[no-untyped-def]
    policy = Client().get("/accounts/login/")["Content-Security-Policy"]

    form_action = next(part for part in policy.split(";") if part.strip().startswith("form-action"))
    assert "'self'" in form_action and staff_sim.authority_host in form_action


def test_binding_needs_a_staff_tenant_and_a_superuser_to_touch_a_superuser(
    settings, admin_user, django_user_model
) -> None:  # type: ignore[no-untyped-def]
    from partners.services import PartnerError

    root = django_user_model.objects.create_superuser("root", "r@example.com", PASSWORD)
    settings.CPV_STAFF_TENANT_ID = ""
    with pytest.raises(PartnerError, match="not configured"):
        staff_identity_set(actor=admin_user, user=admin_user, object_id=uuid.uuid4())
    settings.CPV_STAFF_TENANT_ID = str(uuid.uuid4())
    with pytest.raises(PartnerError, match="only another superuser"):
        staff_identity_set(actor=admin_user, user=root, object_id=uuid.uuid4())


def test_where_totp_is_required_a_password_sign_in_sets_up_an_authenticator_app_first(admin_user, settings) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_STAFF_TOTP = "required"
    client = Client()

    after_password = password_sign_in(client, "ada-admin")
    page = client.get("/accounts/authenticator/")
    blocked = client.get("/")
    device = TOTPDevice.objects.get(user=admin_user, confirmed=False)
    confirmed = client.post("/accounts/authenticator/", {"code": code_for(device)})

    assert after_password["Location"] == "/accounts/authenticator/"
    assert page.status_code == 200 and b'id="totp-qr"' in page.content and b"data:image/svg+xml;base64," in page.content
    assert page["Cache-Control"].startswith("no-store") or "private" in page["Cache-Control"]
    assert blocked.status_code == 302 and blocked["Location"].startswith("/accounts/authenticator/")
    assert confirmed.status_code == 302 and client.get("/").status_code == 200
    assert TOTPDevice.objects.get(user=admin_user).confirmed
    assert AuditEvent.objects.filter(action="staff.totp_enrolled").count() == 1


def test_the_admin_site_needs_the_finished_sign_in_too(django_user_model, settings) -> None:  # type: ignore[no-untyped-def]
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    root = django_user_model.objects.create_superuser("root", "r@example.com", PASSWORD)
    device = authenticator(root)
    client = Client()
    password_sign_in(client, "root", next_url="/admin/")

    before = client.get("/admin/", follow=True)
    client.post("/accounts/verify/", {"code": code_for(device)})
    after = client.get("/admin/")

    assert before.redirect_chain[-1][0].startswith("/accounts/verify/")
    assert after.status_code == 200
    # An authenticator's secret is not shown in the admin at all.
    assert client.get("/admin/otp_totp/totpdevice/").status_code == 404


# --- the staff page: binding Microsoft accounts, resetting authenticator apps ---------------------------------------


def test_an_admin_binds_and_unbinds_a_microsoft_account_on_the_staff_page(staff_sim, admin_user, operator) -> None:  # type: ignore[no-untyped-def]
    client = signed_in(Client(), admin_user)
    oid = str(uuid.uuid4())

    bound = client.post("/staff/", {"what": "microsoft", "username": "otto-operator", "object_id": oid})
    taken = client.post("/staff/", {"what": "microsoft", "username": "ada-admin", "object_id": oid}, follow=True)
    bad = client.post(
        "/staff/", {"what": "microsoft", "username": "otto-operator", "object_id": "operator@x"}, follow=True
    )
    page = client.get("/staff/").content.decode()
    unbound = client.post("/staff/", {"what": "microsoft", "username": "otto-operator", "object_id": ""})

    assert bound.status_code == 302 and oid in page
    assert b"already bound to otto-operator" in taken.content
    assert b"Enter the account&#x27;s object id" in bad.content
    assert unbound.status_code == 302 and not StaffIdentity.objects.filter(user=operator).exists()
    actions = list(
        AuditEvent.objects.filter(action__startswith="staff.microsoft").order_by("pk").values_list("action", flat=True)
    )
    assert actions == ["staff.microsoft_bound", "staff.microsoft_unbound"]


def test_an_admin_resets_a_lost_authenticator_but_not_a_superusers(admin_user, operator, django_user_model) -> None:  # type: ignore[no-untyped-def]
    root = django_user_model.objects.create_superuser("root", "r@example.com", PASSWORD)
    authenticator(operator)
    authenticator(root)
    client = signed_in(Client(), admin_user)

    reset = client.post("/staff/", {"what": "totp_reset", "username": "otto-operator"}, follow=True)
    refused = client.post("/staff/", {"what": "totp_reset", "username": "root"}, follow=True)

    assert b"Removed 1 authenticator app" in reset.content and not TOTPDevice.objects.filter(user=operator).exists()
    assert b"only another superuser" in refused.content and TOTPDevice.objects.filter(user=root).exists()
    assert AuditEvent.objects.filter(action="staff.totp_reset").count() == 1


def test_an_operator_cannot_reach_the_staff_page_to_bind_anyone(staff_sim, operator) -> None:  # type: ignore[no-untyped-def]
    person = vendor_user(staff_sim, "staff.operator")
    staff_identity_set(actor=None, user=operator, object_id=uuid.UUID(person.oid))
    client = Client()
    microsoft_sign_in(client, person.oid)

    response = client.post(
        "/staff/", {"what": "microsoft", "username": "otto-operator", "object_id": str(uuid.uuid4())}
    )

    assert response.status_code == 404
    assert list(StaffIdentity.objects.values_list("object_id", flat=True)) == [uuid.UUID(person.oid)]


def test_a_locked_out_admin_is_reset_from_the_server_with_a_command(django_user_model) -> None:  # type: ignore[no-untyped-def]
    from django.core.management import CommandError, call_command

    root = django_user_model.objects.create_superuser("root", "r@example.com", PASSWORD)
    authenticator(root)
    out = io.StringIO()

    call_command("staff_totp_reset", "root", stdout=out)

    assert "Removed 1 authenticator app of root." in out.getvalue()
    assert not TOTPDevice.objects.filter(user=root).exists()
    assert AuditEvent.objects.get(action="staff.totp_reset").actor_label == "system"
    with pytest.raises(CommandError, match="No staff account is called 'nobody'"):
        call_command("staff_totp_reset", "nobody")


@pytest.mark.parametrize(
    ("scope", "path"), [("staff-start", "/accounts/microsoft/"), ("portal-start", "/portal/sign-in")],
)  # fmt: skip
def test_starting_a_microsoft_sign_in_is_limited_per_address(
    staff_sim, monkeypatch, one_rate_window, scope, path
) -> None:  # type: ignore[no-untyped-def]
    from cpv import ratelimit

    monkeypatch.setitem(ratelimit.LIMITS, scope, ratelimit.Limit(1, 60))
    client = Client()

    first = client.post(path, {"cloud": "global"})
    second = client.post(path, {"cloud": "global"})

    assert first.status_code == 303
    assert second.status_code == 429 and second["Retry-After"] == "60" and b"Too many attempts" in second.content
