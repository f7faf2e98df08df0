"""Certificates for the vendor app's credentials in tests: self-signed, with chosen dates, written as the PEM file
CPV_CLIENT_CERTIFICATE names (private key, then certificate)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from partners.app_rotation import certificate_generate
from simulator.world import AppRegistration, ClientCertificate

BEGIN_CERTIFICATE = "-----BEGIN CERTIFICATE-----"


def app_certificate(
    directory: Path, name: str, *, not_after_days: float = 365, not_before_days: float = -1
) -> tuple[str, ClientCertificate]:
    """A new key and self-signed certificate valid from `not_before_days` to `not_after_days` from now: the PEM
    file's path, and the certificate as the simulator's app registration holds it."""
    now = datetime.now(UTC)
    path = directory / f"{name}.pem"
    certificate_generate(
        path,
        common_name=name,
        not_after=now + timedelta(days=not_after_days),
        not_before=now + timedelta(days=not_before_days),
    )
    pem = path.read_text()
    split = pem.index(BEGIN_CERTIFICATE)
    return str(path), ClientCertificate(certificate_pem=pem[split:], private_key_pem=pem[:split])


def register(app: AppRegistration, certificate: ClientCertificate) -> None:
    """Upload the certificate to the simulated app registration (the live world: the next reset undoes it)."""
    app.certificates.append(certificate)
