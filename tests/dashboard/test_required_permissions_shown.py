"""The app's required permissions are one table (microsoft/permissions.py), shown the same in the README's
registration steps, `.env.example` and the settings page."""

from __future__ import annotations

from pathlib import Path

import pytest

from microsoft.permissions import API_APP_IDS, REQUIRED_PERMISSIONS
from tests.factories import client_for

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_and_env_example_list_every_required_permission() -> None:
    readme = (ROOT / "README.md").read_text()
    env_example = (ROOT / ".env.example").read_text()
    for permission in REQUIRED_PERMISSIONS:
        assert f"`{permission.name}`" in readme
        assert permission.name in env_example
    for app_id in API_APP_IDS.values():
        assert app_id in readme


@pytest.mark.django_db
def test_the_settings_page_shows_the_table(admin_user) -> None:  # type: ignore[no-untyped-def]
    page = client_for(admin_user).get("/settings/").content.decode()

    assert 'id="required-permissions"' in page
    for permission in REQUIRED_PERMISSIONS:
        assert f"<code>{permission.name}</code>" in page
    assert page.count("<td>yes</td>") >= 2
