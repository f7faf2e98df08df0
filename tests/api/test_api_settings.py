"""The token API's settings: the vendor's tenant (the staff tenant unless told), the audiences, the rate limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpv.config import ConfigError, load_config

TENANT = "AAAAAAAA-2222-3333-4444-555555555555"


def test_the_api_trusts_the_staff_tenant_unless_told_and_accepts_no_entra_token_without_an_audience(
    tmp_path: Path,
) -> None:
    embedded = load_config({}, base_dir=tmp_path)
    assert (embedded.api_tenant_id, embedded.api_audiences, embedded.api_rate_limit) == ("", (), 600)
    staff = load_config({"CPV_STAFF_TENANT_ID": TENANT}, base_dir=tmp_path)
    assert staff.api_tenant_id == TENANT.lower()
    own = load_config(
        {
            "CPV_STAFF_TENANT_ID": TENANT,
            "CPV_API_TENANT_ID": "11111111-2222-3333-4444-555555555555",
            "CPV_API_AUDIENCE": "api://cpv-token-api, 99999999-2222-3333-4444-555555555555",
            "CPV_API_RATE_LIMIT": "120",
        },
        base_dir=tmp_path,
    )
    assert own.api_tenant_id == "11111111-2222-3333-4444-555555555555"
    assert own.api_audiences == ("api://cpv-token-api", "99999999-2222-3333-4444-555555555555")
    assert own.api_rate_limit == 120


def test_bad_api_settings_are_refused_in_words(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({"CPV_API_TENANT_ID": "contoso.onmicrosoft.com", "CPV_API_RATE_LIMIT": "0"}, base_dir=tmp_path)
    assert any("CPV_API_TENANT_ID must be the vendor's tenant id" in p for p in caught.value.problems)
    assert any("CPV_API_RATE_LIMIT must be at least 1" in p for p in caught.value.problems)
