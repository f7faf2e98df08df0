"""The GDAP pre-flight's verdict for one customer, from what Graph listed: the first missing piece, in order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from customers.access import CONSENT_ROLES, GLOBAL_ADMINISTRATOR, verdict_for
from customers.models import CustomerConsent
from customers.words import access_words
from microsoft.graph import GdapAssignment, GdapRelationship

Access = CustomerConsent.Access
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
CLOUD_APP_ADMIN = "158c047a-c907-4556-b7ef-446551a6b5f7"
PRIVILEGED_ROLE_ADMIN = "e8611ab8-c189-46e8-94e1-60213ab1f814"
DIRECTORY_READERS = "88d8e3e3-8f55-4a1e-953a-9b9898b8876b"
GROUP = "4f1b3a9e-0000-4000-8000-000000000001"
CUSTOMER = "52eaad04-13a2-4a2f-9ce8-93a294fadf36"


def relationship(
    *,
    id: str = "rel-1",
    status: str = "active",
    roles: tuple[str, ...] = (CLOUD_APP_ADMIN, DIRECTORY_READERS),
    name: str = "Contoso admin relationship",
    end: datetime | None = NOW + timedelta(days=400),
    auto_extend: str = "P180D",
    created: datetime | None = NOW - timedelta(days=300),
) -> GdapRelationship:
    return GdapRelationship(
        id=id,
        display_name=name,
        customer_tenant_id=CUSTOMER,
        status=status,
        roles=frozenset(roles),
        created_at=created,
        end_at=end,
        auto_extend=auto_extend,
    )


def assignment(
    *, roles: tuple[str, ...] = (CLOUD_APP_ADMIN,), status: str = "active", group: str = GROUP
) -> GdapAssignment:
    return GdapAssignment(id=f"as-{group[-4:]}-{status}", group_id=group, status=status, roles=frozenset(roles))


def verdict(rels, assignments=None, member_of=(GROUP,), admin_agent=True):  # type: ignore[no-untyped-def]
    found = {r.id: assignments if assignments is not None else [assignment()] for r in rels}
    return verdict_for(rels, assignments=found, member_of=set(member_of), admin_agent=admin_agent, now=NOW)


def words(found) -> str:  # type: ignore[no-untyped-def]
    return access_words(CustomerConsent(access=found.access, access_detail=found.detail))


def test_a_working_relationship_passes_with_evidence() -> None:
    found = verdict([relationship()])
    assert found.access == Access.OK and found.evidence
    assert "can consent applications" in words(found)


@pytest.mark.parametrize("role", sorted(CONSENT_ROLES))
def test_each_of_the_four_roles_microsofts_pages_name_is_enough(role: str) -> None:
    found = verdict([relationship(roles=(role,))], assignments=[assignment(roles=(role,))])
    assert found.access == Access.OK


def test_no_relationship_at_all() -> None:
    found = verdict([])
    assert found.access == Access.NO_RELATIONSHIP
    assert "no GDAP relationship" in words(found)


def test_a_request_awaiting_approval_names_its_link_and_its_expiry() -> None:
    found = verdict([relationship(status="approvalPending", created=NOW - timedelta(days=10), end=None)])
    assert found.access == Access.PENDING_APPROVAL
    text = words(found)
    assert "awaits the customer's approval" in text and "rel-1" in text
    assert (NOW + timedelta(days=80)).strftime("%-d %B %Y") in text


def test_an_ended_relationship_says_when() -> None:
    found = verdict([relationship(status="terminated", end=NOW - timedelta(days=3))])
    assert found.access == Access.ENDED and "was terminated" in words(found)
    assert verdict([relationship(status="expired", end=NOW - timedelta(days=3))]).access == Access.ENDED
    # Graph: `expiring` "The relationship has passed its expiration date".
    assert verdict([relationship(status="expiring", end=NOW - timedelta(hours=1))]).access == Access.ENDED


def test_the_read_only_relationship_of_the_dap_transition() -> None:
    found = verdict([relationship(name="MLT_8a7b_Contoso", roles=(DIRECTORY_READERS,))])
    assert found.access == Access.TRANSITION_READ_ONLY and "moved DAP to GDAP" in words(found)


def test_a_relationship_without_a_role_that_can_consent() -> None:
    found = verdict([relationship(roles=(DIRECTORY_READERS,))])
    assert found.access == Access.NO_CONSENT_ROLE and "no role that can consent" in words(found)


def test_the_role_assigned_to_no_group() -> None:
    found = verdict([relationship()], assignments=[assignment(roles=(DIRECTORY_READERS,))])
    assert found.access == Access.ROLE_UNASSIGNED and "no security group is assigned" in words(found)


def test_a_role_the_relationship_does_not_hold_counts_for_nothing() -> None:
    found = verdict(
        [relationship(roles=(DIRECTORY_READERS, CLOUD_APP_ADMIN))],
        assignments=[assignment(roles=(GLOBAL_ADMINISTRATOR,))],
    )
    assert found.access == Access.ROLE_UNASSIGNED


def test_an_assignment_not_active_yet() -> None:
    found = verdict([relationship()], assignments=[assignment(status="pending")])
    assert found.access == Access.ASSIGNMENT_INACTIVE and "pending" in words(found)


def test_the_user_outside_the_group() -> None:
    found = verdict([relationship()], member_of=())
    assert found.access == Access.NOT_IN_GROUP and GROUP in words(found)


def test_the_user_outside_admin_agents_comes_last_and_keeps_the_evidence() -> None:
    found = verdict([relationship()], admin_agent=False)
    assert found.access == Access.NOT_ADMIN_AGENT and found.evidence
    assert "AdminAgents" in words(found)


def test_ending_without_auto_extend_is_a_warning_that_passes() -> None:
    found = verdict([relationship(end=NOW + timedelta(days=10), auto_extend="PT0S")])
    assert found.access == Access.ENDING and found.evidence
    assert (NOW + timedelta(days=10)).strftime("%-d %B %Y") in words(found)
    # Auto-extended, or ending later than 30 days: no warning.
    assert verdict([relationship(end=NOW + timedelta(days=10), auto_extend="P180D")]).access == Access.OK
    assert verdict([relationship(end=NOW + timedelta(days=45), auto_extend="PT0S")]).access == Access.OK


def test_a_relationship_holding_global_administrator_cannot_auto_extend() -> None:
    ga = relationship(roles=(GLOBAL_ADMINISTRATOR,), end=NOW + timedelta(days=10), auto_extend="P180D")
    found = verdict([ga], assignments=[assignment(roles=(GLOBAL_ADMINISTRATOR,))])
    assert found.access == Access.ENDING and "Global Administrator cannot" in words(found)


def test_a_second_working_relationship_lifts_the_warning() -> None:
    ending = relationship(id="rel-1", end=NOW + timedelta(days=10), auto_extend="PT0S")
    lasting = relationship(id="rel-2")
    assert verdict([ending, lasting]).access == Access.OK


def test_an_active_relationship_wins_over_an_older_ended_one() -> None:
    found = verdict([relationship(id="old", status="expired", end=NOW - timedelta(days=400)), relationship(id="new")])
    assert found.access == Access.OK


def test_a_consented_customer_gets_the_relationship_level_verdict_only() -> None:
    ending = relationship(end=NOW + timedelta(days=10), auto_extend="PT0S")
    found = verdict_for([ending], assignments=None, member_of=set(), admin_agent=None, now=NOW)
    assert found.access == Access.ENDING and not found.evidence
    assert (
        verdict_for([], assignments=None, member_of=set(), admin_agent=None, now=NOW).access == Access.NO_RELATIONSHIP
    )


def test_the_evidence_changes_when_the_assignment_does() -> None:
    first = verdict([relationship()])
    other_group = "4f1b3a9e-0000-4000-8000-000000000002"
    second = verdict([relationship()], assignments=[assignment(group=other_group)], member_of=(other_group,))
    assert first.access == second.access == Access.OK and first.evidence != second.evidence
