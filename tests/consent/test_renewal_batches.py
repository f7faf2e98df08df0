"""The sweep's renewal batches: how partners are grouped, and a batch run in this process with the real msal
against the simulator (a transient failure goes on alone, a lost database brings the rest back, an
interruption is recorded against the partner it cut off)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError

from consent import renewal, tasks
from consent.models import PartnerToken, TokenEvent
from consent.renewal import BATCH_SIZE, BATCH_WINDOW, renewal_batches
from consent.services import previous_disabled_record
from consent.vault import get_vault
from partners.models import AuditEvent, Partner
from tests.factories import active_partner, pointer_of

# Transactional: each renewal commits, so its after-commit work runs when it would in a worker (before the batch
# writes its flags), not when a test's outer transaction ends.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def retries(monkeypatch) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """The single-partner retries a batch hands to the broker: (kwargs + countdown) per apply_async."""
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(
        tasks.token_renew, "apply_async", lambda *a, **kw: sent.append({**kw["kwargs"], "countdown": kw["countdown"]})
    )
    return sent


def make_due(*partners: Partner) -> None:
    PartnerToken.objects.filter(partner__in=partners).update(last_renewed_at=timezone.now() - timedelta(days=8))


def generations(*partners: Partner) -> list[int]:
    return [pointer_of(p).generation for p in partners]


def broker_away(*args: Any, **kwargs: Any) -> None:
    """apply_async while the broker cannot be reached."""
    raise KombuOperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")


def renewal_failing(monkeypatch, failing: int, error: BaseException, *, times: int | None = None) -> None:  # type: ignore[no-untyped-def]
    """Make partner_token_renew raise `error` for one partner (`times` times, or always); the others renew."""
    real = renewal.partner_token_renew
    raised: list[int] = []

    def renew(*, partner_id: int, **kwargs: Any) -> renewal.RenewalResult:
        if partner_id == failing and (times is None or len(raised) < times):
            raised.append(partner_id)
            raise error
        return real(partner_id=partner_id, **kwargs)

    monkeypatch.setattr(renewal, "partner_token_renew", renew)


# --- grouping -------------------------------------------------------------------------------------------


def test_batches_hold_at_most_the_batch_size_in_countdown_order() -> None:
    queued = [(pid, 0.0) for pid in range(BATCH_SIZE * 2 + 3, 0, -1)]

    batches = renewal_batches(queued)

    assert [len(ids) for _, ids in batches] == [BATCH_SIZE, BATCH_SIZE, 3]
    assert [pid for _, ids in batches for pid in ids] == list(range(1, BATCH_SIZE * 2 + 4))
    assert {countdown for countdown, _ in batches} == {0.0}


def test_a_batch_never_runs_a_partner_later_than_its_moment_or_much_earlier() -> None:
    queued = [(1, 10.0), (2, 10.0 + BATCH_WINDOW), (3, 11.0 + BATCH_WINDOW), (4, 3000.0), (5, 5.0)]

    batches = renewal_batches(queued)

    assert batches == [(5.0, [5, 1]), (10.0 + BATCH_WINDOW, [2, 3]), (3000.0, [4])]
    # Every partner is in exactly one batch, starting no later than its own moment and at most the window earlier.
    moment = dict(queued)
    for countdown, ids in batches:
        assert all(countdown <= moment[pid] <= countdown + BATCH_WINDOW for pid in ids)
    assert sorted(pid for _, ids in batches for pid in ids) == [1, 2, 3, 4, 5]


def test_no_partners_make_no_batches() -> None:
    assert renewal_batches([]) == []


# --- a batch in this process ----------------------------------------------------------------------------


def test_a_batch_renews_the_due_partners_and_hands_a_transient_failure_to_its_own_retry(  # type: ignore[no-untyped-def]
    cpv_sim, retries
) -> None:
    fresh, throttled, due = (active_partner(cpv_sim, index=i) for i in range(3))
    make_due(throttled, due)
    before = generations(fresh, throttled, due)
    # The first redemption the batch makes (the throttled partner's) is answered 429.
    cpv_sim.control.inject_entra_error(50196, status=429, retry_after=7, grant_type="refresh_token")

    outcomes = tasks.tokens_renew_batch.apply(kwargs={"partner_ids": [fresh.pk, throttled.pk, due.pk]}).get()

    assert outcomes == {"not_due": 1, "retry": 1, "renewed": 1}
    assert generations(fresh, throttled, due) == [before[0], before[1], before[2] + 1]
    assert retries == [{"partner_id": throttled.pk, "attempt": 2, "countdown": pytest.approx(retries[0]["countdown"])}]
    assert retries[0]["countdown"] >= 7
    assert TokenEvent.objects.filter(partner=throttled, kind=TokenEvent.Kind.RETRYING).count() == 1
    # The old version is disabled in the vault and the row says so (written once, at the end of the batch).
    renewed = pointer_of(due)
    assert renewed.previous_disabled
    versions = {v.version: v.enabled for v in get_vault().versions(name=renewed.secret_name)}
    assert versions[renewed.previous_version] is False and versions[renewed.current_version] is True


def test_a_batch_flags_the_disabled_versions_in_one_write(  # type: ignore[no-untyped-def]
    cpv_sim, retries
) -> None:
    partners = [active_partner(cpv_sim, index=i) for i in range(3)]
    make_due(*partners)

    with CaptureQueriesContext(connection) as queries:
        assert tasks.tokens_renew_batch.apply(kwargs={"partner_ids": [p.pk for p in partners]}).get() == {"renewed": 3}

    flag_writes = [q["sql"] for q in queries.captured_queries if '"previous_disabled" = true' in q["sql"]]
    assert len(flag_writes) == 1
    assert all(pointer_of(p).previous_disabled for p in partners)
    # Nothing is audited for scheduled renewals: they are the partners' token events.
    assert TokenEvent.objects.filter(kind=TokenEvent.Kind.RENEWED).count() == 3
    assert not AuditEvent.objects.filter(action="partner.token_renewed").exists()


def test_a_flag_for_a_pointer_that_moved_on_is_not_written(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    pointer = pointer_of(partner)
    PartnerToken.objects.filter(pk=pointer.pk).update(previous_version="newer", previous_disabled=False)

    assert previous_disabled_record([(pointer.pk, "older")]) == 0
    assert previous_disabled_record([(pointer.pk, "newer")]) == 1
    assert pointer_of(partner).previous_disabled


def test_a_batch_cut_off_by_the_database_comes_back_with_the_partners_not_done(  # type: ignore[no-untyped-def]
    cpv_sim, retries, monkeypatch
) -> None:
    partners = [active_partner(cpv_sim, index=i) for i in range(3)]
    make_due(*partners)
    before = generations(*partners)
    real = renewal.partner_token_renew
    calls: list[tuple[int, str]] = []

    def flaky(*, partner_id: int, interrupted: str = "", **kwargs: Any) -> renewal.RenewalResult:
        calls.append((partner_id, interrupted))
        if len(calls) == 2:
            raise OperationalError("the connection was lost")
        return real(partner_id=partner_id, interrupted=interrupted, **kwargs)

    monkeypatch.setattr(renewal, "partner_token_renew", flaky)
    tasks.tokens_renew_batch.apply(kwargs={"partner_ids": [p.pk for p in partners]})

    # The second partner failed with the database; the batch came back with it and the third, and said why.
    ids = [p.pk for p in partners]
    reason = "the database connection failed: OperationalError"
    assert calls == [(ids[0], ""), (ids[1], ""), (ids[1], reason), (ids[2], "")]
    assert generations(*partners) == [g + 1 for g in before]
    interrupted = TokenEvent.objects.filter(kind=TokenEvent.Kind.RETRYING)
    assert [(e.partner_id, e.detail["interrupted"]) for e in interrupted] == [(ids[1], reason)]
    assert retries == []


def test_an_interrupted_batch_records_the_interruption_once_against_the_partner_it_cut_off(  # type: ignore[no-untyped-def]
    cpv_sim, retries
) -> None:
    # The stopped run had renewed the first partner and was renewing the second.
    done, cut_off, untouched = (active_partner(cpv_sim, index=i) for i in range(3))
    make_due(cut_off, untouched)

    outcomes = tasks.tokens_renew_batch.apply(
        kwargs={"partner_ids": [done.pk, cut_off.pk, untouched.pk], "interrupted": "its worker stopped"}
    ).get()

    assert outcomes == {"not_due": 1, "renewed": 2}
    events = TokenEvent.objects.filter(kind=TokenEvent.Kind.RETRYING)
    assert [(e.partner_id, e.detail["interrupted"]) for e in events] == [(cut_off.pk, "its worker stopped")]


def test_a_long_batch_hands_the_partners_it_has_not_reached_to_a_new_batch(  # type: ignore[no-untyped-def]
    cpv_sim, retries, monkeypatch, settings
) -> None:
    partners = [active_partner(cpv_sim, index=i) for i in range(3)]
    make_due(*partners)
    settings.CELERY_TASK_SOFT_TIME_LIMIT = 0  # every partner after the first is past the batch's time
    handed: list[dict[str, Any]] = []
    monkeypatch.setattr(tasks.tokens_renew_batch, "apply_async", lambda *a, **kw: handed.append(kw["kwargs"]))

    outcomes = tasks.tokens_renew_batch.apply(kwargs={"partner_ids": [p.pk for p in partners]}).get()

    assert outcomes == {"renewed": 1, "handed_on": 2}
    assert handed == [{"partner_ids": [partners[1].pk, partners[2].pk]}]


def test_the_sweep_queues_its_claims_as_batches(cpv_sim, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    partners = [active_partner(cpv_sim, index=i) for i in range(3)]
    make_due(*partners)
    queued: list[tuple[list[int], float]] = []
    monkeypatch.setattr(
        tasks.tokens_renew_batch, "apply_async", lambda *a, **kw: queued.append((kw["kwargs"]["partner_ids"],
                                                                                 kw["countdown"]))
    )  # fmt: skip

    assert tasks.tokens_renew_sweep.apply(kwargs={"spread": 0}).get() == 3
    assert queued == [([p.pk for p in partners], 0.0)]
    assert tasks.tokens_renew_sweep.apply(kwargs={"spread": 0}).get() == 0
    assert len(queued) == 1


def test_a_batch_whose_hand_off_the_broker_refuses_renews_the_rest_itself(  # type: ignore[no-untyped-def]
    cpv_sim, retries, monkeypatch, settings, caplog
) -> None:
    partners = [active_partner(cpv_sim, index=i) for i in range(3)]
    make_due(*partners)
    settings.CELERY_TASK_SOFT_TIME_LIMIT = 0

    monkeypatch.setattr(tasks.tokens_renew_batch, "apply_async", broker_away)

    outcomes = tasks.tokens_renew_batch.apply(kwargs={"partner_ids": [p.pk for p in partners]}).get()

    # Nobody is left behind for a sweep an hour later: the batch renewed them all.
    assert outcomes == {"renewed": 3}
    assert all(pointer_of(p).previous_disabled and pointer_of(p).generation == 2 for p in partners)
    assert "could not queue consent.tokens_renew_batch: OperationalError" in caplog.text


def test_a_retry_the_broker_refuses_is_recorded_and_the_batch_goes_on(  # type: ignore[no-untyped-def]
    cpv_sim, monkeypatch
) -> None:
    throttled, due = (active_partner(cpv_sim, index=i) for i in range(2))
    make_due(throttled, due)
    cpv_sim.control.inject_entra_error(50196, status=429, retry_after=7, grant_type="refresh_token")

    monkeypatch.setattr(tasks.token_renew, "apply_async", broker_away)

    outcomes = tasks.tokens_renew_batch.apply(kwargs={"partner_ids": [throttled.pk, due.pk]}).get()

    assert outcomes == {"retry_not_queued": 1, "renewed": 1}
    # The failure is on the partner's timeline; a later sweep claims it again.
    assert TokenEvent.objects.filter(partner=throttled, kind=TokenEvent.Kind.RETRYING).count() == 1
    assert pointer_of(throttled).failure_count == 1


def test_one_partner_failing_unexpectedly_does_not_stop_the_batch(  # type: ignore[no-untyped-def]
    cpv_sim, retries, monkeypatch, caplog
) -> None:
    broken, due = (active_partner(cpv_sim, index=i) for i in range(2))
    make_due(broken, due)
    renewal_failing(monkeypatch, broken.pk, KeyError("a bug"))

    outcomes = tasks.tokens_renew_batch.apply(kwargs={"partner_ids": [broken.pk, due.pk]}).get()

    assert outcomes == {"error": 1, "renewed": 1}
    assert pointer_of(due).generation == 2 and pointer_of(broken).generation == 1
    assert f"renewal of partner {broken.pk} failed unexpectedly" in caplog.text


def test_a_batch_out_of_time_hands_the_partner_in_progress_and_the_rest_on(  # type: ignore[no-untyped-def]
    cpv_sim, retries, monkeypatch
) -> None:
    partners = [active_partner(cpv_sim, index=i) for i in range(3)]
    make_due(*partners)
    renewal_failing(monkeypatch, partners[1].pk, SoftTimeLimitExceeded())
    handed: list[dict[str, Any]] = []
    monkeypatch.setattr(tasks.tokens_renew_batch, "apply_async", lambda *a, **kw: handed.append(kw["kwargs"]))

    outcomes = tasks.tokens_renew_batch.apply(kwargs={"partner_ids": [p.pk for p in partners]}).get()

    assert outcomes == {"renewed": 1, "handed_on": 2}
    assert handed == [{"partner_ids": [partners[1].pk, partners[2].pk], "interrupted": "its batch ran out of time"}]


def test_a_batch_out_of_time_whose_hand_off_the_broker_refuses_renews_them_itself(  # type: ignore[no-untyped-def]
    cpv_sim, retries, monkeypatch
) -> None:
    partners = [active_partner(cpv_sim, index=i) for i in range(3)]
    make_due(*partners)
    renewal_failing(monkeypatch, partners[1].pk, SoftTimeLimitExceeded(), times=1)
    monkeypatch.setattr(tasks.tokens_renew_batch, "apply_async", broker_away)

    outcomes = tasks.tokens_renew_batch.apply(kwargs={"partner_ids": [p.pk for p in partners]}).get()

    # Acknowledged with partners dropped, the message would leave them to a sweep an hour later.
    assert outcomes == {"renewed": 3}
    assert all(pointer_of(p).generation == 2 for p in partners)
