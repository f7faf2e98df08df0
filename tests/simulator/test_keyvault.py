from __future__ import annotations

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from tests.simulator.helpers import vault_client


def _token(sim) -> str:
    env = sim.env
    response = requests.post(
        f"{env['AZURE_AUTHORITY_HOST']}/{env['AZURE_TENANT_ID']}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": env["AZURE_CLIENT_ID"],
            "client_secret": env["AZURE_CLIENT_SECRET"],
            "scope": "https://vault.azure.net/.default",
        },
        timeout=10,
    )
    return response.json()["access_token"]


def _put(sim, session: requests.Session, name: str, value: str = "v", api_version: str = "7.5") -> requests.Response:
    return session.put(f"{sim.vault_url}secrets/{name}?api-version={api_version}", json={"value": value}, timeout=10)


def _session(sim) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {_token(sim)}"
    return session


def test_the_sdk_sets_gets_lists_disables_deletes_recovers_and_purges(sim):
    client = vault_client(sim)
    first = client.set_secret("partner-abc", "token-1", content_type="text/plain", tags={"partner": "abc"})
    second = client.set_secret("partner-abc", "token-2")
    assert first.properties.version != second.properties.version
    assert client.get_secret("partner-abc").value == "token-2"
    assert client.get_secret("partner-abc", first.properties.version).value == "token-1"
    assert client.get_secret("partner-abc", first.properties.version).properties.tags == {"partner": "abc"}
    versions = {p.version for p in client.list_properties_of_secret_versions("partner-abc")}
    assert versions == {first.properties.version, second.properties.version}
    assert [p.name for p in client.list_properties_of_secrets()] == ["partner-abc"]

    updated = client.update_secret_properties("partner-abc", first.properties.version, enabled=False)
    assert updated.enabled is False
    with pytest.raises(HttpResponseError) as disabled:
        client.get_secret("partner-abc", first.properties.version)
    assert disabled.value.status_code == 403
    state = sim.control.secrets_state()["partner-abc"]
    assert [v["enabled"] for v in state["versions"]] == [False, True]

    deleted = client.begin_delete_secret("partner-abc").result()
    assert deleted.recovery_id.endswith("/deletedsecrets/partner-abc")
    assert client.get_deleted_secret("partner-abc").name == "partner-abc"
    assert [d.name for d in client.list_deleted_secrets()] == ["partner-abc"]
    with pytest.raises(ResourceNotFoundError):
        client.get_secret("partner-abc")
    client.begin_recover_deleted_secret("partner-abc").result()
    assert client.get_secret("partner-abc").value == "token-2"

    client.begin_delete_secret("partner-abc").result()
    client.purge_deleted_secret("partner-abc")
    with pytest.raises(ResourceNotFoundError):
        client.get_deleted_secret("partner-abc")
    assert sim.control.secrets_state() == {}


def test_version_listing_pages(sim):
    session = _session(sim)
    for i in range(30):
        assert _put(sim, session, "many", str(i)).status_code == 200
    versions = list(vault_client(sim).list_properties_of_secret_versions("many"))
    assert len(versions) == 30 == len({v.version for v in versions})
    page = session.get(f"{sim.vault_url}secrets/many/versions?api-version=7.5", timeout=10).json()
    assert len(page["value"]) == 25 and page["nextLink"]


def test_the_first_request_without_a_token_gets_the_challenge(sim):
    response = requests.get(f"{sim.vault_url}secrets/x/?api-version=2026-04-01", timeout=10)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == (
        f'Bearer authorization="{sim.authority_host}/{sim.env["AZURE_TENANT_ID"]}", resource="https://vault.azure.net"'
    )
    assert response.json()["error"]["code"] == "Unauthorized"


def cpv_app_vault_token(sim) -> str:
    """An app-only token for Key Vault of the CPV app, which is in the vaults' tenant but in no access policy."""
    return str(
        requests.post(
            f"{sim.authority_host}/{sim.env['AZURE_TENANT_ID']}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": sim.env["CPV_CLIENT_ID"],
                "client_secret": sim.env["CPV_CLIENT_SECRET"],
                "scope": "https://vault.azure.net/.default",
            },
            timeout=10,
        ).json()["access_token"]
    )


def test_only_the_vault_principal_may_use_it(sim):
    from tests.simulator.helpers import admin, redeem

    # a partner user's refresh token redeems for the vault too (once they consented to it), but the vault is in
    # another tenant
    refresh = sim.control.issue_refresh_token(admin(sim).upn, scope="https://vault.azure.net/user_impersonation")
    response = redeem(sim, refresh, scope="https://vault.azure.net/.default")
    assert response.status_code == 200, response.text
    user_token = response.json()["access_token"]
    other_tenant = requests.get(
        f"{sim.vault_url}secrets?api-version=7.5",
        headers={"Authorization": f"Bearer {user_token}"},
        timeout=10,
    )
    assert other_tenant.status_code == 401
    # the CPV app itself, in the vault's tenant, is not in the vault's access policy
    cpv_token = cpv_app_vault_token(sim)
    refused = requests.get(
        f"{sim.vault_url}secrets?api-version=7.5",
        headers={"Authorization": f"Bearer {cpv_token}"},
        timeout=10,
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["innererror"]["code"] == "AccessDenied"
    pc_token = redeem(sim, sim.control.issue_refresh_token(admin(sim).upn)).json()["access_token"]
    wrong_audience = requests.get(
        f"{sim.vault_url}secrets?api-version=7.5", headers={"Authorization": f"Bearer {pc_token}"}, timeout=10
    )
    assert wrong_audience.status_code == 401
    assert "WWW-Authenticate" in wrong_audience.headers


def test_errors_have_key_vaults_shape(sim):
    session = _session(sim)
    bad_name = _put(sim, session, "not_valid!")
    assert bad_name.status_code == 400
    assert bad_name.json()["error"]["code"] == "BadParameter"
    assert _put(sim, session, "a" * 128).status_code == 400
    assert _put(sim, session, "a" * 127).status_code == 200

    missing = session.get(f"{sim.vault_url}secrets/nothing/?api-version=7.5", timeout=10)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "SecretNotFound"

    version = _put(sim, session, "off").json()["id"].rsplit("/", 1)[1]
    session.patch(
        f"{sim.vault_url}secrets/off/{version}?api-version=7.5",
        json={"attributes": {"enabled": False}},
        timeout=10,
    )
    disabled = session.get(f"{sim.vault_url}secrets/off/{version}?api-version=7.5", timeout=10)
    assert disabled.status_code == 403
    assert disabled.json() == {
        "error": {
            "code": "Forbidden",
            "message": "Operation get is not allowed on a disabled secret.",
            "innererror": {"code": "SecretDisabled"},
        }
    }

    session.delete(f"{sim.vault_url}secrets/off?api-version=7.5", timeout=10)
    conflict = _put(sim, session, "off")
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "Conflict"
    assert "deleted but recoverable state" in conflict.json()["error"]["message"]
    with pytest.raises(ResourceExistsError):
        vault_client(sim).set_secret("off", "again")

    assert session.get(f"{sim.vault_url}secrets?api-version=1999-01-01", timeout=10).status_code == 400
    assert session.get(f"{sim.vault_url}secrets", timeout=10).status_code == 400


@pytest.mark.parametrize("api_version", ["7.5", "7.6", "2025-07-01", "2026-04-01"])
def test_api_versions_the_sdk_sends_are_accepted(sim, api_version):
    assert _put(sim, _session(sim), "versioned", api_version=api_version).status_code == 200
    client = vault_client(sim, api_version=api_version) if api_version != "2026-04-01" else vault_client(sim)
    assert client.get_secret("versioned").value == "v"


def test_the_create_limit_answers_429_with_retry_after(sim):
    sim.control.set_vault_limits(True, creates=5, window=30)
    session = _session(sim)
    statuses = [_put(sim, session, f"s{i}").status_code for i in range(7)]
    assert statuses == [200] * 5 + [429] * 2
    throttled = sim.control.log(service="vault", status=429)
    assert int(throttled[0]["response_headers"]["Retry-After"]) >= 1
    body = session.put(f"{sim.vault_url}secrets/s9?api-version=7.5", json={"value": "v"}, timeout=10).json()
    assert body["error"]["code"] == "Throttled"
    # reads have their own budget
    assert session.get(f"{sim.vault_url}secrets/s0/?api-version=7.5", timeout=10).status_code == 200


def test_the_other_operations_limit(sim):
    sim.control.set_vault_limits(True, others=3, window=30)
    session = _session(sim)
    _put(sim, session, "read-me")
    statuses = [
        session.get(f"{sim.vault_url}secrets/read-me/?api-version=7.5", timeout=10).status_code for _ in range(5)
    ]
    assert statuses == [200, 200, 200, 429, 429]
    sim.control.set_vault_limits(False)
    assert session.get(f"{sim.vault_url}secrets/read-me/?api-version=7.5", timeout=10).status_code == 200


def test_the_501st_version_of_a_secret_is_refused(sim):
    sim.control.set_vault_limits(False)
    session = _session(sim)
    for i in range(500):
        assert _put(sim, session, "busy", str(i)).status_code == 200
    refused = _put(sim, session, "busy", "501")
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "BadParameter"
    assert refused.json()["error"]["innererror"]["code"] == "TooManyVersions"
    assert len(sim.control.secrets_state()["busy"]["versions"]) == 500


def test_the_vault_log_never_holds_secret_values(sim):
    client = vault_client(sim)
    client.set_secret("leak-check", "0.SIMCANARY-rt.value-that-must-not-be-logged")
    text = str(sim.control.log()) + str(sim.control.state())
    assert "value-that-must-not-be-logged" not in text
    assert not sim.control.find_leaks(text)


def test_secret_names_are_case_insensitive(sim):
    session = _session(sim)
    assert _put(sim, session, "Partner-Token", "first").status_code == 200
    assert _put(sim, session, "partner-token", "second").status_code == 200
    got = session.get(f"{sim.vault_url}secrets/PARTNER-TOKEN/?api-version=7.5", timeout=10)
    assert got.status_code == 200 and got.json()["value"] == "second"
    versions = session.get(f"{sim.vault_url}secrets/partner-TOKEN/versions?api-version=7.5", timeout=10)
    assert len(versions.json()["value"]) == 2
