"""The Azure backend against the simulator's Key Vault: retries, typed errors, tags, credentials."""

from __future__ import annotations

import socket
import uuid
from typing import Any

import pytest

from cpv import clouds
from tokens.vault import (
    SecretNotFound,
    Vault,
    VaultForbidden,
    VaultMisconfigured,
    VaultThrottled,
    VaultTransient,
    build_vault,
    get_vault,
    secret_name_for,
    secret_tags,
)
from tokens.vault.azure import AzureVault, build_credential, is_microsoft_vault

pytestmark = pytest.mark.django_db

FORBIDDEN = {
    "error": {
        "code": "Forbidden",
        "message": "The user, group or application does not have secrets set permission on key vault 'sim'.",
        "innererror": {"code": "ForbiddenByPolicy"},
    }
}
THROTTLED = {"error": {"code": "Throttled", "message": "Request was not processed because too many requests."}}
BROKEN = {"error": {"code": "InternalServerError", "message": "Something went wrong."}}


def vault_requests(sim: Any, method: str) -> list[dict[str, Any]]:
    return [e for e in sim.control.log(service="vault", method=method) if e["path"].startswith("/secrets/")]


@pytest.fixture
def warm(azure_vault: Vault, sim: Any, sleeps: list[float]) -> Vault:
    """A vault whose client has met the 401 challenge and holds a token, with an empty request log."""
    azure_vault.health()
    sim.control.clear_log()
    sleeps.clear()
    return azure_vault


def test_a_429_that_clears_within_the_bound_succeeds_after_backing_off(
    warm: Vault, sim: Any, sleeps: list[float]
) -> None:
    sim.control.inject_fault("vault", method="PUT", path=r"^/secrets/", status=429, body=THROTTLED, times=2)

    written = warm.write(name=secret_name_for(uuid.uuid4()), value="after-the-throttle")

    puts = vault_requests(sim, "PUT")
    assert [e["status"] for e in puts] == [429, 429, 200]
    assert sleeps == [1.0, 2.0]
    assert warm.read(name=written.name).value.reveal() == "after-the-throttle"


def test_retry_after_is_honoured_when_it_is_longer_than_the_backoff(warm: Vault, sim: Any, sleeps: list[float]) -> None:
    sim.control.inject_fault(
        "vault",
        method="PUT",
        path=r"^/secrets/",
        status=429,
        body=THROTTLED,
        headers={"Retry-After": "3"},
        times=3,
    )

    warm.write(name=secret_name_for(uuid.uuid4()), value="patient")

    assert sleeps == [3.0, 3.0, 4.0]
    assert [e["status"] for e in vault_requests(sim, "PUT")] == [429, 429, 429, 200]


def test_a_429_that_outlasts_the_bound_is_vault_throttled(warm: Vault, sim: Any, sleeps: list[float]) -> None:
    sim.control.inject_fault("vault", method="GET", path=r"^/secrets/", status=429, body=THROTTLED, times=None)

    with pytest.raises(VaultThrottled) as caught:
        warm.read(name=secret_name_for(uuid.uuid4()))

    assert sleeps == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert [e["status"] for e in vault_requests(sim, "GET")] == [429] * 6
    assert caught.value.retry_after == 16.0
    assert caught.value.transient


def test_a_retry_after_beyond_the_bound_is_not_waited_out(warm: Vault, sim: Any, sleeps: list[float]) -> None:
    sim.control.inject_fault(
        "vault", method="GET", path=r"^/secrets/", status=429, body=THROTTLED, headers={"Retry-After": "120"}
    )

    with pytest.raises(VaultThrottled) as caught:
        warm.read(name=secret_name_for(uuid.uuid4()))

    assert sleeps == []
    assert caught.value.retry_after == 120.0
    assert len(vault_requests(sim, "GET")) == 1


def test_a_500_that_clears_is_retried(warm: Vault, sim: Any, sleeps: list[float]) -> None:
    name = secret_name_for(uuid.uuid4())
    warm.write(name=name, value="survives-a-500")
    sim.control.clear_log()
    sim.control.inject_fault("vault", method="GET", path=rf"^/secrets/{name}/$", status=500, body=BROKEN, times=2)

    assert warm.read(name=name).value.reveal() == "survives-a-500"

    assert [e["status"] for e in vault_requests(sim, "GET")] == [500, 500, 200]
    assert sleeps == [1.0, 2.0]


def test_a_500_that_persists_is_vault_transient(warm: Vault, sim: Any, sleeps: list[float]) -> None:
    sim.control.inject_fault("vault", method="PUT", path=r"^/secrets/", status=503, body=BROKEN, times=None)

    with pytest.raises(VaultTransient) as caught:
        warm.write(name=secret_name_for(uuid.uuid4()), value="never-stored")

    assert sleeps == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert [e["status"] for e in vault_requests(sim, "PUT")] == [503] * 6
    assert "503" in str(caught.value)


def test_a_403_is_vault_forbidden_at_once(warm: Vault, sim: Any, sleeps: list[float]) -> None:
    sim.control.inject_fault("vault", method="PUT", path=r"^/secrets/", status=403, body=FORBIDDEN)

    with pytest.raises(VaultForbidden) as caught:
        warm.write(name=secret_name_for(uuid.uuid4()), value="not-allowed")

    assert sleeps == []
    assert len(vault_requests(sim, "PUT")) == 1
    assert "Forbidden" in str(caught.value)
    assert not caught.value.transient


def test_health_makes_one_attempt_and_reports_a_failure(warm: Vault, sim: Any, sleeps: list[float]) -> None:
    sim.control.inject_fault("vault", method="GET", status=500, body=BROKEN)
    with pytest.raises(VaultTransient):
        warm.health()
    assert sleeps == []
    sim.control.inject_fault("vault", method="GET", status=403, body=FORBIDDEN)
    with pytest.raises(VaultForbidden):
        warm.health()
    warm.health()


def test_an_unreachable_vault_is_transient_after_the_bounded_retries(azure_settings: Any, sleeps: list[float]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    azure_settings.VAULT_URL = f"https://127.0.0.1:{port}/"
    vault = build_vault(sleep=sleeps.append, connection_timeout=1)

    with pytest.raises(VaultTransient):
        vault.read(name="nowhere")

    assert sleeps == [1.0, 2.0, 4.0, 8.0, 16.0]


def test_a_wrong_client_secret_is_misconfiguration(azure_settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "not-the-right-secret")
    vault = get_vault()
    with pytest.raises(VaultMisconfigured) as caught:
        vault.health()
    assert "not-the-right-secret" not in str(caught.value)


def test_each_secret_carries_its_content_type_and_tags(azure_vault: Vault, sim: Any) -> None:
    code, flow = uuid.uuid4(), uuid.uuid4()
    name = secret_name_for(code)
    written = azure_vault.write(
        name=name,
        value="tagged-value",
        tags=secret_tags(partner_code=code, cloud="usgov", consent_flow_id=flow),
    )

    stored = sim.control.secrets_state()[name]["versions"]
    assert stored == [
        {
            "version": written.version,
            "enabled": True,
            "content_type": "application/vnd.cpv.refresh-token",
            "tags": {
                "partner": code.hex,
                "cloud": "usgov",
                "purpose": "refresh-token",
                "consent-flow": str(flow),
            },
            "created": stored[0]["created"],
            "updated": stored[0]["updated"],
        }
    ]


def test_the_client_does_not_retry_on_its_own(warm: Vault, sim: Any) -> None:
    # With the SDK's retries left on, one call would show several requests for a single attempt of ours.
    sim.control.inject_fault("vault", method="GET", path=r"^/secrets/", status=500, body=BROKEN, times=None)
    with pytest.raises(VaultTransient):
        warm.health()
    assert len(vault_requests(sim, "GET")) == 1


def test_deleting_waits_for_the_deleted_collection(warm: Vault, sim: Any) -> None:
    name = secret_name_for(uuid.uuid4())
    warm.write(name=name, value="to-delete")
    warm.delete(name=name)
    assert sim.control.secrets_state()[name]["deleted"] is True
    assert sim.control.log(service="vault", method="GET", path=rf"^/deletedsecrets/{name}$")
    warm.purge(name=name)
    assert name not in sim.control.secrets_state()
    with pytest.raises(SecretNotFound):
        warm.purge(name=name)


# --- choosing Microsoft's checks and the credential -------------------------------------------------------


def test_microsoft_checks_stay_on_only_for_microsofts_own_vault_and_authority() -> None:
    glob, usgov = clouds.CLOUDS[clouds.GLOBAL], clouds.CLOUDS[clouds.USGOV]
    custom = clouds.custom_cloud(
        authority_host="https://127.0.0.1:9",
        partner_center_url="https://127.0.0.1:9",
        graph_url="https://127.0.0.1:9",
    )
    assert is_microsoft_vault(
        vault_url="https://v.vault.azure.net/", cloud=glob, authority="https://login.microsoftonline.com"
    )
    assert is_microsoft_vault(
        vault_url="https://v.vault.usgovcloudapi.net/", cloud=usgov, authority="login.microsoftonline.us"
    )
    assert not is_microsoft_vault(
        vault_url="https://v.vault.azure.net/", cloud=usgov, authority="https://login.microsoftonline.us"
    )
    assert not is_microsoft_vault(
        vault_url="https://vault.example.com/", cloud=glob, authority="https://login.microsoftonline.com"
    )
    assert not is_microsoft_vault(vault_url="https://v.vault.azure.net/", cloud=custom, authority=custom.authority_host)
    assert not is_microsoft_vault(
        vault_url="https://v.vault.azure.net/", cloud=glob, authority="https://login.example.com"
    )


def test_the_simulator_vault_is_not_treated_as_microsofts(azure_vault: AzureVault) -> None:
    assert azure_vault.microsoft is False
    policy = azure_vault.client._client._config.authentication_policy
    assert policy._verify_challenge_resource is False


class Recorder:
    def __init__(self, kind: str, calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]]) -> None:
        self.kind, self.calls = kind, calls

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        self.calls.append((self.kind, args, kwargs))
        return self.kind


@pytest.fixture
def credential_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    import azure.identity

    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
    for kind in (
        "ClientSecretCredential",
        "CertificateCredential",
        "WorkloadIdentityCredential",
        "ManagedIdentityCredential",
    ):
        monkeypatch.setattr(azure.identity, kind, Recorder(kind, calls))
    return calls


BASE = {"AZURE_TENANT_ID": "tenant", "AZURE_CLIENT_ID": "client"}


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({**BASE, "AZURE_CLIENT_SECRET": "s"}, "ClientSecretCredential"),
        ({**BASE, "AZURE_CLIENT_CERTIFICATE_PATH": "/c.pem"}, "CertificateCredential"),
        ({**BASE, "AZURE_FEDERATED_TOKEN_FILE": "/t"}, "WorkloadIdentityCredential"),
        ({"AZURE_CLIENT_ID": "client"}, "ManagedIdentityCredential"),
        ({}, "ManagedIdentityCredential"),
    ],
)
def test_the_credential_follows_azure_identitys_variables(
    credential_calls: list[Any], environ: dict[str, str], expected: str
) -> None:
    assert build_credential(environ=environ, authority="https://login.microsoftonline.com", microsoft=True) == expected
    kind, _, kwargs = credential_calls[0]
    if kind != "ManagedIdentityCredential":
        assert kwargs["authority"] == "https://login.microsoftonline.com"
        assert "disable_instance_discovery" not in kwargs


def test_a_non_microsoft_authority_turns_instance_discovery_off(credential_calls: list[Any]) -> None:
    build_credential(environ={**BASE, "AZURE_CLIENT_SECRET": "s"}, authority="https://127.0.0.1:9", microsoft=False)
    assert credential_calls[0][2] == {"authority": "https://127.0.0.1:9", "disable_instance_discovery": True}


def test_a_credential_missing_a_variable_is_misconfiguration(credential_calls: list[Any]) -> None:
    with pytest.raises(VaultMisconfigured, match="AZURE_TENANT_ID"):
        build_credential(environ={"AZURE_CLIENT_SECRET": "s", "AZURE_CLIENT_ID": "c"}, authority="a", microsoft=True)


def test_vault_url_must_be_https() -> None:
    with pytest.raises(VaultMisconfigured):
        AzureVault(vault_url="http://v.vault.azure.net/", cloud=clouds.CLOUDS[clouds.GLOBAL], environ={})
    with pytest.raises(VaultMisconfigured):
        AzureVault(vault_url="https://v.vault.azure.net/path", cloud=clouds.CLOUDS[clouds.GLOBAL], environ={})


def test_threads_starting_together_build_one_client_and_credential(azure_settings: Any, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import threading
    import time

    import tokens.vault.azure as azure_backend

    built: list[object] = []
    real_build = azure_backend.build_credential

    def slow_build(**kwargs: Any) -> Any:
        built.append(kwargs)
        time.sleep(0.05)  # long enough for every thread to arrive while the first builds
        return real_build(**kwargs)

    monkeypatch.setattr(azure_backend, "build_credential", slow_build)
    vault = AzureVault(vault_url=azure_settings.VAULT_URL, cloud=azure_settings.CPV_CLOUD_CONFIG, creates_limiter=None)
    start = threading.Barrier(8)
    clients: list[object] = []

    def take() -> None:
        start.wait()
        clients.append(vault.client)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(built) == 1 and len(clients) == 8 and len({id(c) for c in clients}) == 1
    vault.close()
