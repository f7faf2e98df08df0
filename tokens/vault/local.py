"""The embedded vault: secret versions in the project's database, with Key Vault's visible behaviour (versions,
disabling, soft delete, name rules, version budget) so code runs unchanged on Azure.

A row is either sealed to a public key (tokens/vault/seal.py: the web tier holds only the public key, so it can store
a token and never read one) or, as before sealing, AES-GCM under a symmetric key of VAULT_KEY. Its `key_id` says
which: a sealing key's id starts with `s`. With a public key configured every write is sealed; `reseal` moves the
older rows over."""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.db import DatabaseError, transaction
from django.utils import timezone

from tokens.vault.base import (
    MAX_VERSIONS,
    REFRESH_TOKEN_CONTENT_TYPE,
    Secret,
    SecretValue,
    SecretVersion,
    Vault,
    WriteResult,
    validate_policy,
    validate_secret_name,
    validate_tags,
    validate_value,
    validate_version,
)
from tokens.vault.errors import (
    SecretDeletedConflict,
    SecretDisabled,
    SecretNotFound,
    VaultError,
    VaultForbidden,
    VaultIntegrityError,
    VaultMisconfigured,
    VaultTransient,
    VersionBudgetExceeded,
)
from tokens.vault.models import VaultSecretVersion
from tokens.vault.seal import SealError, SealRing, is_seal_key_id, open_sealed, seal

logger = logging.getLogger(__name__)

KEY_BYTES = 32
NONCE_BYTES = 12
_AAD_PREFIX = b"cpv-vault/v1"


def key_id_for(key: bytes) -> str:
    """A key's public name: the first 8 bytes of its SHA-256, in hex. Safe to print and to store."""
    return hashlib.sha256(key).hexdigest()[:16]


def _aad(name: str, version: str) -> bytes:
    # Binds a ciphertext to its row's identity: moved under another name or version, it fails to decrypt.
    return b"\x00".join((_AAD_PREFIX, name.encode(), version.encode()))


class KeyRing:
    """The keys from VAULT_KEYS, newest first. Its repr names key ids only."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        for index, key in enumerate(keys):
            if not isinstance(key, bytes) or len(key) != KEY_BYTES:
                raise VaultMisconfigured(f"VAULT_KEY: key {index + 1} is not {KEY_BYTES} bytes")
        self._keys = {key_id_for(key): key for key in keys}
        self.ids = [key_id_for(key) for key in keys]

    def __bool__(self) -> bool:
        return bool(self.ids)

    def __repr__(self) -> str:
        return f"KeyRing(ids={self.ids!r})"

    @property
    def newest_id(self) -> str:
        if not self.ids:
            raise VaultMisconfigured(
                "VAULT_KEY is not set: the local vault needs at least one 32-byte key (URL-safe base64)"
            )
        return self.ids[0]

    def cipher(self, key_id: str) -> AESGCM | None:
        key = self._keys.get(key_id)
        return AESGCM(key) if key is not None else None


@dataclass
class RotationReport:
    """What `rotate_keys` did. Names rows by secret name and version, never by value."""

    key_id: str
    total: int = 0
    rotated: int = 0
    already_current: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)


@contextmanager
def _database_errors() -> Iterator[None]:
    # A savepoint: a failed statement must not abort the caller's transaction (a renewal holding its row lock
    # still has to record why it failed).
    try:
        with transaction.atomic():
            yield
    except DatabaseError as exc:
        raise VaultTransient(f"the local vault's database failed: {exc.__class__.__name__}") from None


class LocalVault(Vault):
    """Secrets in the `consent_vaultsecretversion` table, encrypted under the first key of VAULT_KEYS."""

    backend = "local"

    def __init__(
        self,
        *,
        keys: Sequence[bytes],
        public_key: bytes | None = None,
        private_keys: Sequence[bytes] = (),
        deleted_policy: str = "recover",
        now: Callable[[], datetime] = timezone.now,
    ) -> None:
        self._ring = KeyRing(keys)
        try:
            self._seal = SealRing(public=public_key, private=list(private_keys))
        except ValueError:
            raise VaultMisconfigured("VAULT_PUBLIC_KEY or VAULT_PRIVATE_KEY is not an X25519 key") from None
        self._policy = validate_policy(deleted_policy)
        self._now = now
        self._keys_checked = False

    def __repr__(self) -> str:
        return (
            f"LocalVault(key_ids={self._ring.ids!r}, seal_public_id={self._seal.public_id!r}, "
            f"seal_private_ids={self._seal.private_ids!r}, deleted_policy={self._policy!r})"
        )

    @property
    def write_only(self) -> bool:
        """True when this process can seal secrets but open none: the web tier's vault."""
        return self._seal.seals and not self._seal.private_ids and not self._ring

    @property
    def seals(self) -> bool:
        """True when writes are sealed to a public key (VAULT_PUBLIC_KEY)."""
        return self._seal.seals

    @property
    def newest_key_id(self) -> str:
        """The key id new writes are made under: the sealing public key's when there is one."""
        return self._seal.public_id or self._ring.newest_id

    def describe(self) -> dict[str, object]:
        described: dict[str, object] = {"backend": self.backend}
        if self._seal.seals:
            described["sealed_to"] = self._seal.public_id
            described["opens"] = "yes" if self._seal.private_ids or self._ring else "no (seals only)"
        if self._ring:
            described["key_ids"] = list(self._ring.ids)
        described["deleted_policy"] = self._policy
        return described

    # --- keys -------------------------------------------------------------------------------------------

    def check_keys(self) -> None:
        """Raise VaultMisconfigured unless every stored row's key is among VAULT_KEYS and VAULT_PRIVATE_KEY (names
        key ids only). A process that only seals has no key to open rows with, and checks none."""
        newest = self.newest_key_id
        if self.write_only:
            return
        with _database_errors():
            stored = set(VaultSecretVersion.objects.values_list("key_id", flat=True).distinct())
        known = set(self._ring.ids) | set(self._seal.private_ids)
        unknown = sorted(stored - known)
        if unknown:
            held = ", ".join(self._ring.ids + self._seal.private_ids) or "none"
            raise VaultMisconfigured(
                "VAULT_KEY and VAULT_PRIVATE_KEY do not match the local vault: rows are encrypted under key id(s) "
                f"{', '.join(unknown)}, and this process holds key id(s) {held} (a sealing key's id starts with "
                "s). Set VAULT_PRIVATE_KEY and VAULT_KEY to the keys the vault was written with (newest first)."
            )
        logger.debug("local vault keys checked: newest key id %s", newest)

    def _ready(self) -> None:
        # Checked once per process at first use; health() checks every time.
        if not self._keys_checked:
            self.check_keys()
            self._keys_checked = True

    def _encrypt(self, *, name: str, version: str, value: SecretValue) -> tuple[str, bytes, bytes]:
        if self._seal.public is not None:
            nonce, envelope = seal(
                public=self._seal.public, name=name, version=version, plaintext=value.reveal().encode()
            )
            return self.newest_key_id, nonce, envelope
        key_id = self._ring.newest_id
        cipher = self._ring.cipher(key_id)
        assert cipher is not None  # noqa: S101 - the newest id always names a key of the ring
        nonce = os.urandom(NONCE_BYTES)
        return key_id, nonce, cipher.encrypt(nonce, value.reveal().encode(), _aad(name, version))

    def _decrypt(self, row: VaultSecretVersion) -> SecretValue:
        if self.write_only:
            # The web tier's vault: it was given no key that opens anything, by design (CPV_PROCESS_ROLE=web).
            raise VaultForbidden(
                f"secret {row.name} version {row.version} cannot be opened here: this process seals tokens and "
                "opens none (the workers hold the private key)"
            )
        if is_seal_key_id(row.key_id):
            return self._open(row)
        cipher = self._ring.cipher(row.key_id)
        if cipher is None:
            raise VaultMisconfigured(
                f"secret {row.name} version {row.version} is encrypted under key id {row.key_id}, which no "
                f"key in VAULT_KEY matches (VAULT_KEY holds key id(s) {', '.join(self._ring.ids)})"
            )
        try:
            plaintext = cipher.decrypt(bytes(row.nonce), bytes(row.ciphertext), _aad(row.name, row.version))
        except InvalidTag:
            raise VaultIntegrityError(
                f"secret {row.name} version {row.version} failed its integrity check: its ciphertext was "
                "altered or moved from another row"
            ) from None
        return SecretValue(plaintext.decode())

    def _open(self, row: VaultSecretVersion) -> SecretValue:
        private = self._seal.private_for(row.key_id)
        if private is None:
            raise VaultMisconfigured(
                f"secret {row.name} version {row.version} is sealed to key id {row.key_id}, which no key in "
                f"VAULT_PRIVATE_KEY matches (it holds key id(s) {', '.join(self._seal.private_ids) or 'none'})"
            )
        try:
            plaintext = open_sealed(
                private=private,
                name=row.name,
                version=row.version,
                nonce=bytes(row.nonce),
                envelope=bytes(row.ciphertext),
            )
        except SealError as exc:
            raise VaultIntegrityError(f"secret {row.name} version {row.version}: {exc}") from None
        return SecretValue(plaintext.decode())

    # --- the interface ----------------------------------------------------------------------------------

    def write(
        self,
        *,
        name: str,
        value: str | SecretValue,
        tags: Mapping[str, str] | None = None,
        content_type: str = REFRESH_TOKEN_CONTENT_TYPE,
        known_count: int | None = None,
    ) -> WriteResult:
        name = validate_secret_name(name)
        secret = validate_value(value)
        clean_tags = validate_tags(tags)
        self._ready()
        with _database_errors():
            # Locks the secret's rows so that two writers count the budget one after the other.
            rows = list(
                VaultSecretVersion.objects.select_for_update().filter(name=name).values_list("id", "deleted_at")
            )
            if any(deleted_at is not None for _, deleted_at in rows):
                rows = self._reuse_deleted_name(name=name, rows=rows)
            count = len(rows)
            if count >= MAX_VERSIONS:
                raise VersionBudgetExceeded(
                    f"secret {name} already has {count} versions; the budget is {MAX_VERSIONS}", count=count
                )
            version = uuid.uuid4().hex
            key_id, nonce, ciphertext = self._encrypt(name=name, version=version, value=secret)
            now = self._now()
            VaultSecretVersion.objects.create(
                name=name,
                version=version,
                key_id=key_id,
                nonce=nonce,
                ciphertext=ciphertext,
                content_type=content_type,
                tags=clean_tags,
                enabled=True,
                created_at=now,
                updated_at=now,
            )
        logger.info("vault: wrote secret %s version %s (%d versions)", name, version, count + 1)
        return WriteResult(name=name, version=version, created_at=now, version_count=count + 1)

    def _reuse_deleted_name(
        self, *, name: str, rows: list[tuple[int, datetime | None]]
    ) -> list[tuple[int, datetime | None]]:
        """Apply VAULT_DELETED_SECRET_POLICY to a soft-deleted name being written again (Key Vault's 409)."""
        if self._policy == "fail":
            raise SecretDeletedConflict(
                f"secret {name} was deleted and is recoverable; VAULT_DELETED_SECRET_POLICY=fail forbids "
                "reusing its name: recover or purge it first"
            )
        if self._policy == "recover":
            VaultSecretVersion.objects.filter(name=name).update(deleted_at=None, updated_at=self._now())
            logger.warning("vault: secret %s was soft-deleted; recovered it before writing (policy recover)", name)
            return [(pk, None) for pk, _ in rows]
        VaultSecretVersion.objects.filter(name=name).delete()
        logger.warning("vault: secret %s was soft-deleted; purged it before writing (policy purge)", name)
        return []

    def read(self, *, name: str, version: str | None = None) -> Secret:
        name = validate_secret_name(name)
        if version is not None:
            version = validate_version(version)
        self._ready()
        with _database_errors():
            rows = VaultSecretVersion.objects.filter(name=name, deleted_at__isnull=True)
            row = rows.filter(version=version).first() if version else rows.order_by("-id").first()
        if row is None:
            raise SecretNotFound(f"secret {name}" + (f" version {version}" if version else "") + " not found")
        if not row.enabled:
            raise SecretDisabled(f"secret {name} version {row.version} is disabled")
        return Secret(
            name=row.name,
            version=row.version,
            value=self._decrypt(row),
            enabled=row.enabled,
            created_at=row.created_at,
            content_type=row.content_type,
            tags=dict(row.tags or {}),
        )

    def versions(self, *, name: str) -> list[SecretVersion]:
        name = validate_secret_name(name)
        self._ready()
        with _database_errors():
            rows = (
                VaultSecretVersion.objects.filter(name=name, deleted_at__isnull=True)
                .order_by("-id")
                .values_list("version", "enabled", "created_at")
            )
            return [SecretVersion(version=v, enabled=e, created_at=c) for v, e, c in rows]

    def version_count(self, *, name: str) -> int:
        name = validate_secret_name(name)
        self._ready()
        with _database_errors():
            return VaultSecretVersion.objects.filter(name=name, deleted_at__isnull=True).count()

    def disable(self, *, name: str, version: str) -> None:
        name = validate_secret_name(name)
        version = validate_version(version)
        self._ready()
        with _database_errors():
            updated = VaultSecretVersion.objects.filter(name=name, version=version, deleted_at__isnull=True).update(
                enabled=False, updated_at=self._now()
            )
        if not updated:
            raise SecretNotFound(f"secret {name} version {version} not found")
        logger.info("vault: disabled secret %s version %s", name, version)

    def delete(self, *, name: str) -> None:
        name = validate_secret_name(name)
        self._ready()
        with _database_errors():
            updated = VaultSecretVersion.objects.filter(name=name, deleted_at__isnull=True).update(
                deleted_at=self._now()
            )
        if not updated:
            raise SecretNotFound(f"secret {name} not found")
        logger.info("vault: deleted secret %s (%d versions, recoverable until purged)", name, updated)

    def recover(self, *, name: str) -> None:
        name = validate_secret_name(name)
        self._ready()
        with _database_errors():
            updated = VaultSecretVersion.objects.filter(name=name, deleted_at__isnull=False).update(
                deleted_at=None, updated_at=self._now()
            )
        if not updated:
            raise SecretNotFound(f"no deleted secret named {name}")
        logger.info("vault: recovered secret %s", name)

    def purge(self, *, name: str) -> None:
        name = validate_secret_name(name)
        self._ready()
        with _database_errors():
            deleted, _ = VaultSecretVersion.objects.filter(name=name, deleted_at__isnull=False).delete()
        if not deleted:
            raise SecretNotFound(f"no deleted secret named {name}")
        logger.info("vault: purged secret %s", name)

    def health(self) -> None:
        self.check_keys()
        # Proves the newest key encrypts and decrypts, without touching a stored secret.
        probe = SecretValue(uuid.uuid4().hex)
        key_id, nonce, ciphertext = self._encrypt(name="health", version="probe", value=probe)
        if self.write_only:
            # Sealing works; opening is the workers' to prove (their `vault_check`).
            with _database_errors():
                VaultSecretVersion.objects.exists()
            self._keys_checked = True
            return
        row = VaultSecretVersion(name="health", version="probe", key_id=key_id, nonce=nonce, ciphertext=ciphertext)
        if self._decrypt(row) != probe:
            raise VaultMisconfigured("the local vault's newest key failed a round trip")
        self._keys_checked = True

    # --- key rotation -----------------------------------------------------------------------------------

    def rotate_keys(self, *, after_row: Callable[[RotationReport], None] | None = None) -> RotationReport:
        """Re-encrypt every row under the newest key (re-seal it to the public key when one is configured), a
        transaction per row (`after_row` after each), all readable throughout. Idempotent and resumable: a row already
        under the newest key is left, so a run stopped anywhere is finished by running it again. Returns a
        RotationReport; an undecryptable row is counted failed and left. Raises VaultForbidden in a process that
        cannot open rows."""
        if self.write_only:
            raise VaultForbidden("this process only seals: re-encrypting is run where VAULT_PRIVATE_KEY is set")
        newest = self.newest_key_id
        report = RotationReport(key_id=newest)
        with _database_errors():
            report.total = VaultSecretVersion.objects.count()
            pending = list(
                VaultSecretVersion.objects.exclude(key_id=newest).order_by("id").values_list("id", flat=True)
            )
        report.already_current = report.total - len(pending)
        for pk in pending:
            row: VaultSecretVersion | None = None
            try:
                with _database_errors():
                    row = VaultSecretVersion.objects.select_for_update().filter(pk=pk).first()
                    if row is None:  # purged meanwhile
                        report.total -= 1
                        continue
                    if row.key_id == newest:  # written meanwhile, under the newest key
                        report.already_current += 1
                        continue
                    value = self._decrypt(row)
                    row.key_id, row.nonce, row.ciphertext = self._encrypt(
                        name=row.name, version=row.version, value=value
                    )
                    row.save(update_fields=["key_id", "nonce", "ciphertext"])
                report.rotated += 1
            except VaultError as exc:
                report.failed += 1
                label = f"{row.name}/{row.version}" if row is not None else f"row {pk}"
                report.failures.append(f"{label}: {exc.__class__.__name__}")
                logger.warning("vault: could not re-encrypt %s: %s", label, exc)
            if after_row is not None:
                after_row(report)
        logger.info(
            "vault: key rotation to %s: %d rows, %d re-encrypted, %d already current, %d failed",
            newest,
            report.total,
            report.rotated,
            report.already_current,
            report.failed,
        )
        return report
