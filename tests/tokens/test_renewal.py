"""Renewal of a partner's refresh token, every error class, with the real msal against the simulator."""

from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone

from microsoft.retrying import max_countdown
from partners.models import AuditEvent, Partner
from tests.factories import active_partner, pointer_of
from tokens.access_tokens import GRAPH, PARTNER_CENTER, access_token_get, cache_forget
from tokens.models import PartnerToken, TokenEvent
from tokens.outcomes import RenewalRetry
from tokens.renewal import renew_one, renew_one_retrying
from tokens.selectors import TokenStatus, token_status
from tokens.sweep import SPREAD_SECONDS, SWEEP_EVERY_SECONDS, renewal_sweep, sweep_capacity
from tokens.vault import get_vault

pytestmark = pytest.mark.django_db


def make_due(partner: Partner, days: int = 8) -> None:
    PartnerToken.objects.filter(partner=partner).update(last_renewed_at=timezone.now() - timedelta(days=days))


def at(entry: dict) -> float:
    """When the simulator received a request (its log's wall-clock time)."""
    return datetime.fromisoformat(entry["time"]).timestamp()


def redemptions(sim) -> list[dict]:  # type: ignore[no-untyped-def]
    return sim.control.log(service="entra", path="/token$", grant_type="refresh_token")


def test_renewal_rotates_the_token_and_disables_the_old_version(cpv_sim, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    before = pointer_of(partner)
    old_value = get_vault().read(name=before.secret_name, version=before.current_version).value.reveal()
    make_due(partner)

    with django_capture_on_commit_callbacks(execute=True):
        result = renew_one(partner_id=partner.pk)

    assert result.outcome == "renewed"
    after = pointer_of(partner)
    assert after.current_version != before.current_version
    assert after.previous_version == before.current_version and after.previous_disabled
    assert after.generation == before.generation + 1 and after.version_count == 2
    versions = {v.version: v.enabled for v in get_vault().versions(name=after.secret_name)}
    assert versions == {after.current_version: True, before.current_version: False}
    new_value = get_vault().read(name=after.secret_name).value.reveal()
    assert new_value != old_value and cpv_sim.control.refresh_token_info(new_value) is not None
    assert [e["status"] for e in redemptions(cpv_sim)] == [200]
    assert sum(cpv_sim.control.redemptions().values()) == 1
    assert TokenEvent.objects.filter(partner=partner, kind="renewed").count() == 1
    # A scheduled renewal is the partner's token event; the audit log keeps what people asked for.
    assert not AuditEvent.objects.filter(partner=partner, action="partner.token_renewed").exists()
    assert token_status(partner, after) == TokenStatus.HEALTHY


def test_a_token_that_is_not_due_is_left_alone_unless_forced(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)

    assert renew_one(partner_id=partner.pk).outcome == "not_due"
    assert redemptions(cpv_sim) == []
    assert renew_one(partner_id=partner.pk, force=True).outcome == "renewed"
    assert len(redemptions(cpv_sim)) == 1
    audited = AuditEvent.objects.get(partner=partner, action="partner.token_renewed")
    assert audited.actor_label == "system" and audited.detail["forced"] is True


@pytest.mark.postgres  # row locks: SQLite has none, and one writer at a time
@pytest.mark.django_db(transaction=True)
def test_ten_renewals_started_at_once_redeem_exactly_once(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    make_due(partner)
    barrier = threading.Barrier(10)
    outcomes: list[str] = []

    def renew() -> None:
        try:
            barrier.wait()
            outcomes.append(renew_one(partner_id=partner.pk).outcome)
        finally:
            connection.close()

    threads = [threading.Thread(target=renew) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert set(outcomes) <= {"busy", "not_due", "renewed"} and len(outcomes) == 10
    assert outcomes.count("renewed") == 1
    assert sum(cpv_sim.control.redemptions().values()) == 1
    assert pointer_of(partner).generation == 2


def _assert_reconsent_needed(sim, partner: Partner, *, reason: str) -> None:  # type: ignore[no-untyped-def]
    partner.refresh_from_db()
    assert partner.status == Partner.Status.RECONSENT_NEEDED
    assert reason in partner.status_reason
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [partner.contact_email]
    link = re.search(r"(http://\S+)", mail.outbox[0].body)
    assert link
    assert token_status(partner, pointer_of(partner)) == TokenStatus.INVALID
    assert AuditEvent.objects.filter(partner=partner, action="partner.reconsent_needed").count() == 1


@pytest.mark.parametrize("how", ["inactivity", "admin_reset"])
def test_invalid_grant_asks_for_reconsent_once_and_is_not_retried(  # type: ignore[no-untyped-def]
    cpv_sim, client, django_capture_on_commit_callbacks, how
) -> None:
    partner = active_partner(cpv_sim)
    if how == "inactivity":
        cpv_sim.control.advance_days(91)
        code = 700082
    else:
        cpv_sim.control.revoke_user(cpv_sim.world.partners[0].users[0].oid)
        code = 50173
    make_due(partner)

    with django_capture_on_commit_callbacks(execute=True):
        result = renew_one(partner_id=partner.pk)
        again = renew_one(partner_id=partner.pk, force=True)

    assert result.outcome == "failed" and again.outcome == "skipped"
    _assert_reconsent_needed(cpv_sim, partner, reason="consent again")
    attempts = redemptions(cpv_sim)
    assert [e["status"] for e in attempts] == [400]
    assert attempts[0]["detail"]["error_code"] == code
    event = TokenEvent.objects.get(partner=partner, kind="reconsent_needed")
    assert "90 days" in event.message
    # The link in the email opens the partner's consent page.
    link = re.search(r"http://127\.0\.0\.1:8000(\S+)", mail.outbox[0].body)
    assert link and client.get(link.group(1)).status_code == 200


@pytest.mark.parametrize(
    ("code", "kind", "words"),
    [(50076, "mfa_required", "multi-factor"), (53003, "conditional_access", "Conditional Access")],
)
def test_mfa_and_conditional_access_answers_say_so(
    cpv_sim, django_capture_on_commit_callbacks, code, kind, words
) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    cpv_sim.control.inject_entra_error(code, grant_type="refresh_token")

    with django_capture_on_commit_callbacks(execute=True):
        result = renew_one(partner_id=partner.pk, force=True)

    assert result.outcome == "failed"
    _assert_reconsent_needed(cpv_sim, partner, reason=words)
    assert TokenEvent.objects.filter(partner=partner, kind=kind).count() == 1


def test_invalid_client_is_an_operator_alert_and_the_partner_stays_active(cpv_sim, caplog) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    cpv_sim.control.inject_entra_error(7000215, grant_type="refresh_token")

    result = renew_one(partner_id=partner.pk, force=True)

    assert result.outcome == "failed"
    partner.refresh_from_db()
    assert partner.status == Partner.Status.ACTIVE
    assert "OPERATOR ALERT" in caplog.text
    assert TokenEvent.objects.filter(partner=partner, kind="operator_alert").count() == 1
    assert token_status(partner, pointer_of(partner)) == TokenStatus.FAILING
    assert len(mail.outbox) == 0
    assert len(redemptions(cpv_sim)) == 1


def test_a_429_with_retry_after_is_honoured(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    cpv_sim.control.inject_entra_error(50196, status=429, retry_after=2, grant_type="refresh_token")

    result = renew_one_retrying(partner_id=partner.pk, force=True)

    assert result.outcome == "renewed"
    attempts = redemptions(cpv_sim)
    assert [e["status"] for e in attempts] == [429, 200]
    assert at(attempts[1]) - at(attempts[0]) >= 2.0
    assert TokenEvent.objects.filter(partner=partner, kind="retrying").count() == 1


def test_transient_500s_retry_and_then_succeed(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    cpv_sim.control.inject_entra_error(50000, grant_type="refresh_token", times=2)
    waits: list[float] = []

    result = renew_one_retrying(partner_id=partner.pk, force=True, sleep=waits.append)

    assert result.outcome == "renewed"
    assert [e["status"] for e in redemptions(cpv_sim)] == [500, 500, 200]
    # Exponential backoff with jitter: the second wait is drawn from a range twice as high.
    assert 1.0 <= waits[0] <= 2.0 and 2.0 <= waits[1] <= 4.0
    assert token_status(partner, pointer_of(partner)) == TokenStatus.HEALTHY


def test_a_failure_that_never_ends_stops_after_the_bound(cpv_sim, settings) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_RENEWAL_MAX_ATTEMPTS = 3
    partner = active_partner(cpv_sim)
    cpv_sim.control.inject_entra_error(90033, grant_type="refresh_token", times=None)

    result = renew_one_retrying(partner_id=partner.pk, force=True, sleep=lambda _: None)

    assert result.outcome == "failed"
    assert [e["status"] for e in redemptions(cpv_sim)] == [503, 503, 503]
    pointer = pointer_of(partner)
    assert pointer.failure_count == 3 and pointer.next_attempt_at is not None
    assert token_status(partner, pointer) == TokenStatus.FAILING
    assert TokenEvent.objects.filter(partner=partner, kind="gave_up").count() == 1
    # The sweep leaves it until next_attempt_at, in the database rather than on the broker.
    make_due(partner)
    assert renewal_sweep().queued == []


def test_a_single_attempt_raises_renewal_retry_for_a_transient_error(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    cpv_sim.control.inject_entra_error(50196, status=429, retry_after=7, grant_type="refresh_token")

    with pytest.raises(RenewalRetry) as raised:
        renew_one(partner_id=partner.pk, force=True)

    assert raised.value.delay >= 7
    assert pointer_of(partner).failure_count == 1


def test_the_sweep_queues_due_partners_once_even_when_run_twice(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    due = active_partner(cpv_sim, index=0)
    active_partner(cpv_sim, index=1)
    make_due(due)

    first = renewal_sweep()
    second = renewal_sweep()

    assert [p for p, _ in first.queued] == [due.pk]
    assert 0 <= first.queued[0][1] < 3600
    assert second.queued == []


def test_renewal_stops_before_the_vault_version_budget(cpv_sim, caplog) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    PartnerToken.objects.filter(partner=partner).update(version_count=495)

    result = renew_one(partner_id=partner.pk, force=True)

    assert result.outcome == "failed" and "495" in result.message
    assert redemptions(cpv_sim) == []
    assert "OPERATOR ALERT" in caplog.text
    assert TokenEvent.objects.filter(partner=partner, kind="budget").count() == 1


def test_access_tokens_are_cached_and_rotate_only_a_due_token(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    generation = pointer_of(partner).generation

    first = access_token_get(partner=partner, audience=PARTNER_CENTER)
    again = access_token_get(partner=partner, audience=PARTNER_CENTER)
    graph = access_token_get(partner=partner, audience=GRAPH)

    assert first.token == again.token and graph.token != first.token
    assert len(redemptions(cpv_sim)) == 2
    # A fresh token is not rotated into the vault (the version budget); a due one is.
    assert pointer_of(partner).generation == generation
    make_due(partner)
    cache_forget()
    access_token_get(partner=partner, audience=PARTNER_CENTER)
    pointer = pointer_of(partner)
    assert pointer.generation == generation + 1
    assert TokenEvent.objects.filter(partner=partner, kind="rotated").count() == 1
    assert token_status(partner, pointer) == TokenStatus.HEALTHY


def test_an_access_token_request_that_finds_a_revoked_consent_marks_the_partner(
    cpv_sim, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    cpv_sim.control.revoke_user(cpv_sim.world.partners[0].users[0].oid)

    from microsoft.identity import ReconsentRequired

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ReconsentRequired):
        access_token_get(partner=partner)

    _assert_reconsent_needed(cpv_sim, partner, reason="consent again")


def test_an_answer_without_a_new_refresh_token_is_not_a_renewal(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    make_due(partner)
    before = pointer_of(partner)
    cpv_sim.control.inject_fault(
        "entra",
        status=200,
        path=r".*/oauth2/v2.0/token",
        body={"token_type": "Bearer", "access_token": "SIMCANARY-a", "expires_in": 3600, "scope": "x"},
    )

    result = renew_one(partner_id=partner.pk)

    assert result.outcome == "failed"
    after = pointer_of(partner)
    assert after.current_version == before.current_version and after.last_renewed_at == before.last_renewed_at
    assert "no new refresh token" in after.last_error
    assert not AuditEvent.objects.filter(partner=partner, action="partner.token_renewed").exists()


def test_the_sweep_claims_the_most_overdue_first_up_to_the_vaults_write_limit_and_spaces_them_evenly(
    cpv_sim, settings
) -> None:  # type: ignore[no-untyped-def]
    partners = [active_partner(cpv_sim, index=n) for n in range(2)]
    # Due for 9 and 20 days.
    for partner, days in zip(partners, (9, 20), strict=True):
        PartnerToken.objects.filter(partner=partner).update(last_renewed_at=timezone.now() - timedelta(days=days))

    assert [p for p, _ in renewal_sweep(limit=1).queued] == [partners[1].pk]
    assert [p for p, _ in renewal_sweep(limit=1).queued] == [partners[0].pk]
    PartnerToken.objects.update(renewal_queued_at=None)
    # Evenly over the spread (no more than the broker's longest countdown allows).
    window = min(SPREAD_SECONDS, max_countdown())
    assert renewal_sweep().queued == [(partners[1].pk, 0.0), (partners[0].pk, window / 2)]

    # The limit is Key Vault's: each renewal is one secret create, paced at CPV_VAULT_CREATES_PER_SECOND.
    settings.VAULT_BACKEND, settings.CPV_VAULT_CREATES_PER_SECOND = "azure", 29
    assert sweep_capacity() == 29 * SWEEP_EVERY_SECONDS
    settings.CPV_VAULT_CREATES_PER_SECOND = 0
    assert sweep_capacity() is None
    settings.VAULT_BACKEND, settings.CPV_VAULT_CREATES_PER_SECOND = "local", 29
    assert sweep_capacity() is None
