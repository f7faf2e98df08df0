"""The dashboard's actions: confirmed POSTs for operators, each audited with the acting user; long ones queue
the background tasks after the commit and report their progress; the sign-in's lockout; staff management."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from customers import scheduling
from customers import tasks as customer_tasks
from customers.models import ConsentWork
from dashboard import operations
from partners.access import Role, role_of
from partners.models import AuditEvent, Partner
from partners.services import PartnerError
from tests.factories import PASSWORD, active_partner_with_data, client_for
from tokens import tasks as token_tasks
from tokens.models import PartnerToken, TokenEvent
from tokens.outcomes import RenewalOutcome, RenewalResult
from tokens.selectors import HEALTH_CHOICES, token_health_expression, token_health_filter, token_status
from tokens.store import partner_token_import
from tokens.vault import get_vault

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, dict[str, Any]]]:  # type: ignore[no-untyped-def]
    """What would reach the broker: (task name, kwargs) per apply_async, patched where the service calls it."""
    calls: list[tuple[str, dict[str, Any]]] = []
    for task in (
        token_tasks.token_renew,
        customer_tasks.customers_sync,
        customer_tasks.application_consent_batch,
        customer_tasks.application_consent_next,
    ):
        monkeypatch.setattr(task, "apply_async", lambda *a, _n=task.name, **kw: calls.append((_n, kw["kwargs"])))
    return calls


@pytest.mark.parametrize(
    ("action", "task", "audit"),
    [
        ("renew", "consent.token_renew", "partner.renewal_requested"),
        ("sync", "consent.customers_sync", "partner.sync_requested"),
        ("apply", "consent.application_consent_next", "partner.consents_requested"),
        ("apply_failed", "consent.application_consent_next", "partner.consents_requested"),
    ],
)
def test_an_operator_confirms_a_long_action_and_its_tasks_are_queued_after_the_commit(
    action, task, audit, operator, sent, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner_with_data("Contoso", customers=4, failed=2)
    client = client_for(operator)

    confirm = client.get(f"/partners/{partner.code}/do/{action}")
    assert confirm.status_code == 200 and b'name="confirmed" value="yes"' in confirm.content
    assert not AuditEvent.objects.filter(action=audit).exists() and not sent
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/partners/{partner.code}/do/{action}", {"confirmed": "yes"})

    assert response.status_code == 302 and response["Location"] == f"/partners/{partner.code}/"
    event = AuditEvent.objects.get(action=audit)
    assert event.actor == operator and event.actor_label == "otto-operator" and event.partner == partner
    assert {name for name, _ in sent} == {task}
    expected = {"renew": 1, "sync": 1, "apply": 2, "apply_failed": 2}[action]
    # ApplicationConsent goes through the fair schedule: its customers wait there under the operation's id, in the
    # class that fits (retrying failures is a repair), and one puller is started for them.
    work = ConsentWork.objects.filter(correlation_id=event.detail["operation"])
    queued = work.count() if action.startswith("apply") else 1
    assert queued == expected == event.detail["total"]
    assert {w.kind for w in work} == {"apply": {"new"}, "apply_failed": {"repair"}}.get(action, set())
    assert len(sent) == 1
    page = client.get(f"/partners/{partner.code}/").content.decode()
    assert f'data-progress-url="/partners/{partner.code}/operations/{event.detail["operation"]}"' in page


def batch_closed(partner: Partner, *, failed: bool) -> None:
    """A puller claims the partner's next customer and closes it, applied or refused."""
    owner = str(uuid.uuid4())
    claim = scheduling.consent_work_claim(owner=owner, size=1)
    assert claim is not None and claim.partner_id == partner.pk
    scheduling.consent_work_finish(
        owner=owner,
        partner_id=partner.pk,
        customer_ids=claim.customer_ids,
        failed_ids=claim.customer_ids if failed else [],
        retry_ids=[],
        retry_in=1,
    )


def test_the_progress_of_an_operation_is_what_the_schedule_closed_of_it(operator, sent) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner_with_data("Contoso", customers=4, failed=2)
    client = client_for(operator)
    apply = operations.operation_start(actor=operator, partner=partner, kind=operations.APPLY_FAILED)
    renew = operations.operation_start(actor=operator, partner=partner, kind=operations.RENEW)
    url = f"/partners/{partner.code}/operations/{apply.detail['operation']}"

    before = client.get(url, HTTP_ACCEPT="application/json").json()
    # The fair schedule hands its customers out one at a time here: the first is applied, the second refused again.
    batch_closed(partner, failed=False)
    half = client.get(url, HTTP_ACCEPT="application/json").json()
    batch_closed(partner, failed=True)
    done = client.get(url, HTTP_ACCEPT="application/json").json()
    TokenEvent.objects.create(partner=partner, kind=TokenEvent.Kind.RENEWED, message="renewed")
    renewed = operations.operation_progress(renew)

    assert (before["state"], before["done"], before["total"]) == ("queued", 0, 2)
    assert (half["state"], half["done"], half["percent"]) == ("running", 1, 50)
    assert (done["state"], done["done"], done["failed"], done["finished"]) == ("failed", 2, 1, True)
    assert renewed.state == "done" and renewed.finished
    html = client.get(url)
    assert b"1 applied, 1 failed." in html.content
    [audit] = AuditEvent.objects.filter(action="partner.consents_finished")
    assert audit.detail == {"operation": apply.detail["operation"], "tried": 2, "failed": 1}


@pytest.mark.parametrize("kind", [TokenEvent.Kind.RENEWED, TokenEvent.Kind.ROTATED])
def test_renew_now_is_done_whichever_way_the_token_moved(operator, sent, kind) -> None:  # type: ignore[no-untyped-def]
    # An access-token request that rotated the token meanwhile (and kept it) moved it as much as the renewal did.
    partner = active_partner_with_data("Contoso")
    renew = operations.operation_start(actor=operator, partner=partner, kind=operations.RENEW)
    TokenEvent.objects.create(partner=partner, kind=TokenEvent.Kind.RECONCILED, message="stray versions disabled")
    TokenEvent.objects.create(partner=partner, kind=kind, message="moved")

    progress = operations.operation_progress(renew)

    assert (progress.state, progress.failed, progress.message) == ("done", 0, "Renewed.")


@pytest.mark.parametrize("outcome", list(RenewalOutcome))
def test_the_operations_page_reads_a_renewal_outcome_as_renew_tokens_does(operator, sent, monkeypatch, outcome) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner_with_data("Contoso")
    renew = operations.operation_start(actor=operator, partner=partner, kind=operations.RENEW)
    monkeypatch.setattr(operations, "_task_state", lambda task_id: ("SUCCESS", {"outcome": str(outcome)}))

    progress = operations.operation_progress(renew)

    assert progress.state == ("done" if RenewalResult(partner.pk, outcome).ok else "failed")
    assert progress.message == outcome.in_words
    assert RenewalResult(partner.pk, RenewalOutcome.SKIPPED).ok is False


def test_a_stale_operation_says_that_no_worker_picked_it_up(operator, sent) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner_with_data("Contoso")
    event = operations.operation_start(actor=operator, partner=partner, kind=operations.SYNC)

    later = operations.operation_progress(event, now=timezone.now() + timedelta(minutes=11))

    assert later.state == "stale" and "Celery workers" in later.message


def test_long_actions_need_an_active_partner(operator, sent) -> None:  # type: ignore[no-untyped-def]
    partner = Partner.objects.create(name="Invited Co", contact_email="a@b.example")
    client = client_for(operator)

    response = client.post(f"/partners/{partner.code}/do/sync", {"confirmed": "yes"}, follow=True)

    assert "is not available while Invited Co is invited" in response.content.decode()
    assert not sent and not AuditEvent.objects.filter(action="partner.sync_requested").exists()
    # The service refuses too, whatever calls it.
    with pytest.raises(PartnerError, match="needs an active partner"):
        operations.operation_start(actor=operator, partner=partner, kind=operations.SYNC)


def actions_shown(client, partner) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    page = client.get(f"/partners/{partner.code}/").content.decode()
    if 'id="actions"' not in page:
        return []
    start = page.index('id="actions"')
    nav = page[start : page.index("</nav>", start)]
    return re.findall(r'class="button ?([a-z]*)" href="[^"]+" id="action-([a-z-]+)"', nav)


def test_an_invited_partner_is_offered_a_consent_link_first_then_deactivation_and_deletion(operator) -> None:  # type: ignore[no-untyped-def]
    partner = Partner.objects.create(name="Invited Co", contact_email="a@b.example")

    shown = actions_shown(client_for(operator), partner)

    assert shown == [("", "reconsent-link"), ("danger", "deactivate"), ("danger", "delete")]
    confirm = client_for(operator).get(f"/partners/{partner.code}/do/renew")
    assert confirm.status_code == 302 and confirm["Location"] == f"/partners/{partner.code}/"


def test_an_active_partner_is_offered_what_its_state_allows(operator) -> None:  # type: ignore[no-untyped-def]
    with_failures = active_partner_with_data("Contoso", customers=4, failed=2)
    without = active_partner_with_data("Fabrikam", customers=3, failed=0)

    assert [name for _style, name in actions_shown(client_for(operator), with_failures)] == [
        "renew", "sync", "apply", "apply-failed", "verify", "reconsent-link", "revoke", "offboard", "deactivate"
    ]  # fmt: skip
    assert "apply-failed" not in [name for _style, name in actions_shown(client_for(operator), without)]
    Partner.objects.filter(pk=without.pk).update(status=Partner.Status.DEACTIVATED)
    assert actions_shown(client_for(operator), without) == [("", "reactivate")]


def test_a_viewer_can_neither_confirm_nor_run_an_action(viewer, sent) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner_with_data("Contoso")
    client = client_for(viewer)

    assert client.get(f"/partners/{partner.code}/do/deactivate").status_code == 403
    assert client.post(f"/partners/{partner.code}/do/deactivate", {"confirmed": "yes"}).status_code == 403
    assert (
        client.post(
            "/partners/bulk", {"action": "deactivate", "partners": str(partner.code), "confirmed": "True"}
        ).status_code
        == 403
    )

    partner.refresh_from_db()
    assert partner.status == Partner.Status.ACTIVE
    assert not AuditEvent.objects.filter(action="partner.deactivated").exists()
    page = client.get(f"/partners/{partner.code}/").content.decode()
    assert 'id="actions"' not in page


def test_revoking_disables_the_token_in_the_vault_and_marks_the_partner(sim_settings, operator) -> None:  # type: ignore[no-untyped-def]
    partner = Partner.objects.create(name="Fabrikam", contact_email="a@f.example", tenant_id=uuid.uuid4())
    partner_token_import(actor=None, partner=partner, refresh_token="refresh-" + "x" * 40)
    pointer = PartnerToken.objects.get(partner=partner)
    client = client_for(operator)

    response = client.post(f"/partners/{partner.code}/do/revoke", {"confirmed": "yes", "reason": "Contract ended"})

    assert response.status_code == 302
    versions = {v.version: v.enabled for v in get_vault().versions(name=pointer.secret_name)}
    assert versions[pointer.current_version] is False
    partner.refresh_from_db()
    assert partner.status == Partner.Status.RECONSENT_NEEDED and partner.status_reason == "Contract ended"
    event = AuditEvent.objects.get(action="partner.token_revoked")
    assert event.actor == operator and event.detail["versions_disabled"] == [pointer.current_version]
    page = client.get(f"/partners/{partner.code}/").content.decode()
    assert "Invalid: re-consent needed" in page and "refresh-" not in page


def test_a_revoked_token_stays_invalid_everywhere_once_the_partner_is_deactivated(  # type: ignore[no-untyped-def]
    sim_settings, operator, capsys
) -> None:
    import json

    from django.core.management import call_command

    partner = Partner.objects.create(name="Fabrikam", contact_email="a@f.example", tenant_id=uuid.uuid4())
    partner_token_import(actor=None, partner=partner, refresh_token="refresh-" + "x" * 40)
    client = client_for(operator)
    client.post(f"/partners/{partner.code}/do/revoke", {"confirmed": "yes", "reason": "Contract ended"})
    client.post(f"/partners/{partner.code}/do/deactivate", {"confirmed": "yes", "reason": ""})
    partner.refresh_from_db()
    assert partner.status == Partner.Status.DEACTIVATED

    page = client.get(f"/partners/{partner.code}/").content.decode()
    listed = client.get("/partners/", {"health": "invalid"}).content.decode()
    csv = b"".join(client.get("/partners.csv").streaming_content).decode()
    call_command("partners", "--json")

    assert "Invalid: re-consent needed" in page and "Healthy" not in page
    assert 'id="next-renewal">none: the token no longer works' in page
    assert "Fabrikam" in listed
    assert "Invalid: re-consent needed" in csv and "Healthy" not in csv
    assert json.loads(capsys.readouterr().out)[0]["token_status"] == "invalid"


def test_deactivating_and_a_consent_link_are_audited_with_the_operator(operator) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner_with_data("Contoso")
    client = client_for(operator)

    link = client.post(f"/partners/{partner.code}/do/reconsent_link", {"confirmed": "yes"}, follow=True)
    client.post(f"/partners/{partner.code}/do/deactivate", {"confirmed": "yes", "reason": ""})

    assert b"A new consent link for Contoso" in link.content
    partner.refresh_from_db()
    assert partner.status == Partner.Status.DEACTIVATED
    actions = dict(AuditEvent.objects.filter(partner=partner).values_list("action", "actor_label"))
    assert actions["partner.reconsent_link_created"] == "otto-operator"
    assert actions["partner.deactivated"] == "otto-operator"


def test_bulk_actions_confirm_the_selection_then_run_on_each_partner(
    operator, sent, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    a = active_partner_with_data("Alpha")
    b = active_partner_with_data("Bravo")
    invited = Partner.objects.create(name="Charlie", contact_email="c@c.example")
    client = client_for(operator)
    codes = [str(a.code), str(b.code), str(invited.code)]

    confirm = client.post("/partners/bulk", {"action": "sync", "partners": codes, "back": "/partners/?status=active"})
    assert confirm.status_code == 200 and b"Alpha" in confirm.content and b"Charlie" in confirm.content
    assert not sent
    with django_capture_on_commit_callbacks(execute=True):
        done = client.post(
            "/partners/bulk",
            {"action": "sync", "partners": codes, "confirmed": "True", "back": "/partners/?status=active"},
        )

    assert done.status_code == 302 and done["Location"] == "/partners/?status=active"
    assert sorted(kw["partner_id"] for _, kw in sent) == sorted([a.pk, b.pk])
    assert AuditEvent.objects.filter(action="partner.sync_requested", actor=operator).count() == 2
    followed = client.get("/partners/").content.decode()
    assert "Skipped Charlie" in followed


def test_bulk_refuses_a_link_back_to_another_site(operator, sent) -> None:  # type: ignore[no-untyped-def]
    a = active_partner_with_data("Alpha")
    response = client_for(operator).post(
        "/partners/bulk", {"action": "sync", "partners": [str(a.code)], "confirmed": "True", "back": "//evil.example/"}
    )
    assert response["Location"] == "/partners/"


def test_token_health_in_sql_agrees_with_the_renewal_service() -> None:
    now = timezone.now()
    cases = {
        "none": dict(current_version=""),
        "healthy": dict(last_renewed_at=now - timedelta(days=1)),
        "due": dict(last_renewed_at=now - timedelta(days=30)),
        "never": dict(last_renewed_at=None),
        "failing": dict(last_renewed_at=now - timedelta(days=2), last_failure_at=now - timedelta(days=1)),
        "recovered": dict(last_renewed_at=now - timedelta(days=1), last_failure_at=now - timedelta(days=2)),
        "failing_never": dict(last_renewed_at=None, last_failure_at=now),
        "revoked": dict(last_renewed_at=now - timedelta(days=1), revoked_at=now),
        "dead": dict(
            last_renewed_at=now - timedelta(days=2), last_failure_at=now, last_error_kind="reconsent_required"
        ),
        "dead_then_renewed": dict(
            last_renewed_at=now, last_failure_at=now - timedelta(days=1), last_error_kind="mfa_required"
        ),
    }
    for name, fields in cases.items():
        for status in (Partner.Status.ACTIVE, Partner.Status.RECONSENT_NEEDED, Partner.Status.DEACTIVATED):
            partner = Partner.objects.create(name=f"{name}-{status}", contact_email="a@b.example", status=status)
            PartnerToken.objects.create(
                partner=partner, secret_name=f"s-{partner.code}", **{"current_version": "v1", **fields}
            )
    Partner.objects.create(name="tokenless", contact_email="a@b.example")

    for partner in Partner.objects.select_related("token").annotate(health=token_health_expression(now=now)):
        pointer = getattr(partner, "token", None) if hasattr(partner, "token") else None
        assert partner.health == token_status(partner, pointer, now=now), partner.name
    # The list's filter by health selects the same partners from the token's columns.
    by_health = dict(Partner.objects.annotate(health=token_health_expression(now=now)).values_list("name", "health"))
    for health, _ in HEALTH_CHOICES:
        filtered = set(Partner.objects.filter(token_health_filter(health, now=now)).values_list("name", flat=True))
        assert filtered == {name for name, h in by_health.items() if h == health}, health


def test_sign_in_locks_an_account_after_five_failures_even_for_the_right_password(client, viewer) -> None:  # type: ignore[no-untyped-def]
    for _ in range(5):
        failed = client.post("/accounts/login/", {"username": "vera-viewer", "password": "wrong"})
        assert b"did not match" in failed.content

    locked = client.post("/accounts/login/", {"username": "vera-viewer", "password": PASSWORD})

    assert locked.status_code == 200 and b"Too many failed sign-ins" in locked.content
    assert "_auth_user_id" not in client.session


def test_sign_in_locks_an_address_that_guesses_many_accounts(client, viewer) -> None:  # type: ignore[no-untyped-def]
    for i in range(20):
        client.post("/accounts/login/", {"username": f"guess-{i}", "password": "wrong"})

    locked = client.post("/accounts/login/", {"username": "vera-viewer", "password": PASSWORD})

    assert b"Too many failed sign-ins" in locked.content


def test_a_successful_sign_in_clears_the_accounts_count(client, viewer) -> None:  # type: ignore[no-untyped-def]
    for _ in range(4):
        client.post("/accounts/login/", {"username": "vera-viewer", "password": "wrong"})
    assert client.post("/accounts/login/", {"username": "vera-viewer", "password": PASSWORD}).status_code == 302
    client.logout()
    for _ in range(4):
        client.post("/accounts/login/", {"username": "vera-viewer", "password": "wrong"})

    assert client.post("/accounts/login/", {"username": "vera-viewer", "password": PASSWORD}).status_code == 302


def test_sessions_end_at_browser_close_and_after_eight_hours(settings) -> None:  # type: ignore[no-untyped-def]
    assert settings.SESSION_EXPIRE_AT_BROWSER_CLOSE is True
    assert settings.SESSION_COOKIE_AGE == 8 * 60 * 60


def test_an_admin_manages_staff_roles_and_each_change_is_audited(admin_user, django_user_model) -> None:  # type: ignore[no-untyped-def]
    client = client_for(admin_user)

    created = client.post(
        "/staff/",
        {
            "what": "create",
            "new-username": "new-op",
            "new-email": "op@v.example",
            "new-password": "correct-horse-battery-9",
            "new-role": "2",
        },
    )
    user = django_user_model.objects.get(username="new-op")
    assert created.status_code == 302 and role_of(user) == Role.OPERATOR
    client.post("/staff/", {"what": "role", "username": "new-op", "role": "1"})
    user = django_user_model.objects.get(username="new-op")
    assert role_of(user) == Role.VIEWER
    client.post("/staff/", {"what": "active", "username": "new-op", "active": ""})
    assert not django_user_model.objects.get(username="new-op").is_active
    lowered = client.post("/staff/", {"what": "role", "username": "ada-admin", "role": "0"}, follow=True)
    assert b"cannot lower your own role" in lowered.content

    events = list(
        AuditEvent.objects.filter(action__startswith="staff.").order_by("id").values_list("action", "actor_label")
    )
    assert ("staff.created", "ada-admin") in events
    assert events.count(("staff.role_set", "ada-admin")) == 2
    assert ("staff.disabled", "ada-admin") in events


def test_the_settings_page_shows_the_configuration_without_secrets(admin_user, settings) -> None:  # type: ignore[no-untyped-def]
    page = client_for(admin_user).get("/settings/").content.decode()

    assert "Tokens are renewed every" in page and "Django secret key" in page
    assert settings.SECRET_KEY not in page
    for key in settings.VAULT_KEYS:
        assert key.hex() not in page


def test_the_settings_page_checks_the_authority_partner_center_and_the_vault(sim_settings, admin_user) -> None:  # type: ignore[no-untyped-def]
    page = client_for(admin_user).get("/settings/?check=1").content.decode()

    assert page.count("<td>OK</td>") == 3, page[page.find('id="checks"') :][:2000]
