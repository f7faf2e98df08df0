"""The admins' break-glass (a password and its TOTP code): wrong codes after the right password are counted in the
database, where no window ends them and only a right code resets them; the tenth freezes the account's password
sign-in until another admin (the staff page) or `manage.py staff_unfreeze` releases it, audited; the first wrong code
of a password sign-in emails the admins."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.test import Client
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from partners.access import Role
from partners.models import AuditEvent, StaffPasswordGuard
from tests.factories import PASSWORD, make_staff, signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_window_lockout(settings):  # type: ignore[no-untyped-def]
    """The window's lockout stays out of the way (tested apart): what is counted here is the database's."""
    settings.CPV_SIGNIN_MAX_FAILURES = 100
    settings.OTP_TOTP_THROTTLE_FACTOR = 0


def code_for(device: TOTPDevice, *, later: int = 0) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time += later
    return f"{totp.token():06d}"


def wrong_code_after_password(username: str, device: TOTPDevice, *, codes: int = 1) -> Any:
    client = Client()
    client.post("/accounts/login/", {"username": username, "password": PASSWORD})
    response = None
    for _ in range(codes):
        response = client.post("/accounts/verify/", {"code": code_for(device, later=-3600)})
    return response


@pytest.fixture
def root(django_user_model):  # type: ignore[no-untyped-def]
    user = django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)
    return user


def test_ten_wrong_codes_freeze_the_password_sign_in_until_another_admin_releases_it(  # type: ignore[no-untyped-def]
    root, admin_user, mailoutbox, django_capture_on_commit_callbacks
) -> None:
    device = TOTPDevice.objects.create(user=root, name="phone", confirmed=True)
    for attempt in range(9):
        assert wrong_code_after_password("root", device).status_code == 400
        if attempt == 4:
            cache.clear()  # the lockout's window ends: the break-glass count does not

    with django_capture_on_commit_callbacks(execute=True):
        frozen = wrong_code_after_password("root", device)
    again = Client()
    right_password = again.post("/accounts/login/", {"username": "root", "password": PASSWORD})

    assert frozen.status_code == 403 and b"password sign-in is frozen" in frozen.content
    assert b"staff_unfreeze root" in frozen.content
    assert StaffPasswordGuard.objects.get(user=root).wrong_codes == 10
    assert right_password.status_code == 200 and b"frozen" in right_password.content
    assert "_auth_user_id" not in again.session
    assert AuditEvent.objects.filter(action="staff.password_frozen", target_id=str(root.pk)).count() == 1
    assert any("frozen" in mail.subject for mail in mailoutbox)

    # another admin releases it (a superuser's account needs a superuser: `root` is one, so a second one acts)
    other = signed_in(Client(), type(root).objects.create_superuser("root2", "r2@example.com", PASSWORD))
    page = other.get("/staff/")
    released = other.post("/staff/", {"what": "unfreeze", "username": "root"}, follow=True)
    client = Client()
    client.post("/accounts/login/", {"username": "root", "password": PASSWORD})
    signed = client.post("/accounts/verify/", {"code": code_for(device)})

    assert b'id="frozen-root"' in page.content
    assert b"works again" in released.content
    assert signed.status_code == 302 and client.get("/").status_code == 200
    row = AuditEvent.objects.get(action="staff.password_unfrozen")
    assert row.actor_label == "root2" and row.detail["wrong_codes"] == 10


def test_an_admin_cannot_release_their_own_account_nor_an_admin_a_superusers(root, admin_user) -> None:  # type: ignore[no-untyped-def]
    from partners.services import PartnerError
    from partners.staff import staff_unfreeze

    StaffPasswordGuard.objects.create(user=root, wrong_codes=10, frozen_at="2026-01-01T00:00:00Z")
    StaffPasswordGuard.objects.create(user=admin_user, wrong_codes=10, frozen_at="2026-01-01T00:00:00Z")

    with pytest.raises(PartnerError, match="ask another admin"):
        staff_unfreeze(actor=admin_user, user=admin_user)
    with pytest.raises(PartnerError, match="only another superuser"):
        staff_unfreeze(actor=admin_user, user=root)
    assert not AuditEvent.objects.filter(action="staff.password_unfrozen").exists()


def test_the_count_outlives_every_window_and_only_a_right_code_resets_it(admin_user) -> None:  # type: ignore[no-untyped-def]
    device = TOTPDevice.objects.create(user=admin_user, name="phone", confirmed=True)
    wrong_code_after_password("ada-admin", device, codes=6)
    cache.clear()
    # a right password alone, or an admin's other session, resets nothing
    Client().post("/accounts/login/", {"username": "ada-admin", "password": PASSWORD})
    assert StaffPasswordGuard.objects.get(user=admin_user).wrong_codes == 6

    client = Client()
    client.post("/accounts/login/", {"username": "ada-admin", "password": PASSWORD})
    client.post("/accounts/verify/", {"code": code_for(device)})

    assert StaffPasswordGuard.objects.get(user=admin_user).wrong_codes == 0


def test_the_first_wrong_code_of_a_password_sign_in_emails_the_admins(  # type: ignore[no-untyped-def]
    root, admin_user, django_user_model, mailoutbox, django_capture_on_commit_callbacks
) -> None:
    django_user_model.objects.filter(pk=admin_user.pk).update(email="ada@example.com")
    make_staff(django_user_model, "vera-viewer", Role.VIEWER)
    device = TOTPDevice.objects.create(user=admin_user, name="phone", confirmed=True)
    wrong = code_for(device, later=-3600)

    with django_capture_on_commit_callbacks(execute=True):
        wrong_code_after_password("ada-admin", device, codes=3)
    first_round = len(mailoutbox)
    with django_capture_on_commit_callbacks(execute=True):
        wrong_code_after_password("ada-admin", device)

    assert first_round == 1 and len(mailoutbox) == 2
    mail = mailoutbox[0]
    assert "wrong authenticator code for ada-admin" in mail.subject.lower()
    assert sorted(mail.to) == ["ada@example.com", "root@example.com"]
    assert wrong not in mail.body and PASSWORD not in mail.body


def test_the_server_command_releases_a_frozen_password_sign_in(root) -> None:  # type: ignore[no-untyped-def]
    StaffPasswordGuard.objects.create(user=root, wrong_codes=12, frozen_at="2026-01-01T00:00:00Z")
    out = io.StringIO()

    call_command("staff_unfreeze", "root", stdout=out)

    assert "Released the password sign-in of root" in out.getvalue()
    guard = StaffPasswordGuard.objects.get(user=root)
    assert guard.frozen_at is None and guard.wrong_codes == 0
    assert AuditEvent.objects.get(action="staff.password_unfrozen").actor_label == "system"
    with pytest.raises(CommandError, match="not frozen"):
        call_command("staff_unfreeze", "root")
    with pytest.raises(CommandError, match="No staff account"):
        call_command("staff_unfreeze", "nobody")
