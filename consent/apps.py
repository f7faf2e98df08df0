from __future__ import annotations

from django.apps import AppConfig


class ConsentConfig(AppConfig):
    name = "consent"
    verbose_name = "Consent and tokens"

    def ready(self) -> None:
        from consent import services, tasks

        # After a consent, sync the partner's customers and apply ApplicationConsent in the background.
        if tasks.after_consent not in services.AFTER_CONSENT:
            services.AFTER_CONSENT.append(tasks.after_consent)
