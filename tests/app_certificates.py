"""Certificates for the vendor app's credentials in tests: self-signed, with chosen dates, written as the PEM file
CPV_CLIENT_CERTIFICATE names (private key, then certificate)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from simulator.world import AppRegistration, ClientCertificate


def app_certificate(
    directory: Path, name: str, *, not_after_days: float = 365, not_before_days: float = -1
) -> tuple[str, ClientCertificate]:
    """A new key and self-signed certificate valid from `not_before_days` to `not_after_days` from now: the PEM
    file's path, and the certificate as the simulator's app registration holds it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + timedelta(days=not_before_days))
        .not_valid_after(now + timedelta(days=not_after_days))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    path = directory / f"{name}.pem"
    path.write_text(key_pem + cert_pem)
    return str(path), ClientCertificate(certificate_pem=cert_pem, private_key_pem=key_pem)


def register(app: AppRegistration, certificate: ClientCertificate) -> None:
    """Upload the certificate to the simulated app registration (the live world: the next reset undoes it)."""
    app.certificates.append(certificate)
