"""Needs attention includes partners stuck in onboarding, with the reason in words: failed consent attempts,
a consent started and never finished, an invitation about to expire with nobody signed in."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from consent.models import ConsentFlow
from dashboard import selectors
from partners.models import Partner
from partners.services import audit_record
from tests.factories import client_for

pytestmark = pytest.mark.django_db


def invited(name: str, *, days_ago: float = 0, status: str = Partner.Status.INVITED) -> Partner:
    """A partner invited `days_ago` (with no audit row of a later link, its link was issued when it was created)."""
    partner = Partner.objects.create(name=name, contact_email=f"{name.split()[0].lower()}@example.com", status=status)
    Partner.objects.filter(pk=partner.pk).update(created_at=timezone.now() - timedelta(days=days_ago))
    return partner


def attempt(partner: Partner, *, status: str, reason: str = "", hours_ago: float = 1, expired: bool = True) -> Any:
    now = timezone.now()
    flow = ConsentFlow.objects.create(
        partner=partner,
        status=status,
        failure_reason=reason,
        expires_at=now - timedelta(minutes=1) if expired else now + timedelta(minutes=10),
    )
    ConsentFlow.objects.filter(pk=flow.pk).update(created_at=now - timedelta(hours=hours_ago))
    return flow


def reasons() -> dict[str, list[str]]:
    return {p.name: p.reasons for p in selectors.needs_attention()}


def test_three_failed_attempts_are_counted_with_the_last_reason_in_words() -> None:
    partner = invited("Alpha Partners", days_ago=1)
    attempt(partner, status="failed", reason="no_mfa", hours_ago=5)
    attempt(partner, status="declined", reason="declined", hours_ago=4)
    attempt(partner, status="failed", reason="not_global_admin", hours_ago=3)

    assert reasons()["Alpha Partners"] == ["3 failed consent attempts, the last: not a Global Administrator"]


def test_failures_before_the_last_consent_are_not_counted() -> None:
    partner = invited("Bravo Partners", days_ago=1, status=Partner.Status.RECONSENT_NEEDED)
    attempt(partner, status="failed", reason="no_mfa", hours_ago=9)
    attempt(partner, status="vaulted", hours_ago=8)
    attempt(partner, status="failed", reason="conditional_access", hours_ago=2)

    assert reasons()["Bravo Partners"] == [
        "Re-consent needed",
        "A failed consent attempt, the last: blocked by a Conditional Access policy",
    ]


def test_a_consent_started_and_never_finished_is_flagged() -> None:
    partner = invited("Charlie Partners", days_ago=1)
    attempt(partner, status="redirected", hours_ago=3)
    still_going = invited("Delta Partners", days_ago=1)
    attempt(still_going, status="redirected", hours_ago=0.01, expired=False)
    expired = invited("Echo Partners", days_ago=1)
    attempt(expired, status="expired", reason="expired", hours_ago=30)

    found = reasons()

    assert found["Charlie Partners"] == ["Started a consent 3 hours ago and never finished"]
    assert "Delta Partners" not in found
    assert found["Echo Partners"] == ["A failed consent attempt, the last: started and never finished"]


def test_an_invitation_about_to_expire_with_nobody_signed_in_is_flagged(settings) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_INVITATION_MAX_AGE_DAYS = 14
    invited("Fresh Invite", days_ago=1)
    invited("Ending Invite", days_ago=12)
    invited("Expired Invite", days_ago=20)
    signed_in = invited("Signed In", days_ago=12)
    attempt(signed_in, status="redirected", hours_ago=0.01, expired=False)

    found = reasons()

    assert "Fresh Invite" not in found and "Signed In" not in found
    assert found["Ending Invite"] == ["Invitation expires in 2 days, nobody has signed in"]
    assert found["Expired Invite"] == ["Invitation expired 6 days ago, nobody signed in: send a new link"]


def test_a_new_link_restarts_the_invitations_clock(settings) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_INVITATION_MAX_AGE_DAYS = 14
    partner = invited("Relinked", days_ago=13)
    audit_record(actor=None, action="partner.reconsent_link_created", partner=partner)

    assert "Relinked" not in reasons()


def test_the_overview_shows_the_reasons_and_active_partners_are_not_onboarding(viewer) -> None:  # type: ignore[no-untyped-def]
    partner = invited("Alpha Partners", days_ago=1)
    attempt(partner, status="failed", reason="not_admin_agent")
    active = invited("Active Co", days_ago=30, status=Partner.Status.ACTIVE)
    attempt(active, status="failed", reason="no_mfa")

    page = client_for(viewer).get("/").content.decode()

    assert "A failed consent attempt, the last: not an Admin Agent in Partner Center" in page
    assert "Active Co" not in page
