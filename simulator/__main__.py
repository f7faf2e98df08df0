"""`python -m simulator`: run every simulated service and print the environment that points at them."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path

from simulator.persistence import StateFile, StateFileError
from simulator.server import SimulatorServer
from simulator.state import Settings
from simulator.world import World

logger = logging.getLogger(__name__)

READY_LINE = "# simulator ready"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simulator",
        description="Local stand-in for Entra ID, Partner Center, Graph and Key Vault (HTTPS, loopback).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback only)")
    for service in ("entra", "pc", "graph", "vault"):
        parser.add_argument(f"--port-{service}", type=int, default=0, help=f"{service} port (0: a free port)")
    parser.add_argument("--world", type=Path, help="a world JSON file (full dump or the short form)")
    parser.add_argument("--seed", type=int, default=1, help="seed of a generated world")
    parser.add_argument("--partners", type=int, default=3, help="partners in a generated world")
    parser.add_argument("--customers", type=int, default=5, help="customers per partner in a generated world")
    parser.add_argument(
        "--gdap-showcase",
        choices=("on", "off"),
        default="on",
        help="a generated world's first partner gets one more customer per GDAP state (simulator/README.md)",
    )
    parser.add_argument(
        "--consent-showcase",
        choices=("on", "off"),
        default="on",
        help="a generated world's first partner gets customers whose CPV app is consented, drifted, missing a workload",
    )
    parser.add_argument("--redirect-uri", action="append", default=[], help="another accepted redirect URI")
    parser.add_argument("--state-dir", type=Path, help="where the CA bundle and the CPV certificate are written")
    parser.add_argument("--env-file", type=Path, help="also write the KEY=value lines to this file")
    parser.add_argument(
        "--state-file",
        type=Path,
        help="keep the simulator's state in this file: go on from it when it exists (it wins over --world and "
        "--seed), write it after every change and at a clean stop",
    )
    parser.add_argument("--dump-world", type=Path, help="write the world as JSON to this file")
    parser.add_argument(
        "--pc-rate-limit",
        type=float,
        default=50.0,
        help="Partner Center requests/s per application id (0: off)",
    )
    parser.add_argument(
        "--vaults", type=int, default=1, help="how many Key Vaults to serve, each on a port of its own (default 1)"
    )
    parser.add_argument("--vault-limits", choices=("on", "off"), default="on", help="Key Vault throttling")
    parser.add_argument(
        "--record-issued",
        choices=("on", "off"),
        default="on",
        help="keep every issued secret for /_simulator/issued (off bounds memory in benchmarks)",
    )
    parser.add_argument("--log-level", default="WARNING")
    return parser


async def serve(args: argparse.Namespace) -> int:
    saved = StateFile(args.state_file).load() if args.state_file else None
    if saved is not None:
        world = World.from_dict(saved["world"])
    elif args.world:
        world = World.load(args.world)
    else:
        world = World.generate(
            seed=args.seed,
            partners=args.partners,
            customers_per_partner=args.customers,
            gdap_showcase=args.gdap_showcase == "on",
            consent_showcase=args.consent_showcase == "on",
        )
    world.add_redirect_uris(args.redirect_uri)
    if args.dump_world:
        args.dump_world.write_text(world.to_json(), encoding="utf-8")
    settings = Settings(
        pc_rate_limit=args.pc_rate_limit or None,
        vault_limits=args.vault_limits == "on",
        record_issued=args.record_issued == "on",
    )
    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="cpv-simulator-"))
    server = SimulatorServer(
        world,
        state_dir=state_dir,
        settings=settings,
        host=args.host,
        ports={
            "entra": args.port_entra,
            "partner_center": args.port_pc,
            "graph": args.port_graph,
            "vault": args.port_vault,
        },
        state_file=args.state_file,
        saved=saved,
        vaults=max(args.vaults, 1),
    )
    # A stop asked for as soon as the simulator says it is ready is a clean stop too (the state is saved).
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    env = await server.start()
    lines = [f"{key}={value}" for key, value in env.items()]
    if args.env_file:
        # it names the apps' (simulated) secrets: readable by its owner only, like the state file
        fd = os.open(args.env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
    sys.stdout.write("\n".join(lines) + "\n" + READY_LINE + "\n")
    sys.stdout.flush()
    await stop.wait()
    await server.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    try:
        return asyncio.run(serve(args))
    except StateFileError as exc:
        sys.stderr.write(f"simulator: {exc}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
