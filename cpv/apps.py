from __future__ import annotations

from django.apps import AppConfig


class CpvConfig(AppConfig):
    name = "cpv"
    verbose_name = "Control panel"

    def ready(self) -> None:
        from cpv import checks  # noqa: F401 - registers the deployment's checks
        from cpv.logs import install_on_all_handlers

        # Handlers that libraries added before settings were read get the redaction filter too.
        install_on_all_handlers()
