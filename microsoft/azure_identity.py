"""The Azure identity this process holds for Key Vault, from azure-identity's variables (a secret, a certificate,
workload identity, else managed identity), and whether a vault and an authority are Microsoft's own. The token vault's
backend and the app certificates kept in Key Vault both sign in with it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cpv import clouds
from microsoft.errors import MicrosoftError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

logger = logging.getLogger(__name__)


class AzureCredentialIncomplete(MicrosoftError):
    """azure-identity's variables choose a credential but lack one of its variables."""


MICROSOFT_AUTHORITY_HOSTS = frozenset(urlsplit(cloud.authority_host).hostname or "" for cloud in clouds.CLOUDS.values())


def url_host(url: str) -> str:
    if "://" not in url:
        url = "https://" + url
    return (urlsplit(url).hostname or "").lower()


def is_microsoft_vault(*, vault_url: str, cloud: clouds.Cloud, authority: str) -> bool:
    """Whether vault and authority are Microsoft's own: only then are discovery and the challenge check on."""
    if not cloud.is_microsoft:
        return False
    if not url_host(vault_url).endswith(cloud.vault_dns_suffix):
        logger.warning(
            "The vault host %s is not under %s, the Key Vault suffix of cloud %s: treating it as a "
            "non-Microsoft vault (no challenge resource check)",
            url_host(vault_url),
            cloud.vault_dns_suffix,
            cloud.name,
        )
        return False
    return url_host(authority) in MICROSOFT_AUTHORITY_HOSTS


def build_credential(*, environ: Mapping[str, str], authority: str, microsoft: bool) -> TokenCredential:
    """The credential azure-identity's variables describe: a secret, a certificate, workload identity, else managed
    identity. Raises AzureCredentialIncomplete when the choice lacks a variable."""
    from azure.identity import (
        CertificateCredential,
        ClientSecretCredential,
        ManagedIdentityCredential,
        WorkloadIdentityCredential,
    )

    tenant_id = environ.get("AZURE_TENANT_ID", "")
    client_id = environ.get("AZURE_CLIENT_ID", "")
    options: dict[str, Any] = {"authority": authority}
    if not microsoft:
        # Instance discovery asks login.microsoftonline.com about the authority: wrong for other hosts.
        options["disable_instance_discovery"] = True

    def need(*names: str) -> None:
        missing = [n for n in names if not environ.get(n)]
        if missing:
            raise AzureCredentialIncomplete(f"credential needs {', '.join(missing)}")

    try:
        if environ.get("AZURE_CLIENT_SECRET"):
            need("AZURE_TENANT_ID", "AZURE_CLIENT_ID")
            logger.info("Azure credential: client secret for client %s", client_id)
            return ClientSecretCredential(tenant_id, client_id, environ["AZURE_CLIENT_SECRET"], **options)
        if environ.get("AZURE_CLIENT_CERTIFICATE_PATH"):
            need("AZURE_TENANT_ID", "AZURE_CLIENT_ID")
            logger.info("Azure credential: certificate for client %s", client_id)
            return CertificateCredential(
                tenant_id,
                client_id,
                environ["AZURE_CLIENT_CERTIFICATE_PATH"],
                password=environ.get("AZURE_CLIENT_CERTIFICATE_PASSWORD") or None,
                send_certificate_chain=environ.get("AZURE_CLIENT_SEND_CERTIFICATE_CHAIN", "").lower() in {"1", "true"},
                **options,
            )
        if environ.get("AZURE_FEDERATED_TOKEN_FILE"):
            need("AZURE_TENANT_ID", "AZURE_CLIENT_ID")
            logger.info("Azure credential: workload identity for client %s", client_id)
            return WorkloadIdentityCredential(
                tenant_id=tenant_id,
                client_id=client_id,
                token_file_path=environ["AZURE_FEDERATED_TOKEN_FILE"],
                **options,
            )
    except (ValueError, OSError) as exc:
        raise AzureCredentialIncomplete(f"credential could not be built: {exc.__class__.__name__}") from None
    logger.info("Azure credential: managed identity%s", f" (client {client_id})" if client_id else "")
    return ManagedIdentityCredential(client_id=client_id or None)
