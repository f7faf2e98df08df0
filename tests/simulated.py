"""Talking to the simulator as the product does: its cloud, its app, a person signing in."""

from __future__ import annotations

import html
import os
import re
from typing import Any

import pytest
import requests

from cpv import clouds
from cpv.config import AppCredential
from simulator.testing import RunningSimulator

_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
_ACTION = re.compile(r'<form method="post" id="response" action="([^"]+)">')


def sim_cloud(sim: RunningSimulator) -> clouds.Cloud:
    return clouds.custom_cloud(
        authority_host=sim.authority_host, partner_center_url=sim.partner_center_url, graph_url=sim.graph_url
    )


def sim_app(sim: RunningSimulator, *, certificate: bool = False, prefix: str = "CPV") -> AppCredential:
    """The app the simulator registered under `prefix` (CPV, CPV_SANDBOX, CPV_USGOV, CPV_CHINA), signing in with its
    certificate or its secret."""
    client_id = sim.env[f"{prefix}_CLIENT_ID"]
    tenant = sim.env.get(f"{prefix}_TENANT_ID") or sim.env["CPV_VENDOR_TENANT_ID"]
    if certificate:
        return AppCredential(
            client_id=client_id, certificate_path=sim.env[f"{prefix}_CLIENT_CERTIFICATE"], tenant_id=tenant
        )
    return AppCredential(client_id=client_id, client_secret=sim.env[f"{prefix}_CLIENT_SECRET"], tenant_id=tenant)


def sim_clouds(sim: RunningSimulator) -> dict[str, clouds.Cloud]:
    """Each national cloud's own hosts in the simulator (CPV_USGOV_AUTHORITY_HOST, ...): CPV_CUSTOM_CLOUDS."""
    return {
        name: clouds.custom_cloud(
            authority_host=sim.env[f"CPV_{name.upper()}_AUTHORITY_HOST"],
            partner_center_url=sim.env[f"CPV_{name.upper()}_PARTNER_CENTER_URL"],
            graph_url=sim.env[f"CPV_{name.upper()}_GRAPH_URL"],
            national=name,
        )
        for name in clouds.NATIONAL_CLOUDS
    }


def sim_national_apps(sim: RunningSimulator, *, certificate: bool = False) -> dict[tuple[str, str], AppCredential]:
    """The vendor's apps registered in the simulator's national clouds, as settings.CPV_NATIONAL_APPS."""
    return {
        (name, "production"): sim_app(sim, certificate=certificate, prefix=f"CPV_{name.upper()}")
        for name in clouds.NATIONAL_CLOUDS
    }


def partner_user(sim: RunningSimulator, *, partner: int = 0, **flags: bool) -> Any:
    """The first user of a seeded partner with the given flags (global_admin, admin_agent, mfa_registered)."""
    tenant = sim.world.partners[partner]
    for user in tenant.users:
        if all(getattr(user, name) == value for name, value in flags.items()):
            return user
    raise LookupError(f"no user with {flags} in {tenant.name}")


def sign_in(auth_uri: str, *, user_oid: str, action: str = "accept") -> tuple[str, dict[str, str]]:
    """A person on the sign-in page: pick `user_oid`, press Accept (or Cancel).

    Returns where the browser would POST (form_post) and the fields it would send.
    """
    with requests.Session() as browser:
        page = browser.get(auth_uri, timeout=10)
        page.raise_for_status()
        txn = re.search(r'name="txn" value="([^"]+)"', page.text)
        assert txn, page.text
        form_url = page.url.split("?", 1)[0]
        answer = browser.post(form_url, data={"txn": txn.group(1), "user": user_oid, "action": action}, timeout=10)
    answer.raise_for_status()
    target = _ACTION.search(answer.text)
    assert target, answer.text
    return html.unescape(target.group(1)), {html.unescape(k): html.unescape(v) for k, v in _HIDDEN.findall(answer.text)}


def vendor_user(sim: RunningSimulator, login: str) -> Any:
    """One of the vendor's own staff accounts in the simulator (staff.admin, staff.operator, staff.nomfa,
    staff.stranger)."""
    for user in sim.world.vendor.users:
        if user.upn.split("@", 1)[0] == login:
            return user
    raise LookupError(f"no vendor account {login!r}")


def use_azure_identity(sim: RunningSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's Azure identity (azure-identity's AZURE_* variables) is the simulator's vault principal."""
    for name in list(os.environ):
        if name.startswith("AZURE_"):
            monkeypatch.delenv(name)
    for name, value in sim.env.items():
        if name.startswith("AZURE_"):
            monkeypatch.setenv(name, value)
