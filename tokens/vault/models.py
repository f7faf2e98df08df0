"""The local vault's table: one row per secret version, encrypted, never shown in the admin."""

from __future__ import annotations

from django.db import models


class VaultSecretVersion(models.Model):
    """One version of one secret, AES-GCM encrypted with `name` and `version` as associated data (a copied ciphertext
    fails); soft-delete state is kept on every row of the secret."""

    name = models.CharField(max_length=127)
    version = models.CharField(max_length=64)
    # The first 8 bytes of SHA-256 of the key, in hex: names the key without revealing it.
    key_id = models.CharField(max_length=16, db_index=True)
    nonce = models.BinaryField(max_length=12)
    ciphertext = models.BinaryField()
    content_type = models.CharField(max_length=255, blank=True)
    tags = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "consent_vaultsecretversion"
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="vault_secret_version_unique")]
        indexes = [models.Index(fields=["name", "-id"], name="vault_secret_name_latest")]

    def __str__(self) -> str:
        return f"{self.name}/{self.version}"
