"""The project's own tables: the database rate limiter's counters, low enough for the Microsoft clients."""

from __future__ import annotations

from django.db import models


class ThrottleWindow(models.Model):
    """The database rate limiter's counters (embedded mode, without Redis): requests per key and second."""

    key = models.CharField(max_length=100)
    second = models.BigIntegerField()
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        db_table = "consent_throttlewindow"  # created by the consent app, whose table it keeps
        constraints = [models.UniqueConstraint(fields=["key", "second"], name="throttle_window_unique")]

    def __str__(self) -> str:
        return f"{self.key}@{self.second}: {self.count}"
