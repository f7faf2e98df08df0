"""Starting the four HTTPS services (Entra ID, Partner Center, Graph, Key Vault) on loopback."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

from aiohttp import web

from simulator import applications, control, entra, graph, keyvault, managed_identity, partner_center
from simulator.clouds import GLOBAL, NATIONAL, NATIONAL_SERVICES
from simulator.entra import SIM_KEY
from simulator.persistence import StateFile
from simulator.requestlog import LOG_KEY, REQUEST_HEADERS, RESPONSE_HEADERS, redact, redact_url
from simulator.state import Settings, Simulator, Urls, VaultView
from simulator.tls import kept_tls_material, make_tls_material, write_ca_files
from simulator.world import World

logger = logging.getLogger(__name__)


def _graph_setup(app: web.Application) -> None:
    """Graph's own routes, and the application objects of the vendor's tenant (applications.py)."""
    graph.setup(app)
    applications.setup(app)


def _entra_setup(app: web.Application) -> None:
    """Entra ID's routes, and the managed identity endpoint of the host (managed_identity.py)."""
    entra.setup(app)
    managed_identity.setup(app)


SERVICES: dict[str, Callable[[web.Application], None]] = {
    "entra": _entra_setup,
    "partner_center": partner_center.setup,
    "graph": _graph_setup,
    "vault": keyvault.setup,
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# how long after a change the state is written (changes within it are written together)
SAVE_DELAY = 0.2


def _changes_state(request: web.Request) -> bool:
    """Whether a request may have changed what the simulator keeps (every write, and a sign-in page opened)."""
    return request.method not in {"GET", "HEAD", "OPTIONS"} or request.path.endswith("/authorize")


def _middleware(
    sim_getter: Callable[[], Simulator], service: str, changed: Callable[[], None], cloud: str = GLOBAL
) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await _handle(request, handler)
        finally:
            if _changes_state(request):
                changed()

    async def _handle(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(control.PREFIX):
            return await handler(request)
        sim = sim_getter()
        started = time.perf_counter()
        entry: dict[str, Any] = {
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            "sim_time": sim.clock.now(),
            "service": service,
            # which cloud's listener answered, and the host (and port) the request reached
            "cloud": cloud,
            "host": request.host,
            "method": request.method,
            "path": request.path,
            "query": redact(request.query) if request.query else {},
            "status": None,
            "request_headers": {h: request.headers[h] for h in REQUEST_HEADERS if h in request.headers},
            "detail": {},
        }
        request[LOG_KEY] = entry
        response: web.StreamResponse | None = None
        try:
            if sim.faults.active:
                fault = sim.faults.match_http(service, request.method, request.path)
                if fault is not None:
                    entry["detail"]["fault"] = fault.id
                    if fault.latency:
                        await asyncio.sleep(fault.latency)
                    if fault.status is not None:
                        body = fault.body
                        text = body if isinstance(body, str) else ("" if body is None else json.dumps(body))
                        response = web.Response(
                            status=fault.status,
                            text=text,
                            content_type="text/plain" if isinstance(body, str) else "application/json",
                            headers=fault.headers,
                        )
            if response is None:
                response = await handler(request)
        except web.HTTPException as exc:
            entry["status"] = exc.status
            entry["response_headers"] = {h: exc.headers[h] for h in RESPONSE_HEADERS if h in exc.headers}
            raise
        except Exception:
            logger.exception("%s %s %s failed", service, request.method, request.path)
            response = web.Response(
                status=500,
                text=json.dumps({"error": "simulator internal error"}),
                content_type="application/json",
            )
        finally:
            entry["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
            sim.log.add(entry)
        entry["status"] = response.status
        logged = {h: response.headers[h] for h in RESPONSE_HEADERS if h in response.headers}
        if "Location" in logged:
            logged["Location"] = redact_url(logged["Location"])
        entry["response_headers"] = logged
        return response

    return middleware


class SimulatorServer:
    """Runs every service on its own loopback port, in the current asyncio loop."""

    def __init__(
        self,
        world: World,
        *,
        state_dir: Path,
        ports: dict[str, int] | None = None,
        settings: Settings | None = None,
        host: str = "127.0.0.1",
        state_file: Path | None = None,
        saved: dict[str, Any] | None = None,
        vaults: int = 1,
    ) -> None:
        """`saved`: a `Simulator.snapshot` to go on from (its world is `world`). `state_file`: where the state is
        kept while the server runs: shortly after every change and when it stops. `vaults`: how many Key Vaults to
        serve, each on a port (a host) of its own."""
        self.sim = Simulator(world, settings)
        self.sim.vaults_serve(vaults)
        if saved is not None:
            self.sim.restore(saved)
        self.state_dir = Path(state_dir)
        self.ports = {name: 0 for name in SERVICES} | dict(ports or {})
        self.host = host
        self._runners: list[web.AppRunner] = []
        self.env: dict[str, str] = {}
        self.ca_bundle: Path | None = None
        self.state_file = StateFile(state_file) if state_file is not None else None
        self._changed: asyncio.Event | None = None
        self._saver: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> dict[str, str]:
        """Start every service; return the environment that points a client at them."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # A simulator that keeps its state (the demo's) keeps its certificate too.
        material = kept_tls_material(self.state_dir) if self.state_file is not None else make_tls_material()
        _, bundle = write_ca_files(material, self.state_dir)
        self.ca_bundle = bundle
        ssl_context = material.server_context(self.state_dir)
        urls: dict[str, str] = {}
        for name in SERVICES:
            urls[name] = await self._listen(name, GLOBAL, self.ports[name], ssl_context)
        self.sim.set_urls(
            Urls(
                entra=urls["entra"],
                partner_center=urls["partner_center"],
                graph=urls["graph"],
                vault=urls["vault"] + "/",
            )
        )
        # the other vaults: a listener each, seeing the simulator through its vault's view
        for index, more in enumerate(self.sim.more_vaults, start=1):
            more.url = await self._listen("vault", GLOBAL, 0, ssl_context, view=VaultView(self.sim, index)) + "/"
        # each national cloud's own Entra ID, Graph and (21Vianet) Partner Center, on listeners of their own; US
        # Government's Partner Center is the global one
        for cloud in NATIONAL:
            own = {name: await self._listen(name, cloud, 0, ssl_context) for name in NATIONAL_SERVICES[cloud]}
            self.sim.set_national_urls(
                cloud,
                Urls(
                    entra=own["entra"],
                    partner_center=own.get("partner_center", urls["partner_center"]),
                    graph=own["graph"],
                    vault=urls["vault"] + "/",
                ),
            )
        self.env = self._build_env()
        self.sim.env = dict(self.env)
        if self.state_file is not None:
            self._changed = asyncio.Event()
            self._saver = asyncio.create_task(self._keep_saving(), name="simulator state saver")
            self.save()
        logger.info("simulator listening: %s", urls)
        return self.env

    async def _listen(
        self, name: str, cloud: str, port: int, ssl_context: Any, *, view: VaultView | None = None
    ) -> str:
        """Serve service `name` of `cloud` on `port` (0: a free one), through `view` when given (a vault besides the
        first, which serves no control surface); its base URL."""
        app = web.Application(
            middlewares=[_middleware(lambda: self.sim, name, self._mark_changed, cloud)], client_max_size=4 * 1024**2
        )
        # a national cloud's listeners see the simulator through its view (their URLs, issuers, apps)
        app[SIM_KEY] = cast(Simulator, view) if view is not None else self.sim.view(cloud)
        SERVICES[name](app)
        if cloud == GLOBAL and view is None:
            control.setup(app)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, port, ssl_context=ssl_context, backlog=1024)
        await site.start()
        self._runners.append(runner)
        return f"https://{self.host}:{runner.addresses[0][1]}"

    def _mark_changed(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def _keep_saving(self) -> None:
        """Write the state shortly after it changes: a burst of requests (a sign-in, a renewal) is one write."""
        changed = self._changed
        while changed is not None:
            await changed.wait()
            changed.clear()
            if self._closing:
                return
            await asyncio.sleep(SAVE_DELAY)
            try:
                # The snapshot is taken in the loop (no request runs meanwhile); only the writing leaves it.
                await asyncio.to_thread(self._write, self.sim.snapshot())
            except OSError:
                logger.exception("the simulator's state could not be written to %s", self.state_file)

    def _write(self, snapshot: dict[str, Any]) -> None:
        if self.state_file is not None:
            self.state_file.save(snapshot)

    def save(self) -> None:
        """Write the state now (in the loop's thread: nothing changes it meanwhile)."""
        self._write(self.sim.snapshot())

    def _build_env(self) -> dict[str, str]:
        world = self.sim.world
        urls = self.sim.urls
        cert = world.cpv_app.certificates[0] if world.cpv_app.certificates else None
        env = {
            "CPV_CLOUD": "custom",
            "CPV_AUTHORITY_HOST": urls.entra,
            "CPV_PARTNER_CENTER_URL": urls.partner_center,
            "CPV_GRAPH_URL": urls.graph,
            "CPV_CLIENT_ID": world.cpv_app.client_id,
            "CPV_CLIENT_SECRET": world.cpv_app.secrets[0].value if world.cpv_app.secrets else "",
        }
        if cert is not None:
            pem_path = self.state_dir / "cpv-app.pem"
            pem_path.write_text(cert.combined_pem(), encoding="utf-8")
            os.chmod(pem_path, 0o600)
            env["CPV_CLIENT_CERTIFICATE"] = str(pem_path)
            env["CPV_CLIENT_CERTIFICATE_THUMBPRINT"] = cert.thumbprint
        for cloud in NATIONAL:
            env.update(self._national_env(cloud))
        env.update(
            {
                "CPV_VENDOR_TENANT_ID": world.vendor.tenant_id,
                "CPV_SANDBOX_CLIENT_ID": world.sandbox_app.client_id,
                "CPV_SANDBOX_CLIENT_SECRET": world.sandbox_app.secrets[0].value if world.sandbox_app.secrets else "",
                "VAULT_URL": urls.vault,
                # every vault served, the first VAULT_URL's (a product given several reads them as VAULT_URLS)
                "SIMULATOR_VAULT_URLS": ",".join([urls.vault, *(more.url for more in self.sim.more_vaults)]),
                "AZURE_TENANT_ID": world.vendor.tenant_id,
                "AZURE_CLIENT_ID": world.vault_app.client_id,
                "AZURE_CLIENT_SECRET": world.vault_app.secrets[0].value if world.vault_app.secrets else "",
                "AZURE_AUTHORITY_HOST": urls.entra,
                "REQUESTS_CA_BUNDLE": str(self.ca_bundle),
                "SSL_CERT_FILE": str(self.ca_bundle),
                "SIMULATOR_CONTROL_URL": urls.control,
                # the App Service managed identity endpoint (IDENTITY_ENDPOINT, IDENTITY_HEADER on a host)
                "SIMULATOR_IDENTITY_ENDPOINT": f"{urls.entra}{managed_identity.PATH}",
                "SIMULATOR_IDENTITY_HEADER": managed_identity.identity_header(self.sim),
                # what the app registration is called (the vendor's name on the partner pages must be the same)
                "SIMULATOR_APP_NAME": world.cpv_app.display_name,
            }
        )
        return env

    def _national_env(self, cloud: str) -> dict[str, str]:
        """A national cloud's hosts and the vendor's app registered there, as the control panel reads them."""
        urls = self.sim.national_urls[cloud]
        prefix = f"CPV_{cloud.upper()}"
        env = {
            f"{prefix}_AUTHORITY_HOST": urls.entra,
            f"{prefix}_PARTNER_CENTER_URL": urls.partner_center,
            f"{prefix}_GRAPH_URL": urls.graph,
        }
        app = self.sim.world.national_app(cloud)
        if app is None:
            return env
        env[f"{prefix}_CLIENT_ID"] = app.client_id
        env[f"{prefix}_CLIENT_SECRET"] = app.secrets[0].value if app.secrets else ""
        if app.certificates:
            pem_path = self.state_dir / f"cpv-app-{cloud}.pem"
            pem_path.write_text(app.certificates[0].combined_pem(), encoding="utf-8")
            os.chmod(pem_path, 0o600)
            env[f"{prefix}_CLIENT_CERTIFICATE"] = str(pem_path)
        return env

    async def stop(self) -> None:
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        if self._saver is not None and self._changed is not None and self.state_file is not None:
            # let a write under way finish (it must not land after the last one), then write the last state
            self._closing = True
            self._changed.set()
            await self._saver
            self._saver = None
            self.save()
            logger.info("simulator state saved to %s", self.state_file)
        logger.info("simulator stopped")
