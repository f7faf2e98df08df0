from __future__ import annotations

import pytest

from cpv import clouds


def test_every_cloud_names_its_endpoints() -> None:
    for name in ("global", "usgov", "china"):
        cloud = clouds.CLOUDS[name]
        assert cloud.authority_host.startswith("https://login.")
        assert cloud.graph_url.startswith("https://")
        assert cloud.partner_center_url.startswith("https://")
        assert cloud.is_microsoft
        assert not cloud.retired


def test_us_government_uses_its_own_sign_in_and_graph() -> None:
    cloud = clouds.CLOUDS["usgov"]

    assert cloud.authority("organizations") == "https://login.microsoftonline.us/organizations"
    assert cloud.graph_scope == "https://graph.microsoft.us/.default"


def test_partner_center_is_the_global_endpoint_for_us_government_and_its_own_for_21vianet() -> None:
    # Partner Center's REST URLs page: US Government uses https://api.partnercenter.microsoft.com, 21Vianet
    # https://partner.partnercenterapi.microsoftonline.cn
    world, usgov, china = (clouds.CLOUDS[name] for name in ("global", "usgov", "china"))

    assert (usgov.partner_center_url, usgov.partner_center_scope) == (
        world.partner_center_url,
        world.partner_center_scope,
    )
    assert china.partner_center_url == "https://partner.partnercenterapi.microsoftonline.cn"
    assert china.partner_center_scope == "https://partner.partnercenterapi.microsoftonline.cn/user_impersonation"
    assert {world.graph_url, usgov.graph_url, china.graph_url} == {
        "https://graph.microsoft.com",
        "https://graph.microsoft.us",
        "https://microsoftgraph.chinacloudapi.cn",
    }


def test_germany_is_kept_but_refused_for_new_partners() -> None:
    assert clouds.CLOUDS["germany"].retired
    assert "germany" not in dict(clouds.PARTNER_CLOUD_CHOICES)
    assert "germany" in dict(clouds.ALL_PARTNER_CLOUDS)
    with pytest.raises(clouds.CloudRetiredError, match="retired by Microsoft in 2021"):
        clouds.resolve("germany", deployment_cloud=clouds.CLOUDS["global"])


def test_a_custom_deployment_resolves_every_partner_cloud_to_its_hosts() -> None:
    custom = clouds.custom_cloud(
        authority_host="https://127.0.0.1:1",
        partner_center_url="https://127.0.0.1:2",
        graph_url="https://127.0.0.1:3",
    )

    assert clouds.resolve("global", deployment_cloud=custom) is custom
    assert clouds.resolve("china", deployment_cloud=custom) is custom


def test_a_microsoft_deployment_resolves_each_partner_to_its_own_cloud() -> None:
    assert clouds.resolve("china", deployment_cloud=clouds.CLOUDS["global"]) is clouds.CLOUDS["china"]
    with pytest.raises(ValueError, match="unknown cloud 'mars'"):
        clouds.resolve("mars", deployment_cloud=clouds.CLOUDS["global"])


def test_resolve_reads_the_deployment_cloud_from_settings(settings) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_CLOUD_CONFIG = clouds.CLOUDS["usgov"]

    assert clouds.resolve("global") is clouds.CLOUDS["global"]


def test_v1_access_tokens_are_issued_by_sts_windows_net_except_in_21vianets_cloud() -> None:
    # The issuer hosts of the sovereign clouds' v1.0 tokens; the custom cloud keeps those of the cloud it stands for.
    hosts = {name: clouds.CLOUDS[name].v1_issuer_host for name in ("global", "usgov", "china")}
    china_hosts = clouds.custom_cloud(
        authority_host="https://127.0.0.1:1",
        partner_center_url="https://127.0.0.1:2",
        graph_url="https://127.0.0.1:3",
        national="china",
    )

    assert hosts == {
        "global": "https://sts.windows.net",
        "usgov": "https://sts.windows.net",
        "china": "https://sts.chinacloudapi.cn",
    }
    assert china_hosts.v1_issuer_host == "https://sts.chinacloudapi.cn"
