from __future__ import annotations

from django.apps import AppConfig


class TokensConfig(AppConfig):
    name = "tokens"
    verbose_name = "Tokens and the vault"

    def ready(self) -> None:
        from tokens import checks  # noqa: F401 - registers the vaults' checks
