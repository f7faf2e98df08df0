"""Operator services over the vault: the end-to-end probe behind `vault_check`, and key rotation."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction

from cpv.logs import redact
from partners.services import audit_record
from tokens.vault import get_vault
from tokens.vault.base import Vault
from tokens.vault.errors import SecretDisabled, VaultError, VaultForbidden, VaultMisconfigured
from tokens.vault.local import LocalVault, RotationReport

logger = logging.getLogger(__name__)

PROBE_PREFIX = "cpv-vault-check-"
PROBE_CONTENT_TYPE = "application/vnd.cpv.vault-check"

OK = "OK"
FAILED = "FAILED"
SKIPPED = "SKIPPED"


@dataclass(frozen=True)
class CheckStep:
    step: str
    status: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status != FAILED


def _probe_value() -> str:
    return secrets.token_urlsafe(32)


def _reason(exc: BaseException) -> str:
    return f"{exc.__class__.__name__}: {redact(str(exc))[:300]}"


def vault_check(*, vault: Vault | None = None, purge: bool = True) -> list[CheckStep]:
    """Write, read, list, disable, delete and purge a random probe secret: a CheckStep per step, skipping the rest
    after a failure but the clean-up. Never raises a VaultError or returns the value."""
    vault = vault or get_vault()
    if getattr(vault, "write_only", False):
        return _write_only_check(vault)
    name = PROBE_PREFIX + secrets.token_hex(8)
    value = _probe_value()
    steps: list[CheckStep] = []
    version = ""
    written = deleted = False
    failed = False

    def run(step: str, action: Callable[[], str], *, cleanup: bool = False) -> bool:
        nonlocal failed
        if failed and not cleanup:
            steps.append(CheckStep(step, SKIPPED, "an earlier step failed"))
            return False
        try:
            detail = action()
        except VaultError as exc:
            steps.append(CheckStep(step, FAILED, _reason(exc)))
            failed = True
            return False
        steps.append(CheckStep(step, OK, detail))
        return True

    def health() -> str:
        vault.health()
        return f"{vault.backend} vault answers"

    def write() -> str:
        nonlocal version, written
        result = vault.write(name=name, value=value, tags={"purpose": "vault-check"}, content_type=PROBE_CONTENT_TYPE)
        version, written = result.version, True
        return f"{name} version {version}"

    def read() -> str:
        got = vault.read(name=name)
        if got.version != version or got.value.reveal() != value:
            raise VaultError("the probe read back is not the one written")
        got = vault.read(name=name, version=version)
        if got.value.reveal() != value:
            raise VaultError("the probe read back by version is not the one written")
        return "latest and by version match what was written"

    def versions() -> str:
        listed = vault.versions(name=name)
        if [(v.version, v.enabled) for v in listed] != [(version, True)]:
            raise VaultError(f"expected one enabled version, got {len(listed)}")
        return "1 enabled version"

    def disable() -> str:
        vault.disable(name=name, version=version)
        try:
            vault.read(name=name, version=version)
        except SecretDisabled:
            return "the disabled version can no longer be read"
        raise VaultError("the disabled version could still be read")

    def delete() -> str:
        nonlocal deleted
        vault.delete(name=name)
        deleted = True
        return "soft-deleted"

    def purge_probe() -> str:
        vault.purge(name=name)
        return "purged"

    run("health", health)
    run("write", write)
    run("read", read)
    run("versions", versions)
    run("disable", disable)
    if written:
        # Runs even after a failure: a probe left behind would count against nothing, but clutters the vault.
        run("delete", delete, cleanup=True)
    else:
        steps.append(CheckStep("delete", SKIPPED, "nothing was written"))
    if not purge:
        steps.append(CheckStep("purge", SKIPPED, "--no-purge: the probe stays soft-deleted"))
    elif deleted:
        run("purge", purge_probe, cleanup=True)
    else:
        steps.append(CheckStep("purge", SKIPPED, "nothing was deleted"))
    # One line for the log (the command prints each step itself; a log line per step printed them twice).
    failures = [step.step for step in steps if not step.ok]
    logger.log(
        logging.WARNING if failures else logging.INFO,
        "vault check: %s",
        f"failed at {', '.join(failures)}" if failures else f"{len(steps)} steps passed",
    )
    return steps


def _write_only_check(vault: Vault) -> list[CheckStep]:
    """The web tier's check: the vault answers as a vault that seals and opens nothing should (a Key Vault identity
    that may read fails it). Nothing is written: a probe it could not read back or delete would stay behind."""
    steps: list[CheckStep] = []
    try:
        vault.health()
    except VaultError as exc:
        steps.append(CheckStep("health", FAILED, _reason(exc)))
    else:
        steps.append(CheckStep("health", OK, f"{vault.backend} vault answers; this process seals and opens nothing"))
    reason = "this process may not open tokens (CPV_PROCESS_ROLE): run vault_check as a worker"
    steps.extend(
        CheckStep(step, SKIPPED, reason) for step in ("write", "read", "versions", "disable", "delete", "purge")
    )
    return steps


def vault_key_rotate(*, after_row: Callable[[RotationReport], None] | None = None) -> RotationReport:
    """Re-encrypt every local vault row under the newest key and audit it: the RotationReport.
    Raises VaultMisconfigured unless the vault is the local one with a key."""
    vault = get_vault()
    if not isinstance(vault, LocalVault):
        raise VaultMisconfigured(
            f"VAULT_BACKEND is {vault.backend}: only the local vault's keys are rotated here "
            "(Key Vault encrypts its own secrets)"
        )
    report = vault.rotate_keys(after_row=after_row)
    with transaction.atomic():
        audit_record(
            actor=None,
            action="vault.key_rotated",
            detail={
                "key_id": report.key_id,
                "rows": report.total,
                "rotated": report.rotated,
                "already_current": report.already_current,
                "failed": report.failed,
            },
        )
    return report


def vault_reseal(*, after_row: Callable[[RotationReport], None] | None = None) -> RotationReport:
    """Seal every local vault row to VAULT_PUBLIC_KEY (rows under VAULT_KEY, or under an older key pair), one row per
    transaction, each readable throughout. Idempotent and resumable: a sealed row is left, so a run that stopped
    anywhere is finished by running it again. Audited when it starts and when it ends (an interrupted run leaves its
    start without an end). Returns the RotationReport; raises VaultMisconfigured without a local vault and a public
    key, VaultForbidden in a process that may not open tokens."""
    vault = get_vault()
    if not isinstance(vault, LocalVault):
        raise VaultMisconfigured(
            f"VAULT_BACKEND is {vault.backend}: only the local vault's rows are sealed here "
            "(Key Vault keeps its own secrets; give the web tier an identity that may only set them)"
        )
    if not vault.seals:
        raise VaultMisconfigured("VAULT_PUBLIC_KEY is not set: there is no key to seal to")
    if vault.write_only:
        raise VaultForbidden("this process may not open tokens (CPV_PROCESS_ROLE): run vault_reseal as a worker")
    with transaction.atomic():
        audit_record(actor=None, action="vault.reseal_started", detail={"key_id": vault.newest_key_id})
    report = vault.rotate_keys(after_row=after_row)
    with transaction.atomic():
        audit_record(
            actor=None,
            action="vault.resealed",
            detail={
                "key_id": report.key_id,
                "rows": report.total,
                "resealed": report.rotated,
                "already_sealed": report.already_current,
                "failed": report.failed,
            },
        )
    return report
