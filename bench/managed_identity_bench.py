"""What a sign-in with the managed identity costs next to one with the certificate.

Starts `python -m simulator` as a separate process, assigns a user-assigned managed identity the app registration
trusts, and asks for an app-only token in the app's tenant as the app check's probe does
(`microsoft.identity.client_credentials_token`, a fresh msal client each time), alternating the certificate and the
managed identity. The managed identity's token is fetched from the host's endpoint (App Service's form) by
azure-identity, which keeps it: the endpoint should be asked once for every sign-in of the run.

Reported: the median and 90th percentile wall time of a sign-in with each, their ratio, and the managed identity
endpoint's requests per managed identity sign-in. Writes bench/results/managed_identity.json.

    .venv/bin/python bench/managed_identity_bench.py [--quick] [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness

WARM_UP = 5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="50 sign-ins of each kind")
    parser.add_argument("--rounds", type=int, default=None, help="sign-ins of each kind")
    args = parser.parse_args(argv)
    rounds = args.rounds or (50 if args.quick else 300)

    from simulator.testing import SimulatorProcess

    sim_process = SimulatorProcess(extra_args=["--record-issued", "off"], startup_timeout=180)
    try:
        sim = sim_process.start()
        env = harness.product_env(
            sim.env, database_url="postgres://unused@127.0.0.1:5432/unused", var_dir=harness.bench_var_dir()
        )
        harness.django_setup(env)
        from django.conf import settings

        from cpv.config import CERTIFICATE, MANAGED_IDENTITY, AppCredential, Credential
        from microsoft import identity

        created = sim.control.create_managed_identity(trust=[sim.env["CPV_CLIENT_ID"]])
        os.environ.update(IDENTITY_ENDPOINT=created["identity_endpoint"], IDENTITY_HEADER=created["identity_header"])
        cloud = settings.CPV_CLOUD_CONFIG
        credentials = {
            "certificate": Credential(CERTIFICATE, certificate_path=sim.env["CPV_CLIENT_CERTIFICATE"]),
            "managed identity": Credential(MANAGED_IDENTITY, managed_identity_client_id=created["client_id"]),
        }
        app = AppCredential(
            client_id=sim.env["CPV_CLIENT_ID"],
            credentials=tuple(credentials.values()),
            tenant_id=sim.env["CPV_VENDOR_TENANT_ID"],
        )
        times: dict[str, list[float]] = {name: [] for name in credentials}
        for index in range(WARM_UP + rounds):
            for name, credential in credentials.items():
                started = time.perf_counter()
                token = identity.client_credentials_token(
                    cloud=cloud, app=app, credential=credential, resource=cloud.graph_resource
                )
                elapsed = time.perf_counter() - started
                assert token
                if index >= WARM_UP:
                    times[name].append(elapsed)
        endpoint_requests = len(sim.control.log(service="entra", path="^/msi/token$"))
    finally:
        sim_process.stop()

    medians = {name: harness.median(values) * 1000 for name, values in times.items()}
    p90 = {name: harness.percentile(values, 90) * 1000 for name, values in times.items()}
    ratio = medians["managed identity"] / medians["certificate"]
    per_sign_in = endpoint_requests / (WARM_UP + rounds)
    print(
        harness.table(
            f"App-only sign-in in the app's tenant, {rounds} of each (milliseconds)",
            ["credential", "median", "p90"],
            [[name, f"{medians[name]:.1f}", f"{p90[name]:.1f}"] for name in credentials],
        )
    )
    print(f"managed identity / certificate (median): {ratio:.2f}")
    print(f"managed identity endpoint requests per sign-in: {per_sign_in:.3f} ({endpoint_requests} in all)")
    path = harness.write_results(
        "managed_identity",
        {
            "rounds": rounds,
            "median_ms": medians,
            "p90_ms": p90,
            "ratio_median": ratio,
            "endpoint_requests": endpoint_requests,
            "endpoint_requests_per_sign_in": per_sign_in,
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
