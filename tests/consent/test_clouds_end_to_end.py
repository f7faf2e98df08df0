"""One partner per cloud and environment, end to end on the simulator's hosts for that cloud: invited, consented,
renewed, one customer consented; every request went to that cloud's hosts, with that cloud's app and tokens."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from consent.services import partner_invite
from cpv import clouds
from cpv.models import ThrottleWindow
from customers.models import CustomerConsent
from customers.services import customer_consent_apply, customers_sync
from partners.models import Customer, Partner
from tests.simulated import partner_user, sim_app, sim_clouds, sim_national_apps
from tokens.outcomes import RenewalOutcome
from tokens.renewal import renew_one

pytestmark = pytest.mark.django_db(transaction=True)

# (world partner, cloud, environment, the settings prefix of the app it must use, its credential)
CASES = [
    (0, "global", "sandbox", "CPV_SANDBOX", "secret"),
    (1, "usgov", "production", "CPV_USGOV", "certificate"),
    (2, "china", "production", "CPV_CHINA", "certificate"),
]
# The v1.0 access tokens' issuer host and the audiences of Partner Center and Graph, per cloud
ISSUERS = {
    "global": "https://sts.windows.net",
    "usgov": "https://sts.windows.net",
    "china": "https://sts.chinacloudapi.cn",
}
AUDIENCES = {
    "global": {"https://api.partnercenter.microsoft.com", "https://graph.microsoft.com"},
    "usgov": {"https://api.partnercenter.microsoft.com", "https://graph.microsoft.us"},
    "china": {"https://partner.partnercenterapi.microsoftonline.cn", "https://microsoftgraph.chinacloudapi.cn"},
}


@pytest.fixture
def clouds_sim(cpv_sim, settings):  # type: ignore[no-untyped-def]
    """The product on the simulator with every cloud's own hosts and apps, certificates for the production apps (the
    sandbox's app has only a secret); the world's partners 1 and 2 live in US Government and 21Vianet."""
    sim = cpv_sim
    settings.CPV_APP = sim_app(sim, certificate=True)
    settings.CPV_SANDBOX_APP = sim_app(sim, prefix="CPV_SANDBOX")
    settings.CPV_CUSTOM_CLOUDS = sim_clouds(sim)
    settings.CPV_NATIONAL_APPS = sim_national_apps(sim, certificate=True)
    world = sim.world  # the live world of the in-process simulator; the next test's reset restores it
    world.partners[1].cloud, world.partners[2].cloud = "usgov", "china"
    world.invalidate()
    return sim


PARTS = {"entra": "AUTHORITY_HOST", "partner_center": "PARTNER_CENTER_URL", "graph": "GRAPH_URL"}
# Microsoft's documented hosts per cloud: whose listener serves each service. Entra ID and Graph are each cloud's
# own; Partner Center for Microsoft Cloud for US Government is the global endpoint (partner-center-rest-urls), 21Vianet
# has its own.
DOCUMENTED = {
    "global": {"entra": "global", "partner_center": "global", "graph": "global"},
    "usgov": {"entra": "usgov", "partner_center": "global", "graph": "usgov"},
    "china": {"entra": "china", "partner_center": "china", "graph": "china"},
}


def _hosts(sim: Any) -> dict[str, dict[str, str]]:
    """The host:port of each cloud's sign-in, Partner Center and Graph, as the control panel is configured."""
    hosts = {"global": {service: urlsplit(sim.env[f"CPV_{part}"]).netloc for service, part in PARTS.items()}}
    for name in clouds.NATIONAL_CLOUDS:
        hosts[name] = {
            service: urlsplit(sim.env[f"CPV_{name.upper()}_{part}"]).netloc for service, part in PARTS.items()
        }
    return hosts


def _token_cloud(entry: dict[str, Any]) -> str:
    """The cloud of the request: its token's (Partner Center's global endpoint serves US Government's too), else
    the cloud of the listener that answered."""
    return str(entry["detail"].get("token_cloud") or entry["cloud"])


def _last_seq(sim: Any) -> int:
    entries = sim.control.log(limit=1)
    return int(entries[-1]["seq"]) if entries else 0


def _onboard_renew_and_consent_a_customer(
    sim: Any, consent_run: Any, index: int, cloud: str, environment: str
) -> Partner:
    world_partner = sim.world.partners[index]
    invitation = partner_invite(
        actor=None,
        name=world_partner.name,
        contact_email=f"ops{index}@partner.example",
        cloud=cloud,
        environment=environment,
        tenant_id=world_partner.tenant_id,
        send_email=False,
    )
    user = partner_user(sim, partner=index, global_admin=True, admin_agent=True, mfa_registered=True)
    run = consent_run(invitation.url, user=user)
    assert run.callback.status_code in {302, 303}, run.callback.content
    partner = Partner.objects.get(pk=invitation.partner.pk)
    assert partner.status == Partner.Status.ACTIVE, partner.status

    assert renew_one(partner_id=partner.pk, force=True).outcome == RenewalOutcome.RENEWED

    customers_sync(partner_id=partner.pk)
    customer = Customer.objects.filter(partner=partner).order_by("pk").first()
    assert customer is not None
    assert customer_consent_apply(customer_id=customer.pk).status == CustomerConsent.Status.APPLIED
    return partner


@pytest.mark.parametrize(("index", "cloud", "environment", "prefix", "credential"), CASES)
def test_a_partner_is_onboarded_renewed_and_consents_a_customer_on_its_own_clouds_hosts_with_its_app(
    clouds_sim, consent_run, index: int, cloud: str, environment: str, prefix: str, credential: str
) -> None:  # type: ignore[no-untyped-def]
    sim = clouds_sim
    app_id = sim.env[f"{prefix}_CLIENT_ID"]
    start = _last_seq(sim)

    partner = _onboard_renew_and_consent_a_customer(sim, consent_run, index, cloud, environment)

    entries = sim.control.log(since=start)
    hosts = _hosts(sim)
    assert {e["service"] for e in entries} >= {"entra", "partner_center", "graph"}
    for service, owner in DOCUMENTED[cloud].items():
        assert hosts[cloud][service] == hosts[owner][service], (cloud, service)
    for entry in entries:
        where = f"{entry['method']} {entry['host']}{entry['path']}"
        assert _token_cloud(entry) == cloud, where
        assert entry["cloud"] == DOCUMENTED[cloud][entry["service"]], where
        assert entry["host"] == hosts[cloud][entry["service"]], where
        assert entry["status"] < 400 or entry["path"].endswith("/applicationconsents"), (where, entry["detail"])
        detail = entry["detail"]
        for key in ("client_id", "app_id", "application_id"):
            if key in detail:
                assert detail[key] == app_id, (where, key, detail[key])
        if "iss" in detail:
            assert detail["iss"] == f"{ISSUERS[cloud]}/{detail['tid']}/", where
            assert detail["aud"] in AUDIENCES[cloud], where
    tokens = [e for e in entries if e["service"] == "entra" and e["path"].endswith("/token")]
    assert tokens and {e["detail"]["credential"] for e in tokens} == {credential}
    grant_types = {e["detail"]["grant_type"] for e in tokens}
    assert {"authorization_code", "refresh_token"} <= grant_types
    consents = [e for e in entries if e["path"].endswith("/applicationconsents") and e["method"] == "POST"]
    assert [e["status"] for e in consents] == [201]
    # ApplicationConsent named this cloud's app in its body; Partner Center's limiter counted that app.
    assert consents[0]["detail"]["application_id"] == app_id
    assert app_id in sim.control.consents(str(Customer.objects.filter(partner=partner).order_by("pk")[0].tenant_id))


def test_no_request_of_one_cloud_reaches_another_clouds_host(clouds_sim, consent_run) -> None:  # type: ignore[no-untyped-def]
    sim = clouds_sim
    start = _last_seq(sim)
    for index, cloud, environment, _, _ in CASES:
        _onboard_renew_and_consent_a_customer(sim, consent_run, index, cloud, environment)

    entries = sim.control.log(since=start)
    hosts = _hosts(sim)
    # whose listener each host is: every cloud's own Entra ID and Graph, the global and 21Vianet's Partner Center
    owner = {
        hosts[cloud][service]: cloud
        for cloud, services in DOCUMENTED.items()
        for service, o in services.items()
        if o == cloud
    }
    assert len(owner) == 8, "each cloud has hosts of its own, US Government's Partner Center aside"
    seen = {
        (_token_cloud(entry), entry["service"], owner.get(entry["host"]))
        for entry in entries
        if entry["service"] != "vault"
    }
    assert seen == {(cloud, service, o) for cloud, services in DOCUMENTED.items() for service, o in services.items()}
    apps: dict[str, set[str]] = {cloud: set() for cloud in hosts}
    for entry in entries:
        detail = entry["detail"]
        apps[_token_cloud(entry)] |= {detail[k] for k in ("client_id", "app_id", "application_id") if k in detail}
    assert apps == {
        "global": {sim.env["CPV_SANDBOX_CLIENT_ID"]},
        "usgov": {sim.env["CPV_USGOV_CLIENT_ID"]},
        "china": {sim.env["CPV_CHINA_CLIENT_ID"]},
    }
    # Partner Center's limiter counted each cloud's app under its own key, never the global production app's.
    keys = {key for key in ThrottleWindow.objects.values_list("key", flat=True) if key.startswith("partner-center:")}
    assert keys == {f"partner-center:{app}" for names in apps.values() for app in names}
