"""Rotating the vendor app's certificate with no downtime: the new certificate added to the app registration with
Graph's addKey (a proof of possession signed by the current one: "An application does not need any specific
permission to roll its own keys"), probed, switched in (the configured file rewritten, the old one kept beside it),
and the old key removed with removeKey once the overlap window has passed. Each step is recorded in the
`AppKeyRotation` row and audited as it is done; a step that finds its work already done (a run cut off between the
work and the record) records it and goes on."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from cpv.clouds import Cloud
from cpv.config import CERTIFICATE, MANAGED_IDENTITY, AppCredential, Credential, key_vault_certificate
from microsoft import app_credentials, identity
from microsoft.errors import MicrosoftError
from microsoft.graph import GraphClient, GraphError
from partners.models import AppKeyRotation
from partners.services import Actor, PartnerError, audit_record

logger = logging.getLogger(__name__)

Step = AppKeyRotation.Step
DEFAULT_OVERLAP = timedelta(hours=24)
STEP_ACTIONS = {
    Step.KEY_ADDED: "app_key.added",
    Step.PROBED: "app_key.probed",
    Step.SWITCHED: "app_key.switched",
    Step.DONE: "app_key.old_removed",
}


class RotationError(PartnerError):
    """The rotation cannot start or go on; the message says why and what to do."""


@dataclass(frozen=True)
class RotationPlan:
    """What a rotation would do (a dry run): each step in words."""

    steps: list[str]


def _current_certificate(app: AppCredential) -> Credential:
    if app.credentials and app.credentials[0].kind == MANAGED_IDENTITY:
        raise RotationError(
            f"The app signs in with {app.credentials[0].label}, which has no key to roll: its tokens are the "
            "platform's and renew themselves. To rotate a certificate kept as a fallback, rotate it where it is kept "
            "(or list it alone in CPV_CLIENT_CERTIFICATE, without CPV_CLIENT_MANAGED_IDENTITY, for the rotation)"
        )
    certificate = next((c for c in app.credentials if c.kind == CERTIFICATE), None)
    if certificate is None or app.credentials[0] is not certificate:
        raise RotationError(
            "The rotation replaces the certificate the app signs in with: list it first in CPV_CLIENT_CERTIFICATE "
            "(addKey's proof of possession is signed with a certificate the app already holds)"
        )
    if key_vault_certificate(certificate.certificate_path) is not None:
        raise RotationError(
            f"The certificate the app signs in with is kept in Key Vault ({certificate.certificate_path}): renew it "
            "there and upload its new version to the app registration; this rotation writes files only"
        )
    return certificate


def certificate_generate(
    path: Path, *, common_name: str, not_after: datetime, not_before: datetime | None = None
) -> None:
    """A new RSA key and self-signed certificate valid from `not_before` (five minutes ago by default) to
    `not_after`, written owner-only to `path` (key, then certificate)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or datetime.now(UTC) - timedelta(minutes=5))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ) + certificate.public_bytes(serialization.Encoding.PEM)
    _write_private(path, pem)


def _write_private(path: Path, content: bytes) -> None:
    """Write `content` owner-only through a temporary file and a rename: a reader sees the old or the new file."""
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
    temporary.replace(path)


def app_key_rotation_start(
    *, actor: Actor, app: AppCredential, new_certificate_path: str, overlap: timedelta, dry_run: bool = False
) -> AppKeyRotation | RotationPlan:
    """Begin rotating the app's current certificate to the one in `new_certificate_path`: the row (audited), or with
    `dry_run` the plan in words (nothing written, nothing sent). Raises RotationError."""
    current = _current_certificate(app)
    try:
        old = app_credentials.certificate_facts(current.certificate_path)
        new = app_credentials.certificate_facts(new_certificate_path)
    except app_credentials.CredentialUnreadable as exc:
        raise RotationError(str(exc)) from None
    if new.thumbprint_sha256 == old.thumbprint_sha256:
        raise RotationError("The new certificate is the one in use: make a new one (--generate)")
    if new.not_after <= max(timezone.now(), old.not_after):
        raise RotationError(f"The new certificate ends on {new.not_after:%Y-%m-%d}, no later than the current one")
    if dry_run:
        return RotationPlan(
            steps=[
                f"add the certificate {new.thumbprint_sha256} (not after {new.not_after:%Y-%m-%d}) to the app "
                f"{app.client_id} with addKey, proved by the current one {old.thumbprint_sha256}",
                "ask Entra for a token with the new certificate",
                f"write it to {current.certificate_path} (the current one kept as {current.certificate_path}.previous)",
                f"after {overlap}, remove the old certificate from the registration with removeKey",
            ]
        )
    with transaction.atomic():
        if AppKeyRotation.objects.filter(client_id=app.client_id).exclude(step=Step.DONE).exists():
            raise RotationError("A rotation of this app's certificate is under way: continue it (--continue)")
        rotation = AppKeyRotation.objects.create(
            client_id=app.client_id,
            certificate_path=current.certificate_path,
            new_certificate_path=new_certificate_path,
            old_thumbprint=old.thumbprint_sha256,
            new_thumbprint=new.thumbprint_sha256,
            overlap=overlap,
            started_by=actor if isinstance(actor, User) and actor.is_authenticated else None,
        )
        audit_record(actor=actor, action="app_key.rotation_started", target=rotation, detail=_detail(rotation))
    return rotation


def _detail(rotation: AppKeyRotation, **more: Any) -> dict[str, Any]:
    return {"client_id": rotation.client_id, "old": rotation.old_thumbprint, "new": rotation.new_thumbprint, **more}


def app_key_rotation_continue(*, actor: Actor, rotation: AppKeyRotation, now: datetime | None = None) -> AppKeyRotation:
    """Run the rotation's remaining steps in order until it is done, or waits (the overlap window) or a step fails
    (`last_error` says why and what to do; run it again). Each step is recorded and audited in its own transaction:
    the row as it stands."""
    now = now or timezone.now()
    cloud: Cloud = settings.CPV_CLOUD_CONFIG
    app: AppCredential = settings.CPV_APP
    steps = {
        Step.STARTED: _add,
        Step.KEY_ADDED: _probe,
        Step.PROBED: _switch,
        Step.SWITCHED: _remove,
    }
    while rotation.step in steps:
        try:
            done = steps[Step(rotation.step)](rotation, app=app, cloud=cloud, now=now)
        except (MicrosoftError, RotationError, OSError) as exc:
            AppKeyRotation.objects.filter(pk=rotation.pk).update(last_error=str(exc)[:500])
            rotation.refresh_from_db()
            return rotation
        if done is None:
            return rotation
        _record(rotation, actor=actor, step=done[0], now=now, **done[1])
    return rotation


def _record(rotation: AppKeyRotation, *, actor: Actor, step: str, now: datetime, **fields: Any) -> None:
    with transaction.atomic():
        locked = AppKeyRotation.objects.select_for_update().get(pk=rotation.pk)
        for name, value in fields.items():
            setattr(locked, name, value)
        locked.step, locked.last_error = step, ""
        if step == Step.DONE:
            locked.finished_at = now
        locked.save()
        audit_record(actor=actor, action=STEP_ACTIONS[Step(step)], target=locked, detail=_detail(locked))
    rotation.refresh_from_db()


def _credential(path: str) -> Credential:
    return Credential(CERTIFICATE, certificate_path=path, source="the rotation")


def _graph(app: AppCredential, cloud: Cloud, path: str) -> GraphClient:
    token = identity.client_credentials_token(
        cloud=cloud, app=app, credential=_credential(path), resource=cloud.graph_resource
    )
    return GraphClient(base_url=cloud.graph_url, access_token=token)


def _sha1_of(path: str) -> str:
    der = app_credentials.certificate_der(path)
    return hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()


def _key_ids(registration: dict[str, Any]) -> dict[str, str]:
    """The registration's certificates: SHA-1 thumbprint (upper-case hex) -> keyId."""
    found = {}
    for key in registration.get("keyCredentials") or []:
        try:
            thumbprint = base64.b64decode(str(key.get("customKeyIdentifier") or "")).hex().upper()
        except ValueError:
            continue
        found[thumbprint] = str(key.get("keyId") or "")
    return found


def _add(rotation: AppKeyRotation, *, app: AppCredential, cloud: Cloud, now: datetime) -> Any:
    """addKey with a proof signed by the current certificate, unless the registration already holds the new one."""
    graph = _graph(app, cloud, rotation.certificate_path)
    try:
        registration = graph.application(app.client_id)
    except GraphError as exc:
        if exc.status in (401, 403):
            raise RotationError(
                "The rotation reads the app's registration to find the keys: assign Microsoft Graph's "
                "Application.Read.All app role to the app's service principal in your own tenant"
            ) from None
        raise
    if registration is None:
        raise RotationError(f"Microsoft Graph finds no application {app.client_id} in tenant {app.tenant_id}")
    object_id = str(registration["id"])
    keys = _key_ids(registration)
    old_key_id = keys.get(_sha1_of(rotation.certificate_path), "")
    new_key_id = keys.get(_sha1_of(rotation.new_certificate_path), "")
    if not new_key_id:
        proof = app_credentials.proof_of_possession(
            certificate_path=rotation.certificate_path, application_object_id=object_id
        )
        try:
            added = graph.application_key_add(
                object_id, certificate_der=app_credentials.certificate_der(rotation.new_certificate_path), proof=proof
            )
        except GraphError as exc:
            raise _proof_refused(exc, rotation.certificate_path) from None
        new_key_id = str(added.get("keyId") or "")
    return Step.KEY_ADDED, {"application_object_id": object_id, "old_key_id": old_key_id, "new_key_id": new_key_id}


# Graph's answer to a proof of possession it does not accept (application-rollkey-prooftoken.md).
PROOF_REFUSED = "Authentication_MissingOrMalformed"


def _proof_refused(exc: GraphError, signer: str) -> Exception:
    """Graph's refusal of the proof of possession in words, or the GraphError itself for any other failure."""
    if exc.code != PROOF_REFUSED:
        return exc
    return RotationError(
        f"Microsoft Graph refused the proof of possession signed with {signer} ({PROOF_REFUSED}): the certificate "
        "must be one the app registration holds and valid now, and this computer's clock right; run the rotation "
        "again"
    )


def _probe(rotation: AppKeyRotation, *, app: AppCredential, cloud: Cloud, now: datetime) -> Any:
    """A client-credentials token with the new certificate; Entra may take a few minutes to accept a new key."""
    try:
        identity.client_credentials_token(
            cloud=cloud, app=app, credential=_credential(rotation.new_certificate_path), resource=cloud.graph_resource
        )
    except identity.InvalidClient as exc:
        raise RotationError(f"Entra does not accept the new certificate yet ({exc}): run the rotation again") from None
    return Step.PROBED, {}


def _switch(rotation: AppKeyRotation, *, app: AppCredential, cloud: Cloud, now: datetime) -> Any:
    """Write the new certificate over the configured file (the old one kept as `<file>.previous`); every process
    reads the file at its next sign-in."""
    configured = Path(rotation.certificate_path)
    facts = app_credentials.certificate_facts(str(configured))
    if facts.thumbprint_sha256 != rotation.new_thumbprint:
        _write_private(configured.with_name(configured.name + ".previous"), configured.read_bytes())
        _write_private(configured, Path(rotation.new_certificate_path).read_bytes())
    return Step.SWITCHED, {"overlap_until": now + rotation.overlap}


def _remove(rotation: AppKeyRotation, *, app: AppCredential, cloud: Cloud, now: datetime) -> Any:
    """After the overlap window, removeKey the old certificate with a proof signed by the new one (a key already
    gone is taken as removed)."""
    if rotation.overlap_until is not None and now < rotation.overlap_until:
        return None
    if rotation.old_key_id:
        graph = _graph(app, cloud, rotation.certificate_path)
        proof = app_credentials.proof_of_possession(
            certificate_path=rotation.certificate_path, application_object_id=rotation.application_object_id
        )
        try:
            graph.application_key_remove(rotation.application_object_id, key_id=rotation.old_key_id, proof=proof)
        except GraphError as exc:
            if exc.status != 404:
                raise _proof_refused(exc, rotation.certificate_path) from None
    return Step.DONE, {}


def app_key_rotation_run(
    *,
    actor: Actor,
    app: AppCredential,
    new_certificate_path: str = "",
    generate_days: int = 0,
    overlap: timedelta = DEFAULT_OVERLAP,
    dry_run: bool = False,
) -> AppKeyRotation | RotationPlan:
    """What the command and the staff action do: continue the app's unfinished rotation, or start one with the
    certificate in `new_certificate_path` (or, with `generate_days`, a new self-signed one beside the current, named
    `<file>.new`) and run it as far as it goes. With `dry_run`, the plan in words. Raises RotationError."""
    rotation = rotation_open(app.client_id)
    if rotation is not None:
        if dry_run:
            return RotationPlan(steps=[f"continue the rotation under way, now at: {rotation.get_step_display()}"])
        return app_key_rotation_continue(actor=actor, rotation=rotation)
    path = new_certificate_path
    if generate_days:
        current = Path(_current_certificate(app).certificate_path)
        path = str(current.with_name(current.name + ".new"))
        if dry_run:
            return RotationPlan(steps=[f"generate a new key and certificate at {path}, valid {generate_days} days"])
        ends = datetime.now(UTC) + timedelta(days=generate_days)
        certificate_generate(Path(path), common_name=f"CPV app {app.client_id}", not_after=ends)
    if not path:
        raise RotationError("No rotation is under way: give the new certificate, or generate one, to start one")
    started = app_key_rotation_start(actor=actor, app=app, new_certificate_path=path, overlap=overlap, dry_run=dry_run)
    if isinstance(started, RotationPlan):
        return started
    return app_key_rotation_continue(actor=actor, rotation=started)


def rotation_open(client_id: str) -> AppKeyRotation | None:
    """The app's unfinished rotation, if any."""
    return AppKeyRotation.objects.filter(client_id=client_id).exclude(step=Step.DONE).first()
