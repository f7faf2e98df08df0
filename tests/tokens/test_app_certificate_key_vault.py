"""The app's certificate kept in Azure Key Vault: CPV_CLIENT_CERTIFICATE names it by URL, its private key is read at
use time as the certificate's addressable secret (PEM or PKCS#12), and it signs the app in through the simulator."""

from __future__ import annotations

import base64
import logging
from io import StringIO
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from django.core.management import call_command

from cpv.config import CERTIFICATE, AppCredential, Credential
from microsoft import app_credentials, identity
from tests.app_certificates import app_certificate, register
from tests.factories import active_partner
from tests.simulated import use_azure_identity
from tests.simulator.helpers import vault_client, vault_credential
from tokens.models import TokenEvent
from tokens.renewal import renew_one

pytestmark = pytest.mark.django_db

PEM = "application/x-pem-file"
PKCS12 = "application/x-pkcs12"


@pytest.fixture
def vault_identity(cpv_sim, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """This process's Azure identity for Key Vault: the simulator's vault principal, in azure-identity's variables."""
    use_azure_identity(cpv_sim, monkeypatch)
    return cpv_sim


def import_certificate(sim, name: str, pem_path: str, content_type: str) -> str:  # type: ignore[no-untyped-def]
    """Import the key and certificate into the simulator's Key Vault (POST /certificates/{name}/import, as
    `az keyvault certificate import` does) and return the certificate's URL."""
    pem = Path(pem_path).read_bytes()
    if content_type == PKCS12:
        key = serialization.load_pem_private_key(pem, password=None)
        certificate = x509.load_pem_x509_certificate(pem)
        raw = pkcs12.serialize_key_and_certificates(
            name.encode(),
            key,  # type: ignore[arg-type]
            certificate,
            None,
            serialization.NoEncryption(),
        )
    else:
        raw = pem
    token = vault_credential(sim).get_token("https://vault.azure.net/.default")
    response = requests.post(
        f"{sim.vault_url}certificates/{name}/import?api-version=7.5",
        json={"value": base64.b64encode(raw).decode(), "policy": {"secret_props": {"contentType": content_type}}},
        headers={"Authorization": f"Bearer {token.token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return f"{sim.vault_url}certificates/{name}"


def _app(sim, reference: str) -> AppCredential:  # type: ignore[no-untyped-def]
    return AppCredential(
        client_id=sim.env["CPV_CLIENT_ID"],
        credentials=(Credential(CERTIFICATE, certificate_path=reference, source="CPV_CLIENT_CERTIFICATE"),),
    )


def _key_body(pem_path: str) -> str:
    """A line from the middle of the private key's PEM: what must appear in no log and no row."""
    lines = Path(pem_path).read_text().split("-----BEGIN CERTIFICATE-----")[0].splitlines()
    return lines[len(lines) // 2]


@pytest.mark.parametrize("content_type", [PEM, PKCS12])
def test_a_certificate_in_key_vault_signs_the_app_in_and_its_key_reaches_no_log_or_row(  # type: ignore[no-untyped-def]
    vault_identity, settings, tmp_path, caplog, django_capture_on_commit_callbacks, content_type: str
) -> None:
    path, certificate = app_certificate(tmp_path, "in-key-vault")
    register(vault_identity.world.cpv_app, certificate)
    reference = import_certificate(vault_identity, "cpv-app", path, content_type)
    secret = _key_body(path)
    Path(path).unlink()  # nothing on disk: the key comes from the vault
    settings.CPV_APP = _app(vault_identity, reference)
    caplog.set_level(logging.DEBUG)

    partner = active_partner(vault_identity)
    with django_capture_on_commit_callbacks(execute=True):
        renew_one(partner_id=partner.pk, force=True)

    assert TokenEvent.objects.filter(partner=partner, kind__in=TokenEvent.MOVED).exists()
    assert list(tmp_path.iterdir()) == []
    assert secret not in caplog.text
    dump = StringIO()
    call_command("dumpdata", stdout=dump)
    assert secret not in dump.getvalue()


def test_the_certificate_is_read_again_only_after_its_cache_time(vault_identity, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path, _ = app_certificate(tmp_path, "cached")
    reference = import_certificate(vault_identity, "cpv-cached", path, PEM)
    facts = app_credentials.certificate_facts(reference)
    vault_client(vault_identity).begin_delete_secret("cpv-cached").result()

    assert app_credentials.certificate_facts(reference) == facts  # within the cache time: not read again
    app_credentials.key_vault_forget()
    with pytest.raises(app_credentials.CredentialUnreadable, match="is not in Key Vault: the vault has no secret"):
        app_credentials.certificate_facts(reference)


def test_a_missing_certificate_is_an_error_in_words(vault_identity) -> None:  # type: ignore[no-untyped-def]
    app = _app(vault_identity, f"{vault_identity.vault_url}certificates/never-imported")

    with pytest.raises(identity.IdentityMisconfigured) as caught:
        identity.client_credential(app)

    assert str(caught.value) == (
        f"The app certificate {vault_identity.vault_url}certificates/never-imported is not in Key Vault: the vault "
        "has no secret 'never-imported' (a certificate's private key is read as the secret of the same name)"
    )


def test_a_secret_that_is_not_a_certificates_is_an_error_in_words(vault_identity) -> None:  # type: ignore[no-untyped-def]
    vault_client(vault_identity).set_secret("plain", "not a key", content_type="text/plain")
    app = _app(vault_identity, f"{vault_identity.vault_url}certificates/plain")

    with pytest.raises(identity.IdentityMisconfigured, match="is a Key Vault secret of content type text/plain, not"):
        identity.client_credential(app)


def test_an_identity_the_vault_refuses_is_an_error_in_words(vault_identity, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path, _ = app_certificate(tmp_path, "refused")
    reference = import_certificate(vault_identity, "cpv-refused", path, PEM)
    vault_identity.world.vault_principals.clear()

    with pytest.raises(identity.IdentityMisconfigured) as caught:
        identity.client_credential(_app(vault_identity, reference))

    assert "Key Vault refused this process's identity (403" in str(caught.value)
    assert "it needs the secrets get permission on the vault" in str(caught.value)
