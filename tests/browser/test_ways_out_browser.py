"""Ways out in Chromium: the authenticator's QR code is an image, `/admin/` as an operator is one page, a
deactivated partner comes back and a locked staff account is unlocked (both audited), and each dead-end page of
the consent flow and the staff sign-in offers a next step that works."""

from __future__ import annotations

from typing import Any

import pytest

from partners.access import Role
from tests.browser.conftest import screenshot
from tests.factories import PASSWORD, make_staff

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def password_sign_in(page: Any, url: str, username: str) -> None:
    page.goto(f"{url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("#sign-in")


def test_the_authenticator_qr_code_is_an_image_the_browser_draws(page, live_cpv, django_user_model, settings) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_STAFF_TOTP = "required"
    make_staff(django_user_model, "ada-admin", Role.ADMIN)

    password_sign_in(page, live_cpv.url, "ada-admin")
    page.wait_for_selector("#totp-qr")
    page.wait_for_function("document.querySelector('#totp-qr').complete")
    screenshot(page, "authenticator-qr")

    assert page.eval_on_selector("#totp-qr", "img => img.naturalWidth") > 0
