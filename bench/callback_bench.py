"""Benchmark 5: what the product adds to a consent callback beyond Microsoft's own answers.

200 partners (20 with --quick) are invited through the product's service; for each, a browser (Django's test
client, in this process) opens the invitation, starts the sign-in, the partner's admin accepts on the
simulator's page, and the browser posts the answer to `/consent/callback`. The callback redeems the code
(msal), verifies the id_token, calls Partner Center to prove the Admin Agent role, writes the token to the
simulator's Key Vault and activates the partner, on PostgreSQL, with Redis as the broker.

For each callback: its wall time; the simulator's own time answering the calls it made (the request log's
server-side durations); and the time spent inside outbound HTTP calls as the product sees them (every
`requests` call, TLS and the client libraries included). Reported: medians and 95th percentiles of the
wall time, of wall minus the simulator's time (what the product and the network path add) and of wall
minus outbound HTTP (the product's own code and database); and the SQL statements each callback sent.

Side by side, after each product callback, a bare script makes the same Microsoft calls for another sign-in of the
same admin, with the client libraries alone and no Django, database or broker: the code redeemed with msal, the
id_token's signature checked with PyJWT against the signing keys (fetched once, as the product caches them), Partner
Center's organization profile read with requests, the admin's roles read in Graph (with a Graph token from the
refresh token), and the token written to Key Vault with the Azure SDK. The
figure is the ratio of the medians (target: the product at most twice the bare script). Writes
bench/results/callback.json.

    .venv/bin/python bench/callback_bench.py [--quick] [--consents N] [--profile FILE]
"""

from __future__ import annotations

import argparse
import cProfile
import html
import re
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness

SEED = 5
BASE_URL = "http://127.0.0.1:8000"
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
_ACTION = re.compile(r'<form method="post" id="response" action="([^"]+)">')


def sign_in(auth_uri: str, *, user_oid: str, ca_bundle: str) -> tuple[str, dict[str, str]]:
    """A person on the simulator's sign-in page picking `user_oid` and pressing Accept: where the browser
    would POST (form_post) and the fields it would send."""
    import requests

    with requests.Session() as browser:
        browser.verify = ca_bundle
        page = browser.get(auth_uri, timeout=10)
        page.raise_for_status()
        txn = re.search(r'name="txn" value="([^"]+)"', page.text)
        if not txn:
            raise RuntimeError("the sign-in page has no transaction")
        answer = browser.post(
            page.url.split("?", 1)[0], data={"txn": txn.group(1), "user": user_oid, "action": "accept"}, timeout=10
        )
    answer.raise_for_status()
    target = _ACTION.search(answer.text)
    if not target:
        raise RuntimeError("the sign-in answer has no form")
    fields = {html.unescape(k): html.unescape(v) for k, v in _HIDDEN.findall(answer.text)}
    return html.unescape(target.group(1)), fields


class BareCallback:
    """The same Microsoft calls as the product's callback, made by a script with the client libraries alone."""

    def __init__(self, sim_env: dict[str, str], *, scope: str, graph_scope: str, redirect_uri: str) -> None:
        import jwt
        import msal
        import requests

        from bench.seed import vault_client

        self.env, self.scope, self.graph_scope, self.redirect_uri = sim_env, scope, graph_scope, redirect_uri
        self.msal = msal.ConfidentialClientApplication(
            sim_env["CPV_CLIENT_ID"],
            client_credential=sim_env["CPV_CLIENT_SECRET"],
            authority=f"{sim_env['CPV_AUTHORITY_HOST']}/organizations",
            instance_discovery=False,
        )
        self.http = requests.Session()
        configuration = self.http.get(
            f"{sim_env['CPV_AUTHORITY_HOST']}/organizations/v2.0/.well-known/openid-configuration", timeout=10
        ).json()
        self.keys = jwt.PyJWKSet.from_dict(self.http.get(configuration["jwks_uri"], timeout=10).json())
        self.vault = vault_client(sim_env)

    def sign_in(self, *, user_oid: str) -> tuple[dict[str, Any], dict[str, str]]:
        """A new authorization code for the admin (not timed: the person's part)."""
        flow = self.msal.initiate_auth_code_flow(
            [self.scope], redirect_uri=self.redirect_uri, response_mode="form_post", prompt="consent"
        )
        _, fields = sign_in(flow["auth_uri"], user_oid=user_oid, ca_bundle=self.env["REQUESTS_CA_BUNDLE"])
        return flow, fields

    def complete(self, flow: dict[str, Any], fields: dict[str, str]) -> None:
        """What the callback does with Microsoft: redeem, check the id_token, read the admin's roles in Graph (a
        token for Graph from the refresh token), ask Partner Center, vault the token."""
        import jwt

        result = self.msal.acquire_token_by_auth_code_flow(flow, fields)
        if "access_token" not in result:
            raise RuntimeError(f"the bare redemption failed: {result.get('error')}")
        kid = jwt.get_unverified_header(result["id_token"])["kid"]
        jwt.decode(result["id_token"], self.keys[kid].key, algorithms=["RS256"], audience=self.env["CPV_CLIENT_ID"])
        graph_token = self.msal.acquire_token_by_refresh_token(result["refresh_token"], scopes=[self.graph_scope])
        roles = self.http.get(
            f"{self.env['CPV_GRAPH_URL']}/v1.0/me/transitiveMemberOf",
            headers={"Authorization": f"Bearer {graph_token['access_token']}"},
            timeout=10,
        )
        roles.raise_for_status()
        profile = self.http.get(
            f"{self.env['CPV_PARTNER_CENTER_URL']}/v1/profiles/organization",
            headers={"Authorization": f"Bearer {result['access_token']}", "Accept": "application/json"},
            timeout=10,
        )
        profile.raise_for_status()
        self.vault.set_secret(f"bare-{uuid.uuid4().hex}", result["refresh_token"])


class OutboundTimer:
    """Wall time spent in `requests` calls made by this thread while `active`."""

    def __init__(self) -> None:
        import requests

        self.local = threading.local()
        original = requests.Session.send
        timer = self

        def send(session: Any, request: Any, **kwargs: Any) -> Any:
            if not getattr(timer.local, "active", False):
                return original(session, request, **kwargs)
            start = time.perf_counter()
            try:
                return original(session, request, **kwargs)
            finally:
                timer.local.spent += time.perf_counter() - start
                timer.local.calls += 1

        requests.Session.send = send  # type: ignore[method-assign]

    def start(self) -> None:
        self.local.active = True
        self.local.spent = 0.0
        self.local.calls = 0

    def stop(self) -> tuple[float, int]:
        self.local.active = False
        return self.local.spent, self.local.calls


class StatementCounter:
    """SQL statements sent while installed as the connection's execute wrapper."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.count += 1
        return execute(sql, params, many, context)

    def take(self) -> int:
        count, self.count = self.count, 0
        return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20 consents")
    parser.add_argument("--consents", type=int, default=None)
    parser.add_argument("--profile", metavar="FILE", help="profile the product's callbacks (cProfile) into FILE")
    args = parser.parse_args(argv)
    profiler = cProfile.Profile() if args.profile else None
    count = args.consents or (20 if args.quick else 200)

    from simulator.testing import SimulatorProcess
    from simulator.world import World

    started = time.perf_counter()
    database = harness.BenchDatabase("cpv_bench_callback")
    database.create()
    var_dir = harness.bench_var_dir()
    # The work the product queues after each consent (a customer sync) goes to a queue of this run's own,
    # which nobody consumes and which is removed at the end.
    queue = f"bench-callback-{uuid.uuid4().hex[:10]}"
    # One more partner than consents: the first consent warms the caches (discovery, signing keys, clients).
    sim_process = SimulatorProcess(
        extra_args=["--seed", str(SEED), "--partners", str(count + 1), "--customers", "1", "--record-issued", "off"]
    )
    samples: list[dict[str, float]] = []
    try:
        sim = sim_process.start()
        control = sim.control
        env = harness.product_env(
            sim.env,
            database_url=database.url,
            var_dir=var_dir,
            CPV_BASE_URL=BASE_URL,
            CPV_LOG_LEVEL="WARNING",
            DJANGO_SETTINGS_MODULE="bench.settings",
            CPV_BENCH_DEFAULT_QUEUE=queue,
        )
        harness.migrate(env)
        harness.django_setup(env)
        from django.db import connection
        from django.test import Client

        from consent.services import consent_cloud_for, partner_invite, redirect_uri
        from partners.models import Partner

        world = World.generate(seed=SEED, partners=count + 1, customers_per_partner=1)
        network = uuid.uuid4().int % 256
        timer = OutboundTimer()
        statements = StatementCounter()
        bare: BareCallback | None = None
        calls_seen: dict[str, list[str]] = {}
        for index, world_partner in enumerate(world.partners):
            admin = next(u for u in world_partner.users if u.global_admin and u.admin_agent and u.mfa_registered)
            invitation = partner_invite(
                actor=None, name=world_partner.name, contact_email=f"ops@{world_partner.domain}", send_email=False
            )
            # Each partner's admin is a different person on a different network (the pages limit attempts
            # per client address), in this run as in any other: a run within the limits' window of the last one
            # would otherwise find each address's counters already there, as no new admin's are.
            address = f"10.{network}.{index // 250}.{index % 250 + 1}"
            browser = Client(SERVER_NAME="127.0.0.1", SERVER_PORT="8000", REMOTE_ADDR=address)
            landing = browser.get(invitation.url.removeprefix(BASE_URL))
            start_path = re.search(r'action="([^"]+/start)"', landing.content.decode())
            if landing.status_code != 200 or not start_path:
                raise RuntimeError(f"the invitation page answered {landing.status_code}")
            redirect = browser.post(start_path.group(1))
            target, fields = sign_in(redirect["Location"], user_oid=admin.oid, ca_bundle=sim.env["REQUESTS_CA_BUNDLE"])
            if target != f"{BASE_URL}/consent/callback":
                raise RuntimeError(f"the sign-in posts to {target}")
            seq = harness.simulator_log_seq(control)
            timer.start()
            t0 = time.perf_counter()
            if profiler is not None and index:
                profiler.enable()
            with connection.execute_wrapper(statements):
                answer = browser.post("/consent/callback", fields)
            if profiler is not None:
                profiler.disable()
            wall = time.perf_counter() - t0
            outbound, calls = timer.stop()
            sql = statements.take()
            entries = control.log(since=seq)
            if (
                answer.status_code != 303
                or not Partner.objects.filter(pk=invitation.partner.pk, status=Partner.Status.ACTIVE).exists()
            ):
                raise RuntimeError(f"consent {index} did not succeed: HTTP {answer.status_code}")
            if bare is None:
                bare = BareCallback(
                    sim.env, scope=consent_cloud_for(invitation.partner).partner_center_default_scope,
                    graph_scope=consent_cloud_for(invitation.partner).graph_scope, redirect_uri=redirect_uri(),
                )  # fmt: skip
            bare_flow, bare_fields = bare.sign_in(user_oid=admin.oid)
            bare_seq = harness.simulator_log_seq(control)
            t0 = time.perf_counter()
            bare.complete(bare_flow, bare_fields)
            bare_wall = time.perf_counter() - t0
            bare_entries = control.log(since=bare_seq)
            if index == 0:
                continue  # the warm-up
            simulator = sum(float(e.get("duration_ms") or 0) for e in entries) / 1000
            samples.append(
                {
                    "wall_ms": wall * 1000,
                    "simulator_ms": simulator * 1000,
                    "outbound_ms": outbound * 1000,
                    "added_ms": (wall - simulator) * 1000,
                    "own_ms": (wall - outbound) * 1000,
                    "calls": calls,
                    "sql_statements": sql,
                    "simulator_requests": len(entries),
                    "bare_wall_ms": bare_wall * 1000,
                    "bare_simulator_requests": len(bare_entries),
                }
            )
            calls_seen.update(
                product=[f"{e['service']} {e['method']} {e['path']}" for e in entries],
                bare=[f"{e['service']} {e['method']} {e['path']}" for e in bare_entries],
            )
    finally:
        sim_process.stop()
        database.drop()
        harness.redis_delete(queue)
        if profiler is not None:
            profiler.dump_stats(args.profile)

    def stat(key: str) -> dict[str, float]:
        values = [s[key] for s in samples]
        return {"median": round(harness.median(values), 1), "p95": round(harness.percentile(values, 95), 1)}

    keys = ("wall_ms", "simulator_ms", "outbound_ms", "added_ms", "own_ms", "calls", "sql_statements", "bare_wall_ms")
    summary: dict[str, Any] = {key: stat(key) for key in keys}
    summary["product_over_bare"] = round(summary["wall_ms"]["median"] / max(summary["bare_wall_ms"]["median"], 0.1), 2)
    summary["simulator_requests"] = {
        "product": harness.median([s["simulator_requests"] for s in samples]),
        "bare": harness.median([s["bare_simulator_requests"] for s in samples]),
        "last": calls_seen,
    }
    labels = {
        "wall_ms": "callback wall time",
        "simulator_ms": "simulator's own time (server side)",
        "outbound_ms": "inside outbound HTTP calls",
        "added_ms": "added beyond the simulator",
        "own_ms": "the product's own code and database",
        "bare_wall_ms": "a bare script's same Microsoft calls",
    }
    print()
    print(
        harness.table(
            f"Consent callback, {len(samples)} consents (ms)",
            ["", "median", "p95"],
            [[label, summary[key]["median"], summary[key]["p95"]] for key, label in labels.items()],
        )
    )
    print(
        f"outbound calls per callback: {summary['calls']['median']:.0f}; SQL statements (besides BEGIN and COMMIT): "
        f"{summary['sql_statements']['median']:.0f}"
    )
    print(
        f"product / bare script (medians, same run): {summary['product_over_bare']} (target <= 2); requests the "
        f"simulator saw: product {summary['simulator_requests']['product']:.0f}, bare "
        f"{summary['simulator_requests']['bare']:.0f}"
    )
    path = harness.write_results(
        "callback",
        {
            "config": {"consents": count, "quick": args.quick},
            "summary": summary,
            "samples": samples,
            "total_seconds": round(time.perf_counter() - started, 1),
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
