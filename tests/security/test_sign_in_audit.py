"""Staff sign-ins, refused or not, and a superuser's change of their own password are audit rows, which never hold a
password, a code, or a typed username that names no account (often a password typed in the wrong box)."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from partners.models import AuditEvent
from tests.factories import PASSWORD, signed_in

pytestmark = pytest.mark.django_db
NEW_PASSWORD = "another-long-password-42"


def every_row() -> str:
    return json.dumps(list(AuditEvent.objects.values("actor_label", "action", "target_id", "detail")))


def code_for(device: TOTPDevice, *, later: int = 0) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time += later
    return f"{totp.token():06d}"


def test_a_password_sign_in_and_its_code_are_audited_without_either(admin_user, settings) -> None:  # type: ignore[no-untyped-def]
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    device = TOTPDevice.objects.create(user=admin_user, name="phone", confirmed=True)
    client = Client(REMOTE_ADDR="203.0.113.9")
    wrong_code = code_for(device, later=-3600)
    right_code = code_for(device)

    client.post("/accounts/login/", {"username": "ada-admin", "password": PASSWORD})
    client.post("/accounts/verify/", {"code": wrong_code})
    client.post("/accounts/verify/", {"code": right_code})

    failed = AuditEvent.objects.get(action="staff.sign_in_failed")
    succeeded = AuditEvent.objects.get(action="staff.signed_in")
    assert failed.detail == {"user": "ada-admin", "reason": "wrong_code", "address": "203.0.113.9"}
    assert failed.target_id == str(admin_user.pk)
    assert succeeded.actor_id == admin_user.pk
    assert succeeded.detail == {"user": "ada-admin", "method": "password", "address": "203.0.113.9"}
    rows = every_row()
    assert PASSWORD not in rows and wrong_code not in rows and right_code not in rows


def test_a_wrong_password_is_audited_and_a_username_that_names_nobody_is_not_written(admin_user) -> None:  # type: ignore[no-untyped-def]
    Client().post("/accounts/login/", {"username": "ada-admin", "password": "Wrong-Password-1"})
    Client().post("/accounts/login/", {"username": "MySecretPassw0rd!", "password": "whatever-it-was"})

    rows = list(AuditEvent.objects.filter(action="staff.sign_in_failed").order_by("pk"))
    assert [(r.detail["user"], r.detail["reason"]) for r in rows] == [
        ("ada-admin", "wrong_password"), ("", "wrong_password")
    ]  # fmt: skip
    text = every_row()
    assert "Wrong-Password-1" not in text and "MySecretPassw0rd!" not in text and "whatever-it-was" not in text


def test_a_password_sign_in_without_a_code_is_audited(admin_user) -> None:  # type: ignore[no-untyped-def]
    Client().post("/accounts/login/", {"username": "ada-admin", "password": PASSWORD})

    row = AuditEvent.objects.get(action="staff.signed_in")
    assert row.actor_label == "ada-admin" and row.detail["method"] == "password"


def test_a_superusers_own_password_change_is_audited_without_the_password(django_user_model) -> None:  # type: ignore[no-untyped-def]
    root = django_user_model.objects.create_superuser("root", "r@example.com", PASSWORD)
    client = signed_in(Client(), root)

    changed = client.post(
        "/admin/password_change/",
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )

    assert changed.status_code == 302 and changed["Location"] == "/admin/password_change/done/"
    root.refresh_from_db()
    assert root.check_password(NEW_PASSWORD)
    row = AuditEvent.objects.get(action="staff.password_changed")
    assert row.actor_id == root.pk and row.detail == {"user": "root", "own": True, "superuser": True}
    text = every_row()
    assert PASSWORD not in text and NEW_PASSWORD not in text
    # the session goes on (Django keeps it valid after one's own change)
    assert client.get("/admin/").status_code == 200
