"""The rules the consent relies on, as Microsoft defines them: the AADSTS classes (the error reference), `amr`
(the access token claims reference: `mfa`, `ngcmfa` "equivalent to mfa"), `isMfaCompliant` wherever Partner
Center puts it, and the required-permission table."""

from __future__ import annotations

import json
import logging

import pytest
import requests

from microsoft import identity, partner_center, permissions


def _error(code: int, error: str = "invalid_grant") -> dict[str, object]:
    return {"error": error, "error_codes": [code], "correlation_id": "c"}


@pytest.mark.parametrize("code", [50097, 53000, 53001, 53002, 530003, 53003])
def test_device_and_app_policies_are_conditional_access_not_reconsent(code: int) -> None:
    error = identity.error_from_response(_error(code))
    assert isinstance(error, identity.ConditionalAccessBlocked)
    assert not isinstance(error, identity.ReconsentRequired)


def test_700016_in_the_partners_tenant_is_the_app_not_found_not_a_dead_consent() -> None:
    error = identity.error_from_response(_error(700016, "unauthorized_client"))
    assert isinstance(error, identity.AppNotFound)


def test_65001_for_graph_in_the_partners_tenant_is_a_missing_permission_not_a_dead_consent() -> None:
    assert isinstance(identity.error_from_response(_error(65001), partner_center=False), identity.PermissionNotGranted)
    assert isinstance(identity.error_from_response(_error(65001), partner_center=True), identity.ReconsentRequired)


@pytest.mark.parametrize("code", [90099, 65001, 700016])
def test_a_customer_tenant_without_the_app_needs_application_consent(code: int) -> None:
    error = identity.error_from_response(_error(code), home_tenant=False)
    assert isinstance(error, identity.AppNotConsentedInTenant)


@pytest.mark.parametrize("code", [530034, 500212, 500213, 50020, 90072, 53003, 50076])
def test_any_other_refusal_in_a_customer_tenant_is_that_customers_with_its_code(code: int) -> None:
    error = identity.error_from_response(_error(code), home_tenant=False)
    assert isinstance(error, identity.NoAccessToTenant)
    assert f"AADSTS{code}" in str(error)


@pytest.mark.parametrize("code", [700082, 70008, 50173])
def test_a_dead_refresh_token_is_the_whole_partners_wherever_it_was_redeemed(code: int) -> None:
    assert isinstance(identity.error_from_response(_error(code), home_tenant=False), identity.ReconsentRequired)


@pytest.mark.parametrize(
    ("claims", "verdict"),
    [
        ({"amr": ["pwd", "mfa"]}, True),
        ({"amr": ["ngcmfa"]}, True),
        ({"amr": ["pwd"]}, False),
        ({"amr": ["wiaormfa"]}, False),
        ({"amr": []}, None),
        ({}, None),
    ],
)
def test_mfa_verdict_reads_amr_and_says_unknown_without_it(claims: dict[str, object], verdict: bool | None) -> None:
    assert identity.mfa_verdict(claims) is verdict


def test_an_opaque_access_token_has_no_claims_to_read() -> None:
    assert identity.access_token_claims("EwBwA8l6BAAU-an-opaque-token") == {}
    assert identity.mfa_verdict(identity.access_token_claims("EwBwA8l6BAAU-an-opaque-token")) is None


def _response(*, headers: dict[str, str] | None = None, body: object = None) -> requests.Response:
    response = requests.Response()
    response.status_code = 200
    response.headers.update({"Content-Type": "application/json; charset=utf-8", **(headers or {})})
    response._content = json.dumps(body).encode() if body is not None else b""
    return response


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (_response(headers={"isMfaCompliant": "true"}), True),
        (_response(headers={"ISMFACOMPLIANT": "False"}), False),
        (_response(body={"isMfaCompliant": True, "companyName": "x"}), True),
        (_response(body={"IsMfaCompliant": "false"}), False),
        (_response(body={"companyName": "x"}), None),
        (_response(body=[{"isMfaCompliant": True}]), None),
        (_response(), None),
    ],
)
def test_is_mfa_compliant_is_read_from_a_header_or_the_body(response: requests.Response, expected: bool | None) -> None:
    assert partner_center.mfa_compliance(response) is expected


def test_the_form_of_is_mfa_compliant_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    partner_center._FORMS_SEEN.clear()
    with caplog.at_level(logging.INFO, logger="microsoft.partner_center"):
        for _ in range(3):
            partner_center.mfa_compliance(_response(body={"isMfaCompliant": True}))
    assert [r.getMessage() for r in caplog.records].count(
        "Partner Center answers isMfaCompliant as a field of the JSON body"
    ) == 1


def test_the_required_permission_table_and_its_fingerprint() -> None:
    names = {(p.api, p.name) for p in permissions.REQUIRED_PERMISSIONS}
    assert names == {
        ("partner_center", "user_impersonation"),
        ("graph", "User.Read"),
        ("graph", "RoleManagement.Read.Directory"),
        ("graph", "DelegatedAdminRelationship.Read.All"),
        ("graph", "GroupMember.Read.All"),
    }
    assert {p.name for p in permissions.REQUIRED_PERMISSIONS if p.admin_only} == {
        "RoleManagement.Read.Directory",
        "DelegatedAdminRelationship.Read.All",
        "GroupMember.Read.All",
    }
    fingerprint = permissions.fingerprint()
    assert fingerprint == permissions.fingerprint(reversed(permissions.REQUIRED_PERMISSIONS))
    assert fingerprint != permissions.fingerprint(permissions.REQUIRED_PERMISSIONS[:-1])


def test_granted_names_reads_a_token_responses_scope() -> None:
    assert permissions.granted_names(
        "https://api.partnercenter.microsoft.com/user_impersonation https://api.partnercenter.microsoft.com/.default"
    ) == ["user_impersonation"]
    assert permissions.granted_names("User.Read openid profile RoleManagement.Read.Directory email") == [
        "RoleManagement.Read.Directory",
        "User.Read",
    ]


def test_a_sign_in_frequency_policy_of_one_customer_is_that_customers() -> None:
    assert isinstance(identity.error_from_response(_error(70043), home_tenant=False), identity.NoAccessToTenant)
    assert isinstance(identity.error_from_response(_error(70043)), identity.ReconsentRequired)


def test_a_passing_outage_is_transient_wherever_it_happens() -> None:
    for home in (True, False):
        error = identity.error_from_response(_error(50000, "temporarily_unavailable"), home_tenant=home)
        assert isinstance(error, identity.Transient)
