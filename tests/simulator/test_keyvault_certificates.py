"""The simulated Key Vault's certificate import: the addressable secret of the same name holds the private key, as PEM
text or as PKCS#12 in base64, with its content type."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from tests.app_certificates import BEGIN_CERTIFICATE, app_certificate
from tests.simulator.helpers import vault_client
from tests.simulator.test_keyvault import _session


def _import(sim, session: requests.Session, name: str, value: bytes, policy: dict | None = None) -> requests.Response:  # type: ignore[no-untyped-def,type-arg]
    body: dict = {"value": base64.b64encode(value).decode()}  # type: ignore[type-arg]
    if policy is not None:
        body["policy"] = policy
    return session.post(f"{sim.vault_url}certificates/{name}/import?api-version=7.5", json=body, timeout=10)


def test_a_pem_import_makes_the_addressable_secret_with_the_key(sim, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path, _ = app_certificate(tmp_path, "pem")
    pem = Path(path).read_bytes()
    response = _import(sim, _session(sim), "app-pem", pem, {"secret_props": {"contentType": "application/x-pem-file"}})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["sid"].startswith(f"{sim.vault_url}secrets/app-pem/")
    assert body["policy"]["secret_props"]["contentType"] == "application/x-pem-file"
    secret = vault_client(sim).get_secret("app-pem")
    assert secret.properties.content_type == "application/x-pem-file"
    assert secret.value == pem.decode()
    assert secret.properties.expires_on == x509.load_pem_x509_certificate(pem).not_valid_after_utc


def test_a_pfx_import_is_pkcs12_by_default_and_served_in_base64(sim, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path, _ = app_certificate(tmp_path, "pfx")
    pem = Path(path).read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    pfx = pkcs12.serialize_key_and_certificates(
        b"pfx",
        key,  # type: ignore[arg-type]
        x509.load_pem_x509_certificate(pem),
        None,
        serialization.NoEncryption(),
    )

    assert _import(sim, _session(sim), "app-pfx", pfx).status_code == 200

    secret = vault_client(sim).get_secret("app-pfx")
    assert secret.properties.content_type == "application/x-pkcs12"
    assert base64.b64decode(secret.value or "") == pfx


@pytest.mark.parametrize(
    ("what", "content_type", "message"),
    [
        ("certificate only", "application/x-pem-file", "must contain the private key"),
        ("not base64", "application/x-pem-file", "not valid base64"),
        ("pem as pfx", "application/x-pkcs12", "could not be read"),
    ],
)
def test_an_import_without_a_usable_private_key_is_400(  # type: ignore[no-untyped-def]
    sim, tmp_path, what: str, content_type: str, message: str
) -> None:
    path, _ = app_certificate(tmp_path, "bad")
    pem = Path(path).read_bytes()
    value = {"certificate only": pem[pem.index(BEGIN_CERTIFICATE.encode()) :], "pem as pfx": pem}.get(what, b"")
    session = _session(sim)
    if what == "not base64":
        response = session.post(
            f"{sim.vault_url}certificates/bad/import?api-version=7.5",
            json={"value": "!!", "policy": {"secret_props": {"contentType": content_type}}},
            timeout=10,
        )
    else:
        response = _import(sim, session, "bad", value, {"secret_props": {"contentType": content_type}})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadParameter"
    assert message in response.json()["error"]["message"]
    assert "bad" not in sim.control.secrets_state()


def test_an_import_under_a_plain_secrets_name_is_a_conflict(sim, tmp_path) -> None:  # type: ignore[no-untyped-def]
    vault_client(sim).set_secret("taken", "not a certificate")
    path, _ = app_certificate(tmp_path, "pem")

    response = _import(sim, _session(sim), "taken", Path(path).read_bytes(),
                       {"secret_props": {"contentType": "application/x-pem-file"}})  # fmt: skip

    assert response.status_code == 409 and response.json()["error"]["code"] == "Conflict"
    assert vault_client(sim).get_secret("taken").value == "not a certificate"
