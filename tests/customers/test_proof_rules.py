"""Comparing what a customer tenant holds with what ApplicationConsent sent: scopes in either separator, any order
and case; more scopes are not drift; a grant to one user does not count; a resource the tenant lacks is named."""

from __future__ import annotations

import pytest

from customers.models import CustomerConsent
from customers.proof import compare, scopes_of, sent_grants
from customers.words import APPLIED_UNVERIFIED, proof_state, proof_words
from microsoft.graph import PermissionGrant, ServicePrincipal

GRAPH_APP = "00000003-0000-0000-c000-000000000000"
EXCHANGE_APP = "00000002-0000-0ff1-ce00-000000000000"
APP_SP = "11111111-0000-4000-8000-000000000001"
GRAPH_SP = ServicePrincipal(id="22222222-0000-4000-8000-000000000002", app_id=GRAPH_APP, display_name="Microsoft Graph")


def grant(scope: str, *, resource: str = GRAPH_SP.id, consent_type: str = "AllPrincipals") -> PermissionGrant:
    return PermissionGrant(
        id=f"g-{scope[:8]}",
        client_id=APP_SP,
        resource_id=resource,
        consent_type=consent_type,
        principal_id="" if consent_type == "AllPrincipals" else "33333333-0000-4000-8000-000000000003",
        scope=scope,
    )


@pytest.mark.parametrize(
    "text",
    [
        "Directory.Read.All,User.ReadWrite.All",
        "User.ReadWrite.All Directory.Read.All",
        " user.readwrite.all  ,directory.read.all ,",
        "Directory.Read.All\tUser.ReadWrite.All ",
    ],
)
def test_scopes_in_either_separator_any_order_and_case_are_the_same(text: str) -> None:
    assert scopes_of(text) == frozenset({"directory.read.all", "user.readwrite.all"})


def test_an_empty_scope_is_no_scope() -> None:
    assert scopes_of("") == frozenset()
    assert scopes_of(" , ") == frozenset()


WANTED = {GRAPH_APP: scopes_of("Directory.Read.All,User.ReadWrite.All")}


def test_the_grants_holding_every_scope_sent_verify_even_split_over_grants_and_with_more() -> None:
    grants = [grant("User.ReadWrite.All"), grant("Directory.Read.All Mail.Read")]
    assert compare(wanted=WANTED, grants=grants, resources={GRAPH_APP: GRAPH_SP}) == ([], [])


def test_a_narrowed_grant_is_drift_naming_the_resource_and_scopes() -> None:
    drift, unavailable = compare(wanted=WANTED, grants=[grant("Directory.Read.All")], resources={GRAPH_APP: GRAPH_SP})
    assert unavailable == []
    assert drift == [
        {"resource": GRAPH_APP, "name": "Microsoft Graph", "missing": ["user.readwrite.all"], "grant": True}
    ]


def test_no_grant_at_all_is_drift_of_every_scope() -> None:
    drift, _ = compare(wanted=WANTED, grants=[], resources={GRAPH_APP: GRAPH_SP})
    assert drift[0]["missing"] == ["directory.read.all", "user.readwrite.all"]
    assert drift[0]["grant"] is False


def test_a_grant_for_one_user_or_another_resource_does_not_count() -> None:
    grants = [
        grant("Directory.Read.All User.ReadWrite.All", consent_type="Principal"),
        grant("Directory.Read.All User.ReadWrite.All", resource="99999999-0000-4000-8000-000000000009"),
    ]
    drift, _ = compare(wanted=WANTED, grants=grants, resources={GRAPH_APP: GRAPH_SP})
    assert drift[0]["missing"] == ["directory.read.all", "user.readwrite.all"]


def test_a_resource_the_tenant_lacks_is_named_not_drift() -> None:
    wanted = {**WANTED, EXCHANGE_APP: scopes_of("Exchange.Manage")}
    grants = [grant("Directory.Read.All User.ReadWrite.All")]
    drift, unavailable = compare(wanted=wanted, grants=grants, resources={GRAPH_APP: GRAPH_SP, EXCHANGE_APP: None})
    assert (drift, unavailable) == ([], [EXCHANGE_APP])


def test_what_was_sent_is_read_from_the_applied_grants() -> None:
    state = CustomerConsent(
        grants={
            "displayName": "Vendor",
            "applicationGrants": [
                {"enterpriseApplicationId": GRAPH_APP.upper(), "scope": "Directory.Read.All,User.ReadWrite.All"}
            ],
        }
    )
    assert sent_grants(state) == WANTED


def test_the_states_and_words_a_row_shows() -> None:
    applied = CustomerConsent.Status.APPLIED
    assert proof_state(CustomerConsent(status=CustomerConsent.Status.PENDING)) == ""
    assert proof_state(CustomerConsent(status=applied)) == APPLIED_UNVERIFIED
    unverifiable = CustomerConsent(
        status=applied,
        proof=CustomerConsent.Proof.UNVERIFIABLE,
        proof_reason=CustomerConsent.ProofReason.NO_ACCESS,
    )
    assert proof_state(unverifiable) == APPLIED_UNVERIFIED
    assert "no access to this customer's tenant" in proof_words(unverifiable)
    drifted = CustomerConsent(
        status=applied,
        proof=CustomerConsent.Proof.DRIFTED,
        proof_detail={"drift": [{"resource": GRAPH_APP, "name": "Microsoft Graph", "missing": ["user.readwrite.all"]}]},
        repairs=3,
    )
    assert proof_state(drifted) == "drifted"
    assert proof_words(drifted) == (
        "The app's permissions in the tenant differ from what was granted: Microsoft Graph lacks user.readwrite.all. "
        "3 repairs did not hold."
    )
    verified = CustomerConsent(
        status=applied, proof=CustomerConsent.Proof.VERIFIED, proof_detail={"unavailable": [EXCHANGE_APP]}
    )
    assert proof_words(verified).endswith("Not available in this tenant (not granted): Office 365 Exchange Online.")
