"""The audit log in words: labels for actions, the actor's name, values as a person writes them, an action filter
chosen from a list."""

from __future__ import annotations

import pytest

from partners.access import Role
from partners.audit_words import action_label, detail_in_words, value_in_words
from partners.models import AuditEvent, Partner
from partners.services import audit_record, staff_role_set
from tests.factories import client_for

pytestmark = pytest.mark.django_db


def test_each_known_action_has_a_label_and_an_unknown_one_is_spelled_out() -> None:
    assert action_label("partner.invited") == "Invited the partner"
    assert action_label("partner.consents_applied") == "Applied ApplicationConsent to a batch of customers"
    assert action_label("billing.plan_changed") == "Billing: plan changed"


def test_values_are_written_in_words() -> None:
    assert value_in_words(True) == "yes" and value_in_words(False) == "no"
    assert value_in_words(None) == "—"
    assert value_in_words(["AADSTS700082", "invalid_grant"]) == "AADSTS700082, invalid_grant"
    assert value_in_words({"emailed": False, "previous_status": "active"}) == "Emailed: no; Previous status: Active"
    assert detail_in_words({"emailed": True, "some_new_key": None}) == [("Emailed", "yes"), ("Some new key", "—")]
    assert detail_in_words(
        {"previous_status": "reconsent_needed", "cloud": "global", "started_at": "2026-12-03T16:04:05.123+01:00"}
    ) == [
        ("Previous status", "Re-consent needed"),
        ("Cloud", "Microsoft global cloud"),
        ("Started at", "2026-12-03 15:04:05 UTC"),
    ]


def test_the_page_shows_labels_names_and_values_in_words_not_python(client, admin_user, operator) -> None:  # type: ignore[no-untyped-def]
    operator.first_name, operator.last_name = "Otto", "Operator"
    operator.save()
    partner = Partner.objects.create(name="Alpha Partners", contact_email="a@example.com")
    audit_record(actor=operator, action="partner.invited", partner=partner, detail={"emailed": True, "x": None})
    staff_role_set(actor=admin_user, user=operator, role=Role.VIEWER)

    page = client_for(admin_user).get("/audit/").content.decode()

    assert "Invited the partner" in page and "Changed a staff member&#x27;s role" in page
    assert "Otto Operator (otto-operator)" in page
    assert "Staff account otto-operator" in page
    assert "Emailed: yes" in page
    assert "True" not in page and "None" not in page and "auth.user" not in page
    assert "partner.invited" not in page.replace('title="partner.invited"', "").replace('value="partner.invited"', "")


def test_the_action_filter_is_a_list_of_labelled_actions(admin_user) -> None:  # type: ignore[no-untyped-def]
    partner = Partner.objects.create(name="Alpha Partners", contact_email="a@example.com")
    audit_record(actor=None, action="partner.invited", partner=partner)
    audit_record(actor=None, action="partner.deactivated", partner=partner)
    audit_record(actor=None, action="custom.thing_done", partner=partner)
    client = client_for(admin_user)

    page = client.get("/audit/").content.decode()
    assert '<select name="action"' in page
    assert '<option value="partner.invited">Invited the partner</option>' in page
    assert '<option value="custom.thing_done">Custom: thing done</option>' in page

    only = client.get("/audit/", {"action": "partner.invited"}).content.decode()
    assert "Invited the partner" in only and "Deactivated the partner</td>" not in only
    area = client.get("/audit/", {"action": "partner."}).content.decode()
    assert "3 events" not in area and "2 events" in area


def test_an_action_not_in_the_list_is_refused_with_an_error(admin_user) -> None:  # type: ignore[no-untyped-def]
    AuditEvent.objects.create(actor_label="system", action="partner.invited")

    page = client_for(admin_user).get("/audit/", {"action": "'; drop table"}).content.decode()

    assert "Select a valid choice" in page
