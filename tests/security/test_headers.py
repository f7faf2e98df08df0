"""Headers on every page (CSP, framing, referrer, content type), nothing inline, and production's HSTS and
cookie attributes as a production process really sends them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from consent.services import partner_invite
from partners.invitations import invitation_token
from partners.models import Partner
from tests.conftest import ROOT, project_env
from tests.cpv.test_config import production_env

pytestmark = pytest.mark.django_db

STAFF_PAGES = ["/", "/partners/", "/audit/", "/staff/", "/settings/", "/consent/staff/invite", "/admin/"]
PUBLIC_PAGES = ["/accounts/login/", "/onboard/", "/portal/"]
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.IGNORECASE)
INLINE_HANDLER = re.compile(r"\son[a-z]+\s*=", re.IGNORECASE)
INLINE_STYLE = re.compile(r"\sstyle\s*=", re.IGNORECASE)
FOREIGN_ASSET = re.compile(r"""(?:src|href)=["'](?:https?:)?//(?!testserver)""", re.IGNORECASE)


@pytest.fixture
def pages(cpv_sim, client, django_user_model) -> list[tuple[str, Client]]:  # type: ignore[no-untyped-def]
    partner = partner_invite(actor=None, name="Headers Inc", contact_email="h@example.com", send_email=False).partner
    staff = Client()
    staff.force_login(django_user_model.objects.create_superuser("root", "r@example.com", "x" * 20))
    landing = f"/consent/i/{invitation_token(partner=partner, purpose='invite')}/"
    urls = [(url, staff) for url in [*STAFF_PAGES, f"/partners/{partner.code}/", "/admin/partners/partner/"]]
    return urls + [(url, client) for url in [*PUBLIC_PAGES, landing]]


def test_every_page_sends_a_strict_content_security_policy(pages) -> None:  # type: ignore[no-untyped-def]
    for url, client in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        policy = response["Content-Security-Policy"]
        for directive in ("default-src 'self'", "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'"):
            assert directive in policy, (url, policy)
        script = re.search(r"script-src ([^;]*)", policy)
        assert script and "unsafe-inline" not in script.group(1) and "unsafe-eval" not in script.group(1), url
        assert response["X-Frame-Options"] == "DENY", url
        assert response["X-Content-Type-Options"] == "nosniff", url
        assert response["Referrer-Policy"] in {"same-origin", "no-referrer"}, url


def test_our_pages_hold_no_inline_script_style_or_foreign_asset(pages) -> None:  # type: ignore[no-untyped-def]
    for url, client in pages:
        if url.startswith("/admin/"):
            continue  # Django's own admin templates, served under the same policy
        html = client.get(url).content.decode()
        assert not INLINE_SCRIPT.search(html), url
        assert not INLINE_HANDLER.search(html), url
        assert not INLINE_STYLE.search(html), url
        assert not FOREIGN_ASSET.search(html), url


def test_the_consent_page_may_send_its_form_only_here_and_to_its_partners_sign_in(cpv_sim, client) -> None:  # type: ignore[no-untyped-def]
    partner = partner_invite(actor=None, name="Form Inc", contact_email="f@example.com", send_email=False).partner

    policy = client.get(f"/consent/i/{invitation_token(partner=partner, purpose='invite')}/")["Content-Security-Policy"]

    form_action = re.search(r"form-action ([^;]*)", policy)
    assert form_action and form_action.group(1).split() == ["'self'", cpv_sim.authority_host]


def test_next_never_leads_off_site(client, django_user_model) -> None:  # type: ignore[no-untyped-def]
    django_user_model.objects.create_superuser("root", "r@example.com", "a-long-test-password")
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example", "javascript:alert(1)"):
        client.logout()
        response = client.post(
            f"/accounts/login/?next={target}", {"username": "root", "password": "a-long-test-password", "next": target}
        )
        assert response.status_code == 302, target
        assert "evil" not in response["Location"] and not response["Location"].startswith("javascript"), target


PROBE = """
import json, django
django.setup()
from django.core.management import call_command
call_command("collectstatic", interactive=False, verbosity=0)
from django.test import Client
response = Client().get("/accounts/login/", secure=True)
from django.conf import settings
print(json.dumps({
    "status": response.status_code,
    "hsts": response.get("Strict-Transport-Security", ""),
    "cookies": {name: dict(morsel) for name, morsel in response.cookies.items()},
    "session_cookie": settings.SESSION_COOKIE_NAME,
    "session_age": settings.SESSION_COOKIE_AGE,
    "expire_at_close": settings.SESSION_EXPIRE_AT_BROWSER_CLOSE,
    "session_secure": settings.SESSION_COOKIE_SECURE,
    "session_httponly": settings.SESSION_COOKIE_HTTPONLY,
    "plain": Client().get("/accounts/login/").status_code,
    "plain_health": Client().get("/healthz").status_code,
    "proxy_header": getattr(settings, "SECURE_PROXY_SSL_HEADER", None),
}))
"""


def _production_probe(tmp_path: Path, **overrides: str) -> dict[str, object]:
    env = production_env(
        tmp_path, CELERY_BROKER_URL="redis://127.0.0.1:6379/9", DJANGO_ALLOWED_HOSTS="testserver", **overrides
    )
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=project_env(DJANGO_SETTINGS_MODULE="cpv.settings", **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_production_sends_hsts_and_redirects_plain_http(tmp_path: Path) -> None:
    probe = _production_probe(tmp_path)

    assert probe["status"] == 200
    assert probe["hsts"] == "max-age=31536000; includeSubDomains; preload"
    assert probe["plain"] == 301
    assert probe["plain_health"] == 200  # a container's probe over plain HTTP still works


def test_production_cookies_are_host_only_secure_and_http_only(tmp_path: Path) -> None:
    probe = _production_probe(tmp_path)

    cookies = probe["cookies"]
    assert isinstance(cookies, dict)
    assert set(cookies) == {"__Host-csrftoken"}
    csrf = cookies["__Host-csrftoken"]
    assert csrf["secure"] is True and csrf["httponly"] is True and csrf["path"] == "/" and not csrf["domain"]
    assert csrf["samesite"] == "Lax"
    assert probe["session_cookie"] == "__Host-sessionid"
    assert probe["session_secure"] is True and probe["session_httponly"] is True
    assert probe["session_age"] == 8 * 3600 and probe["expire_at_close"] is True


def test_proxy_headers_are_trusted_only_when_configured(tmp_path: Path) -> None:
    assert _production_probe(tmp_path)["proxy_header"] is None
    assert _production_probe(tmp_path, CPV_TRUST_PROXY="true")["proxy_header"] == ["HTTP_X_FORWARDED_PROTO", "https"]


def test_a_partner_page_is_not_cached_by_the_browser(cpv_sim, client) -> None:  # type: ignore[no-untyped-def]
    partner = Partner.objects.create(name="Cache", contact_email="c@example.com")

    response = client.get(f"/consent/i/{invitation_token(partner=partner, purpose='invite')}/")

    assert "no-store" in response["Cache-Control"]
