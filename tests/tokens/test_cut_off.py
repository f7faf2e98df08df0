"""A renewal task cut off in the middle (its soft time limit, or the database gone) goes on as a retry instead of
being acknowledged with its work undone, when a partner would wait for the next renewal sweep.

The soft time limit is raised where a worker would raise it; Celery also raises it, after a lost broker
connection comes back, in a pool process that has moved on to another task (tests/faults/test_redis_restart.py).
"""

from __future__ import annotations

from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from tests.factories import active_partner, once, pointer_of
from tokens import renewal
from tokens import tasks as token_tasks
from tokens.models import TokenEvent

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_renewal_cut_off_by_its_time_limit_runs_again_and_says_why(cpv_sim, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    monkeypatch.setattr(renewal, "redeem_current_token", once(renewal.redeem_current_token, SoftTimeLimitExceeded()))

    token_tasks.token_renew.apply(kwargs={"partner_id": partner.pk, "force": True})

    assert pointer_of(partner).generation == 2
    retrying = TokenEvent.objects.get(partner=partner, kind=TokenEvent.Kind.RETRYING)
    assert "it ran out of time" in retrying.message
    assert retrying.detail["attempt"] == 2


def test_a_renewal_cut_off_every_time_stops_after_its_attempts(cpv_sim, monkeypatch, settings, caplog) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    settings.CPV_RENEWAL_MAX_ATTEMPTS = 3
    begun: list[int] = []

    def out_of_time(**kwargs: Any) -> Any:
        begun.append(1)
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(renewal, "redeem_current_token", out_of_time)

    token_tasks.token_renew.apply(kwargs={"partner_id": partner.pk, "force": True})

    # Bounded like any other transient failure; the next sweep tries again.
    assert len(begun) == 3
    assert pointer_of(partner).generation == 1
    assert f"renewal of partner {partner.pk}: stopped 3 times (it ran out of time)" in caplog.text
