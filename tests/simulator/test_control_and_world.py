from __future__ import annotations

import json
import time

import pytest
import requests

from simulator.testing import ControlError, SimulatorProcess, running_simulator
from simulator.world import World
from tests.simulator.helpers import PC_DEFAULT, admin, consent, redeem

EXPECTED_ENV = {
    "CPV_CLOUD",
    "CPV_AUTHORITY_HOST",
    "CPV_PARTNER_CENTER_URL",
    "CPV_GRAPH_URL",
    "CPV_CLIENT_ID",
    "CPV_CLIENT_SECRET",
    "CPV_CLIENT_CERTIFICATE",
    "CPV_VENDOR_TENANT_ID",
    "VAULT_URL",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_AUTHORITY_HOST",
    "REQUESTS_CA_BUNDLE",
    "SSL_CERT_FILE",
    "SIMULATOR_CONTROL_URL",
}


# ----- world -----
def test_a_world_is_reproducible_from_its_seed():
    assert World.generate(seed=7).to_dict() == World.generate(seed=7).to_dict()
    assert World.generate(seed=7).to_dict() != World.generate(seed=8).to_dict()


def test_every_generated_partner_has_the_users_tests_need():
    for partner in World.generate(seed=3, partners=4).partners:
        flags = {(u.global_admin, u.admin_agent, u.mfa_registered) for u in partner.users}
        assert (True, True, True) in flags  # everything
        assert (True, False, True) in flags  # global admin without Admin Agent
        assert (False, True, True) in flags  # Admin Agent who is not global admin
        assert any(not mfa for _, _, mfa in flags)  # an admin without MFA


def test_a_partner_with_5000_customers_is_cheap():
    started = time.perf_counter()
    world = World.generate(seed=2, partners=1, customers_per_partner=5000)
    copy = World.from_json(world.to_json())
    assert len(copy.partners[0].customers) == 5000
    assert copy.tenant(copy.partners[0].customers[-1].tenant_id)[0] == "customer"
    assert time.perf_counter() - started < 30  # generous: a noisy machine, not a benchmark


def test_the_short_json_form_and_redirect_uris(tmp_path):
    path = tmp_path / "world.json"
    path.write_text(
        json.dumps(
            {
                "seed": 5,
                "partners": 2,
                "customers_per_partner": 3,
                "redirect_uris": ["https://cpv.example/consent/callback"],
            }
        )
    )
    world = World.load(path)
    assert len(world.partners) == 2
    assert world.cpv_app.redirect_uris == [
        "http://127.0.0.1:8000/consent/callback",
        "https://cpv.example/consent/callback",
    ]
    assert world.cpv_app.certificates[0].thumbprint == World.generate(seed=5).cpv_app.certificates[0].thumbprint


# ----- control surface -----
def test_the_environment_points_at_the_simulator(sim):
    assert EXPECTED_ENV <= set(sim.env)
    assert sim.env["CPV_CLOUD"] == "custom"
    assert sim.env["VAULT_URL"].endswith("/")
    assert sim.env["REQUESTS_CA_BUNDLE"] == sim.env["SSL_CERT_FILE"] == str(sim.ca_bundle)
    bundle = sim.ca_bundle.read_text()
    assert bundle.count("BEGIN CERTIFICATE") > 1  # system CAs + the simulator's
    pem = open(sim.env["CPV_CLIENT_CERTIFICATE"]).read()
    assert "PRIVATE KEY" in pem and "BEGIN CERTIFICATE" in pem
    assert sim.control.env() == sim.env


def test_every_issued_secret_is_listed_and_carries_the_canary(sim):
    result = consent(sim)
    issued = sim.control.issued_secrets()
    for value in (
        result["access_token"],
        result["refresh_token"],
        result["id_token"],
        sim.env["CPV_CLIENT_SECRET"],
    ):
        assert value in issued
    assert all("SIMCANARY" in code for code in sim.control.issued_secrets("authorization_code"))
    assert "SIMCANARY" in result["refresh_token"] and "SIMCANARY" in sim.env["AZURE_CLIENT_SECRET"]
    assert sim.control.find_leaks(f"oops {result['refresh_token']} in a page") == [result["refresh_token"]]
    log_text = json.dumps(sim.control.log())
    assert sim.control.find_leaks(log_text) == []


def test_the_log_is_filterable(sim):
    refresh = sim.control.issue_refresh_token(admin(sim).upn)
    redeem(sim, refresh)
    redeem(sim, "garbage")
    entries = sim.control.log(service="entra", grant_type="refresh_token")
    assert [e["status"] for e in entries] == [200, 400]
    assert sim.control.log(service="entra", status=400)[0]["detail"]["error_code"] == 9002313
    assert entries[0]["query"] == {}
    assert sim.control.log(service="vault") == []
    since = entries[0]["seq"]
    assert len(sim.control.log(since=since)) == 1


def test_reset_restores_the_seeded_world(sim):
    partner = sim.world.partners[0]
    sim.control.add_customers(partner.tenant_id, count=3)
    sim.control.advance_days(10)
    sim.control.inject_fault("vault", status=500)
    sim.control.update_user(admin(sim).oid, admin_agent=False)
    sim.control.reset()
    assert len(sim.control.world()["partners"][0]["customers"]) == 5
    assert sim.control.faults() == []
    assert sim.control.state("clock")["offset"] == 0
    assert sim.control.log() == []
    assert sim.control.world()["partners"][0]["users"][0]["admin_agent"] is True


def test_faults_with_latency_rate_and_times(sim):
    fault = sim.control.inject_fault("graph", latency=0.2, times=None)
    assert sim.control.faults()[0]["id"] == fault
    started = time.perf_counter()
    assert requests.get(f"{sim.graph_url}/v1.0/me", timeout=10).status_code == 401  # delayed, then real answer
    assert time.perf_counter() - started >= 0.2
    sim.control.remove_fault(fault)
    sim.control.inject_fault("graph", status=418, rate=0.0, times=None)
    assert requests.get(f"{sim.graph_url}/v1.0/me", timeout=10).status_code == 401
    sim.control.clear_faults()
    with pytest.raises(ControlError):
        sim.control.inject_fault("nosuchservice", status=500)


def test_refresh_token_bookkeeping(sim):
    refresh = sim.control.issue_refresh_token(admin(sim).upn)
    new = redeem(sim, refresh).json()["refresh_token"]
    info = sim.control.refresh_token_info(new)
    assert info["parent"] == sim.control.refresh_token_info(refresh)["id"]
    assert info["user_oid"] == admin(sim).oid
    assert "refresh_token" not in json.dumps(info).replace('"refresh_token"', "")  # the token itself is not there
    assert sim.control.redemptions() == {admin(sim).oid: 1}


def test_an_in_process_simulator_with_its_own_world(tmp_path):
    world = World.generate(seed=42, partners=1, customers_per_partner=2)
    with running_simulator(world, state_dir=tmp_path) as running:
        assert running.world.partners[0].tenant_id == world.partners[0].tenant_id
        assert (tmp_path / "ca.pem").exists() and (tmp_path / "ca-bundle.pem").exists()
        assert running.control.health()
        config = requests.get(
            f"{running.authority_host}/common/v2.0/.well-known/openid-configuration",
            verify=str(running.ca_bundle),
            timeout=10,
        )
        assert config.status_code == 200


@pytest.mark.slow
def test_python_m_simulator_runs_in_its_own_process_and_stops_on_sigterm(tmp_path):
    env_file = tmp_path / "sim.env"
    process = SimulatorProcess(
        extra_args=[
            "--seed",
            "9",
            "--partners",
            "2",
            "--env-file",
            str(env_file),
            "--redirect-uri",
            "https://cpv.example/cb",
        ]
    )
    running = process.start()
    try:
        assert EXPECTED_ENV <= set(running.env)
        assert running.control.health()
        assert env_file.read_text().splitlines()[0] == "CPV_CLOUD=custom"
        world = running.world
        assert world.seed == 9 and len(world.partners) == 2
        assert "https://cpv.example/cb" in world.cpv_app.redirect_uris
        refresh = running.control.issue_refresh_token(world.partners[0].users[0].upn)
        response = requests.post(
            f"{running.authority_host}/organizations/oauth2/v2.0/token",
            data={
                "grant_type": "refresh_token",
                "client_id": running.env["CPV_CLIENT_ID"],
                "client_secret": running.env["CPV_CLIENT_SECRET"],
                "refresh_token": refresh,
                "scope": PC_DEFAULT,
            },
            verify=str(running.ca_bundle),
            timeout=10,
        )
        assert response.status_code == 200
    finally:
        code = process.stop()
    assert code == 0


def test_a_simulator_process_that_cannot_start_says_why(tmp_path):
    process = SimulatorProcess(extra_args=["--world", str(tmp_path / "missing.json")])
    with pytest.raises(RuntimeError, match=r"missing\.json"):
        process.start()


def test_bad_control_requests_are_refused_with_400(sim):
    with pytest.raises(ControlError, match="400"):
        sim.control.inject_fault("vault", status=500, path="([unclosed")
    with pytest.raises(ControlError, match="400"):
        sim.control.set_settings(no_such_setting=1)
    with pytest.raises(ControlError, match="404"):
        sim.control.revoke_user("nobody@nowhere.example")
