"""A throwaway certificate authority and a loopback server certificate, made at each start (kept across starts by a
simulator that keeps its state)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

logger = logging.getLogger(__name__)

BUNDLE_MARKER = "# --- simulator test CA (added by the simulator) ---"


@dataclass
class TlsMaterial:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    def server_context(self, state_dir: Path) -> ssl.SSLContext:
        cert_file = state_dir / "server.pem"
        key_file = state_dir / "server-key.pem"
        cert_file.write_bytes(self.cert_pem + self.ca_pem)
        key_file.write_bytes(self.key_pem)
        os.chmod(key_file, 0o600)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(cert_file), str(key_file))
        return context


def make_tls_material() -> TlsMaterial:
    """A new CA (valid a few days) and a certificate for 127.0.0.1, ::1 and localhost signed by it."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"CPV simulator test CA {now:%Y%m%d%H%M%S}")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=29))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return TlsMaterial(
        ca_pem=ca_cert.public_bytes(serialization.Encoding.PEM),
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


def kept_tls_material(state_dir: Path, *, at_least: dt.timedelta = dt.timedelta(days=2)) -> TlsMaterial:
    """The certificate and CA an earlier start wrote in `state_dir` while still valid for `at_least`, else new ones:
    a browser told once to trust the CA (or to pass its warning) is not asked again after a restart."""
    try:
        ca_pem = (state_dir / "ca.pem").read_bytes()
        chain = (state_dir / "server.pem").read_bytes()
        key_pem = (state_dir / "server-key.pem").read_bytes()
        cert = x509.load_pem_x509_certificate(chain)
        ca = x509.load_pem_x509_certificate(ca_pem)
    except (OSError, ValueError):
        return make_tls_material()
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    deadline = dt.datetime.now(dt.UTC) + at_least
    if cert.issuer != ca.subject or min(cert.not_valid_after_utc, ca.not_valid_after_utc) < deadline:
        return make_tls_material()
    return TlsMaterial(ca_pem=ca_pem, cert_pem=cert_pem, key_pem=key_pem)


def system_ca_text() -> str:
    """The CAs this machine already trusts, without any simulator CA added by an earlier run."""
    candidates = [os.environ.get("REQUESTS_CA_BUNDLE"), os.environ.get("SSL_CERT_FILE")]
    candidates.append(ssl.get_default_verify_paths().cafile)
    try:
        import certifi

        candidates.append(certifi.where())
    except ImportError:  # pragma: no cover - certifi comes with requests
        pass
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            text = Path(candidate).read_text(encoding="utf-8", errors="replace")
            return text.split(BUNDLE_MARKER, 1)[0].rstrip() + "\n"
    return ""


def write_ca_files(material: TlsMaterial, state_dir: Path) -> tuple[Path, Path]:
    """Write `ca.pem` and `ca-bundle.pem` (system CAs + the simulator's CA); return both paths."""
    state_dir.mkdir(parents=True, exist_ok=True)
    ca_path = state_dir / "ca.pem"
    ca_path.write_bytes(material.ca_pem)
    bundle_path = state_dir / "ca-bundle.pem"
    bundle_path.write_text(system_ca_text() + BUNDLE_MARKER + "\n" + material.ca_pem.decode(), encoding="utf-8")
    return ca_path, bundle_path
