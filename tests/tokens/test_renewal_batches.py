"""The sweep's renewal batches: how partners are grouped, and a batch run in this process with the real msal
against the simulator (its partners renewed in one transaction, a transient failure goes on alone, a lost
database brings back the partners whose renewals rolled back, an interruption is recorded against the partner it
cut off)."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError

from partners.models import AuditEvent, Partner
from tests.factories import active_partner, pointer_of
from tokens import renewal
from tokens import tasks as token_tasks
from tokens.models import PartnerToken, TokenEvent
from tokens.pointers import POINTER_MOVED, pointer_move, pointers_moved_write, previous_disabled_record
from tokens.sweep import BATCH_SIZE, BATCH_WINDOW, renewal_batches
from tokens.vault import get_vault

# Transactional: each renewal commits, so its after-commit work runs when it would in a worker (before the batch
# writes its flags), not when a test's outer transaction ends. The tests marked postgres are about its row locks
# and transactions of many partners; on SQLite (one writer at a time) a batch commits each partner alone.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def retries(monkeypatch) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """The single-partner retries a batch hands to the broker: (kwargs + countdown) per apply_async."""
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(
        token_tasks.token_renew,
        "apply_async",
        lambda *a, **kw: sent.append({**kw["kwargs"], "countdown": kw["countdown"]}),
    )
    return sent


@pytest.fixture
def handed(monkeypatch) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """The new batches a batch hands its partners to (the kwargs of each apply_async)."""
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(token_tasks.tokens_renew_batch, "apply_async", lambda *a, **kw: sent.append(kw["kwargs"]))
    return sent


def make_due(*partners: Partner) -> None:
    PartnerToken.objects.filter(partner__in=partners).update(last_renewed_at=timezone.now() - timedelta(days=8))


def generations(*partners: Partner) -> list[int]:
    return [pointer_of(p).generation for p in partners]


def broker_away(*args: Any, **kwargs: Any) -> None:
    """apply_async while the broker cannot be reached."""
    raise KombuOperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")


def renewal_failing(
    monkeypatch, failing: int, error: BaseException, *, times: int | None = None
) -> list[tuple[int, str]]:  # type: ignore[no-untyped-def]
    """Make the renewal of one partner raise `error` (`times` times, or always); the others renew. Returns the
    (partner id, interrupted) of every renewal begun, in order."""
    real = renewal.renew_if_due
    begun: list[tuple[int, str]] = []
    raised: list[int] = []

    def renew(pointer: PartnerToken, **kwargs: Any) -> Any:
        begun.append((pointer.partner_id, kwargs["interrupted"]))
        if pointer.partner_id == failing and (times is None or len(raised) < times):
            raised.append(pointer.partner_id)
            raise error
        return real(pointer, **kwargs)

    monkeypatch.setattr(renewal, "renew_if_due", renew)
    return begun


def enabled_versions(partner: Partner) -> set[str]:
    return {v.version for v in get_vault().versions(name=pointer_of(partner).secret_name) if v.enabled}


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


@pytest.mark.postgres
def test_a_batch_renews_the_due_partners_and_hands_a_transient_failure_to_its_own_retry(  # type: ignore[no-untyped-def]
    cpv_sim, retries
) -> None:
    fresh, throttled, due = (active_partner(cpv_sim, index=i) for i in range(3))
    make_due(throttled, due)
    before = generations(fresh, throttled, due)
    # The first redemption the batch makes (the throttled partner's) is answered 429.
    cpv_sim.control.inject_entra_error(50196, status=429, retry_after=7, grant_type="refresh_token")

    outcomes = token_tasks.tokens_renew_batch.apply(kwargs={"partner_ids": [fresh.pk, throttled.pk, due.pk]}).get()

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


@pytest.mark.postgres
def test_a_batch_flags_the_disabled_versions_in_one_write(  # type: ignore[no-untyped-def]
    cpv_sim, retries
) -> None:
    partners = [active_partner(cpv_sim, index=i) for i in range(3)]
    make_due(*partners)

    with CaptureQueriesContext(connection) as queries:
        assert token_tasks.tokens_renew_batch.apply(kwargs={"partner_ids": [p.pk for p in partners]}).get() == {
            "renewed": 3
        }

    statements = [q["sql"] for q in queries.captured_queries]
    flag_writes = [sql for sql in statements if '"previous_disabled" = true' in sql]
    assert len(flag_writes) == 1
    # One transaction for the three: their rows locked in one query, the pointers and events written in one each.
    assert len([sql for sql in statements if "FOR UPDATE" in sql and 'FROM "consent_partnertoken"' in sql]) == 1
    assert (
        len([sql for sql in statements if sql.startswith('UPDATE "consent_partnertoken" SET "previous_version"')]) == 1
    )
    assert len([sql for sql in statements if sql.startswith('INSERT INTO "consent_tokenevent"')]) == 1
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


@pytest.mark.postgres
def test_a_batch_cut_off_by_the_database_comes_back_with_the_partners_not_done(  # type: ignore[no-untyped-def]
    cpv_sim, retries, monkeypatch
) -> None:
    partners = [active_partner(cpv_sim, index=i) for i in range(3)]
    make_due(*partners)
    before = generations(*partners)
    written_before = enabled_versions(partners[0])
    begun = renewal_failing(monkeypatch, partners[1].pk, OperationalError("the connection was lost"), times=1)

    token_tasks.tokens_renew_batch.apply(kwargs={"partner_ids": [p.pk for p in partners]})

    # The database failed during the second partner's renewal: the transaction rolled back the first one's too,
    # so the batch came back with all three, and said why against both whose renewal it had begun.
    ids = [p.pk for p in partners]
    reason = "the database connection failed: OperationalError"
    assert begun == [(ids[0], ""), (ids[1], ""), (ids[0], reason), (ids[1], reason), (ids[2], "")]
    assert generations(*partners) == [g + 1 for g in before]
    interrupted = TokenEvent.objects.filter(kind=TokenEvent.Kind.RETRYING).order_by("id")
    assert [(e.partner_id, e.detail["interrupted"]) for e in interrupted] == [(ids[0], reason), (ids[1], reason)]
    assert TokenEvent.objects.filter(kind=TokenEvent.Kind.RENEWED).count() == 3
    # Nothing is lost: each pointer names an enabled version that holds a token (the embedded vault keeps its
    # versions in the same database, so the rolled-back renewal's write rolled back with it).
    for partner in partners:
        pointer = pointer_of(partner)
        assert pointer.current_version in enabled_versions(partner)
        assert get_vault().read(name=pointer.secret_name, version=pointer.current_version).value.reveal()
    assert enabled_versions(partners[0]) - written_before == {pointer_of(partners[0]).current_version}
    assert retries == []


@pytest.mark.postgres
def test_an_interrupted_batch_records_the_interruption_once_against_the_partner_it_cut_off(  # type: ignore[no-untyped-def]
    cpv_sim, retries
) -> None:
    # The stopped run had renewed the first partner and was renewing the second.
    done, cut_off, untouched = (active_partner(cpv_sim, index=i) for i in range(3))
    make_due(cut_off, untouched)

    outcomes = token_tasks.tokens_renew_batch.apply(
        kwargs={"partner_ids": [done.pk, cut_off.pk, untouched.pk], "interrupted": "its worker stopped"}
    ).get()

    assert outcomes == {"not_due": 1, "renewed": 2}
    events = TokenEvent.objects.filter(kind=TokenEvent.Kind.RETRYING)
    assert [(e.partner_id, e.detail["interrupted"]) for e in events] == [(cut_off.pk, "its worker stopped")]


@pytest.mark.postgres
def test_a_long_batch_hands_the_partners_it_has_not_reached_to_a_new_batch(  # type: ignore[no-untyped-def]
    cpv_sim, retries, monkeypatch, handed, settings
) -> None:
    partners = [active_partner(cpv_sim, index=i) for i in range(3)]
    make_due(*partners)
    settings.CELERY_TASK_SOFT_TIME_LIMIT = 0  # every transaction after the first is past the batch's time
    monkeypatch.setattr(renewal, "BATCH_LOCK_SECONDS", 0)  # a transaction takes one partner

    outcomes = token_tasks.tokens_renew_batch.apply(kwargs={"partner_ids": [p.pk for p in partners]}).get()

    assert outcomes == {"renewed": 1, "handed_on": 2}
    assert handed == [{"partner_ids": [partners[1].pk, partners[2].pk]}]


@pytest.mark.postgres
def test_a_transaction_holds_its_locks_no_longer_than_the_batch_lock_time(  # type: ignore[no-untyped-def]
    cpv_sim, retries, monkeypatch
) -> None:
    partners = [active_partner(cpv_sim, index=i) for i in range(3)]
    make_due(*partners)
    monkeypatch.setattr(renewal, "BATCH_LOCK_SECONDS", 0)

    with CaptureQueriesContext(connection) as queries:
        outcomes = token_tasks.tokens_renew_batch.apply(kwargs={"partner_ids": [p.pk for p in partners]}).get()

    assert outcomes == {"renewed": 3}
    # Each partner in a transaction of its own: locked, renewed, committed, then the rest locked again.
    locks = [
        q for q in queries.captured_queries if "FOR UPDATE" in q["sql"] and 'FROM "consent_partnertoken"' in q["sql"]
    ]
    assert len(locks) == 3
    assert generations(*partners) == [2, 2, 2]


@pytest.mark.postgres
def test_a_partner_another_worker_holds_is_busy_and_the_rest_renew(  # type: ignore[no-untyped-def]
    cpv_sim, retries
) -> None:
    held, due, tokenless = (active_partner(cpv_sim, index=i) for i in range(3))
    make_due(held, due)
    PartnerToken.objects.filter(partner=tokenless).delete()
    locked, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        from django.db import connection as own
        from django.db import transaction

        try:
            with transaction.atomic():
                PartnerToken.objects.select_for_update().get(partner=held)
                locked.set()
                release.wait(timeout=30)
        finally:
            own.close()

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    try:
        assert locked.wait(timeout=30)
        outcomes = token_tasks.tokens_renew_batch.apply(kwargs={"partner_ids": [held.pk, due.pk, tokenless.pk]}).get()
    finally:
        release.set()
        holder.join(timeout=30)

    assert outcomes == {"busy": 1, "renewed": 1, "skipped": 1}
    assert generations(held, due) == [1, 2]


@pytest.mark.postgres
def test_the_sweep_queues_its_claims_as_batches(cpv_sim, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    partners = [active_partner(cpv_sim, index=i) for i in range(3)]
    make_due(*partners)
    queued: list[tuple[list[int], float]] = []
    monkeypatch.setattr(
        token_tasks.tokens_renew_batch, "apply_async", lambda *a, **kw: queued.append((kw["kwargs"]["partner_ids"],
                                                                                 kw["countdown"]))
    )  # fmt: skip

    assert token_tasks.tokens_renew_sweep.apply(kwargs={"spread": 0}).get() == 3
    assert queued == [([p.pk for p in partners], 0.0)]
    assert token_tasks.tokens_renew_sweep.apply(kwargs={"spread": 0}).get() == 0
    assert len(queued) == 1


@pytest.mark.postgres
def test_a_batch_whose_hand_off_the_broker_refuses_renews_the_rest_itself(  # type: ignore[no-untyped-def]
    cpv_sim, retries, monkeypatch, settings, caplog
) -> None:
    partners = [active_partner(cpv_sim, index=i) for i in range(3)]
    make_due(*partners)
    settings.CELERY_TASK_SOFT_TIME_LIMIT = 0
    monkeypatch.setattr(renewal, "BATCH_LOCK_SECONDS", 0)

    monkeypatch.setattr(token_tasks.tokens_renew_batch, "apply_async", broker_away)

    outcomes = token_tasks.tokens_renew_batch.apply(kwargs={"partner_ids": [p.pk for p in partners]}).get()

    # Nobody is left behind for a sweep an hour later: the batch renewed them all.
    assert outcomes == {"renewed": 3}
    assert all(pointer_of(p).previous_disabled and pointer_of(p).generation == 2 for p in partners)
    assert "could not queue consent.tokens_renew_batch: OperationalError" in caplog.text


@pytest.mark.postgres
def test_a_retry_the_broker_refuses_is_recorded_and_the_batch_goes_on(  # type: ignore[no-untyped-def]
    cpv_sim, monkeypatch
) -> None:
    throttled, due = (active_partner(cpv_sim, index=i) for i in range(2))
    make_due(throttled, due)
    cpv_sim.control.inject_entra_error(50196, status=429, retry_after=7, grant_type="refresh_token")

    monkeypatch.setattr(token_tasks.token_renew, "apply_async", broker_away)

    outcomes = token_tasks.tokens_renew_batch.apply(kwargs={"partner_ids": [throttled.pk, due.pk]}).get()

    assert outcomes == {"retry_not_queued": 1, "renewed": 1}
    # The failure is on the partner's timeline; a later sweep claims it again.
    assert TokenEvent.objects.filter(partner=throttled, kind=TokenEvent.Kind.RETRYING).count() == 1
    assert pointer_of(throttled).failure_count == 1


@pytest.mark.postgres
def test_one_partner_failing_unexpectedly_does_not_stop_the_batch(  # type: ignore[no-untyped-def]
    cpv_sim, retries, monkeypatch, caplog
) -> None:
    due, broken, later = (active_partner(cpv_sim, index=i) for i in range(3))
    make_due(due, broken, later)
    begun = renewal_failing(monkeypatch, broken.pk, KeyError("a bug"))

    outcomes = token_tasks.tokens_renew_batch.apply(kwargs={"partner_ids": [due.pk, broken.pk, later.pk]}).get()

    # The transaction rolled back; the batch renewed its partners one at a time instead.
    assert outcomes == {"failed": 1, "renewed": 2}
    assert generations(due, broken, later) == [2, 1, 2]
    assert [partner_id for partner_id, _ in begun] == [due.pk, broken.pk, due.pk, broken.pk, later.pk]
    assert "a transaction of 3 partner(s) failed; renewing them one at a time" in caplog.text
    assert f"renewal of partner {broken.pk} failed unexpectedly" in caplog.text


@pytest.mark.postgres
def test_a_batch_out_of_time_hands_the_partners_it_rolled_back_and_the_rest_on(  # type: ignore[no-untyped-def]
    cpv_sim, retries, monkeypatch, handed
) -> None:
    partners = [active_partner(cpv_sim, index=i) for i in range(3)]
    make_due(*partners)
    renewal_failing(monkeypatch, partners[1].pk, SoftTimeLimitExceeded())

    outcomes = token_tasks.tokens_renew_batch.apply(kwargs={"partner_ids": [p.pk for p in partners]}).get()

    # Both renewals it had begun rolled back: the new batch says why against each.
    assert outcomes == {"handed_on": 3}
    ids = [p.pk for p in partners]
    assert handed == [{"partner_ids": ids, "interrupted": "its batch ran out of time", "begun": ids[:2]}]
    assert generations(*partners) == [1, 1, 1]


@pytest.mark.postgres
def test_a_batch_out_of_time_whose_hand_off_the_broker_refuses_renews_them_itself(  # type: ignore[no-untyped-def]
    cpv_sim, retries, monkeypatch
) -> None:
    partners = [active_partner(cpv_sim, index=i) for i in range(3)]
    make_due(*partners)
    renewal_failing(monkeypatch, partners[1].pk, SoftTimeLimitExceeded(), times=1)
    monkeypatch.setattr(token_tasks.tokens_renew_batch, "apply_async", broker_away)

    outcomes = token_tasks.tokens_renew_batch.apply(kwargs={"partner_ids": [p.pk for p in partners]}).get()

    # Acknowledged with partners dropped, the message would leave them to a sweep an hour later.
    assert outcomes == {"renewed": 3}
    assert all(pointer_of(p).generation == 2 for p in partners)


@pytest.mark.postgres
def test_moved_pointers_are_written_in_one_statement_exactly_as_saved_one_by_one(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partners = [active_partner(cpv_sim, index=i) for i in range(3)]
    pointers = [pointer_of(p) for p in partners]
    # Rows that agree on some columns (the time, the count for two of them) and differ on others.
    now = timezone.now()
    PartnerToken.objects.filter(pk=pointers[2].pk).update(version_count=7, failure_count=3, last_error="was failing")
    pointers[2].refresh_from_db()
    for i, pointer in enumerate(pointers):
        pointer_move(pointer, version=f"v{i}", version_count=pointer.version_count + 1, token_value=f"t{i}", now=now,
                     save=False)  # fmt: skip
    expected = [{name: getattr(p, name) for name in POINTER_MOVED} for p in pointers]

    with CaptureQueriesContext(connection) as queries:
        pointers_moved_write(pointers)

    assert len(queries.captured_queries) == 1
    assert [{name: getattr(pointer_of(p), name) for name in POINTER_MOVED} for p in partners] == expected
    assert [pointer_of(p).current_version for p in partners] == ["v0", "v1", "v2"]
    assert pointer_of(partners[2]).failure_count == 0 and pointer_of(partners[2]).version_count == 8


@pytest.mark.postgres
def test_a_failed_clean_up_after_the_commit_undoes_nothing_and_skips_no_other(  # type: ignore[no-untyped-def]
    cpv_sim, retries, monkeypatch, caplog
) -> None:
    partners = [active_partner(cpv_sim, index=i) for i in range(3)]
    make_due(*partners)
    real = renewal.superseded_versions_disable

    def cleanup(pointer: PartnerToken, orphans: tuple[str, ...], **kwargs: Any) -> Any:
        if pointer.partner_id == partners[1].pk:
            raise OperationalError("the connection was lost")
        return real(pointer, orphans, **kwargs)

    monkeypatch.setattr(renewal, "superseded_versions_disable", cleanup)

    outcomes = token_tasks.tokens_renew_batch.apply(kwargs={"partner_ids": [p.pk for p in partners]}).get()

    # Committed is committed: counted as renewed, never renewed again, never retried as interrupted.
    assert outcomes == {"renewed": 3}
    assert generations(*partners) == [2, 2, 2]
    assert not TokenEvent.objects.filter(kind=TokenEvent.Kind.RETRYING).exists()
    # The others' old versions are disabled and flagged; that one's is left for the sweep.
    assert [pointer_of(p).previous_disabled for p in partners] == [True, False, True]
    assert f"renewal of partner {partners[1].pk}: the clean-up after the commit failed" in caplog.text


@pytest.mark.postgres
def test_a_batch_out_of_time_after_a_commit_counts_it_and_hands_the_rest_on(  # type: ignore[no-untyped-def]
    cpv_sim, retries, monkeypatch, handed
) -> None:
    partners = [active_partner(cpv_sim, index=i) for i in range(3)]
    make_due(*partners)
    monkeypatch.setattr(renewal, "BATCH_LOCK_SECONDS", 0)  # a transaction takes one partner
    real = renewal.superseded_versions_disable

    def cleanup(pointer: PartnerToken, orphans: tuple[str, ...], **kwargs: Any) -> Any:
        real(pointer, orphans, **kwargs)
        raise SoftTimeLimitExceeded

    monkeypatch.setattr(renewal, "superseded_versions_disable", cleanup)

    outcomes = token_tasks.tokens_renew_batch.apply(kwargs={"partner_ids": [p.pk for p in partners]}).get()

    assert outcomes == {"renewed": 1, "handed_on": 2}
    assert handed == [{"partner_ids": [partners[1].pk, partners[2].pk]}]
    assert generations(*partners) == [2, 1, 1]
    # The time limit struck after the vault disabled the old version, before its flag was written: the version is
    # disabled, and the sweep flags it (disabling it again, harmlessly).
    pointer = pointer_of(partners[0])
    enabled = {v.version: v.enabled for v in get_vault().versions(name=pointer.secret_name)}
    assert enabled[pointer.previous_version] is False


def test_a_batch_renews_every_due_partner_on_either_database(cpv_sim, retries) -> None:  # type: ignore[no-untyped-def]
    partners = [active_partner(cpv_sim, index=i) for i in range(3)]
    make_due(*partners)

    with CaptureQueriesContext(connection) as queries:
        outcomes = token_tasks.tokens_renew_batch.apply(kwargs={"partner_ids": [p.pk for p in partners]}).get()

    assert outcomes == {"renewed": 3}
    assert all(pointer_of(p).generation == 2 and pointer_of(p).previous_disabled for p in partners)
    moves = [q for q in queries.captured_queries if 'UPDATE "consent_partnertoken" SET "previous_version"' in q["sql"]]
    # PostgreSQL: one transaction for the three. SQLite: one each, so that the embedded vault's writes (in the same
    # database, one writer at a time) do not hold its write lock across the other partners' calls to Microsoft.
    assert len(moves) == (3 if connection.vendor == "sqlite" else 1)


def test_a_batch_refuses_to_run_inside_another_transaction(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    from django.db import transaction

    partner = active_partner(cpv_sim)
    make_due(partner)

    with transaction.atomic(), pytest.raises(RuntimeError, match="call it outside any other"):
        renewal.renew_batch(partner_ids=[partner.pk])
    assert pointer_of(partner).generation == 1
