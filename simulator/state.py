"""The simulator's runtime state, shared by its services, and the settings tests can change."""

from __future__ import annotations

import copy
import dataclasses
import logging
import secrets
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field, fields
from typing import Any, cast

from simulator import grants
from simulator.clock import Clock
from simulator.clouds import CLOUDS, GLOBAL, NATIONAL, NationalCloud
from simulator.directory import MissingResource
from simulator.faults import FaultSet
from simulator.requestlog import RequestLog
from simulator.tokens import IssuedSecrets, Signer
from simulator.world import (
    ARM_APP_ID,
    GRAPH_APP_ID,
    GRAPH_RESOURCE,
    KEY_VAULT_APP_ID,
    PARTNER_CENTER_APP_ID,
    PARTNER_CENTER_RESOURCE,
    VAULT_RESOURCE,
    AppRegistration,
    World,
)

logger = logging.getLogger(__name__)

REFRESH_TOKEN_INACTIVITY = 90 * 86400
CODE_LIFETIME = 600
# the format of `Simulator.snapshot`; a file of another version is refused rather than half-read
SNAPSHOT_VERSION = 1
# sign-ins still on the sign-in page are kept across a restart for this long (entra.PENDING_LIFETIME)
PENDING_KEPT = 3600
RESOURCE_APP_IDS = {
    GRAPH_RESOURCE: GRAPH_APP_ID,
    PARTNER_CENTER_RESOURCE: PARTNER_CENTER_APP_ID,
    VAULT_RESOURCE: KEY_VAULT_APP_ID,
    "https://management.azure.com": ARM_APP_ID,
}


@dataclass
class Settings:
    """What tests and the command line may change while the simulator runs."""

    # Partner Center: requests per second per CPV application id (None: no throttle)
    pc_rate_limit: float | None = 50.0
    pc_burst: float | None = None
    # how an existing ApplicationConsent is answered: "409" or "400" ("Permission entry already exists")
    pc_consent_exists: str = "409"
    # an ApplicationConsent naming a resource whose service principal the customer tenant lacks: "refuse" (400,
    # nothing made) or "create" (Microsoft's resource service principal is made, then the consent). Both GUESSES:
    # Partner Center's pages are silent (FIDELITY.md, "Customer tenants")
    pc_consent_missing_resource: str = "refuse"
    pc_require_mfa: bool = True
    pc_require_admin_agent: bool = True
    # links.next.uri style: "v1" -> "/v1/customers?size=N"; "relative" -> "/customers?size=N"
    pc_next_link: str = "v1"
    pc_max_page_size: int = 500
    # where `ValidateMfa: true` gets its answer: "body" (a top-level `isMfaCompliant` field of a JSON object answer,
    # the header when the answer is not one) or "header" (an `isMfaCompliant` response header)
    pc_mfa_compliant_in: str = "body"
    # Key Vault per-vault limits (per `vault_window` seconds)
    vault_limits: bool = True
    vault_create_limit: int = 300
    vault_other_limit: int = 4000
    vault_window: float = 10.0
    # the Nth+1 PUT of one secret name is refused (None: no limit)
    vault_version_limit: int | None = 500
    # tokens
    access_token_lifetime: int = 3600
    # `wids` (the user's directory roles) in user access tokens for Partner Center and Key Vault, in the user's home
    # tenant. Entra emits it when the *resource* app's groupMembershipClaims asks for directory roles; nobody outside
    # Microsoft can see that setting for Microsoft's own resources, and no page says these tokens carry it, so it is
    # off unless a test turns it on. Graph's tokens carry it (Microsoft's sample of one does; see FIDELITY.md).
    access_token_wids: bool = False
    # Partner Center access tokens as opaque strings instead of JWTs (Partner Center looks them up): Microsoft says
    # its own APIs' tokens "might not always be a JWT that can be decoded" by a client (access-tokens.md).
    opaque_access_tokens: bool = False
    id_token_lifetime: int = 3600
    # Graph's page size for servicePrincipals and oauth2PermissionGrants when `$top` is not given (Graph's default
    # for directory objects is 100; tests make it small to page)
    graph_page_size: int = 100
    require_pkce: bool = True
    # keep every issued secret for /_simulator/issued (benchmarks turn this off to bound memory)
    record_issued: bool = True

    def update(self, changes: dict[str, Any]) -> None:
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
        if "pc_consent_exists" in changes and str(changes["pc_consent_exists"]) not in {"409", "400"}:
            raise ValueError("pc_consent_exists must be '409' or '400'")
        if "pc_consent_missing_resource" in changes and changes["pc_consent_missing_resource"] not in {
            "refuse",
            "create",
        }:
            raise ValueError("pc_consent_missing_resource must be 'refuse' or 'create'")
        if "pc_next_link" in changes and changes["pc_next_link"] not in {"v1", "relative"}:
            raise ValueError("pc_next_link must be 'v1' or 'relative'")
        if "pc_mfa_compliant_in" in changes and changes["pc_mfa_compliant_in"] not in {"body", "header"}:
            raise ValueError("pc_mfa_compliant_in must be 'body' or 'header'")
        if "graph_page_size" in changes and not (
            isinstance(changes["graph_page_size"], int) and 1 <= changes["graph_page_size"] <= 999
        ):
            raise ValueError("graph_page_size must be an integer from 1 to 999")
        for key, value in changes.items():
            setattr(self, key, str(value) if key == "pc_consent_exists" else value)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def copy(self) -> Settings:
        return Settings(**asdict(self))


@dataclass
class PendingAuthorization:
    txn: str
    tenant: str
    tid: str | None
    client_id: str
    redirect_uri: str
    response_mode: str
    scope: str
    state: str | None
    nonce: str | None
    code_challenge: str | None
    login_hint: str | None
    created_at: float
    prompt: str | None = None
    # the OIDC `claims` request parameter, as sent (JSON)
    claims: str | None = None


@dataclass
class CodeGrant:
    id: str
    client_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    user_oid: str
    tid: str
    amr: list[str]
    issued_at: float
    expires_at: float
    redeemed: bool = False
    claims: str | None = None


@dataclass
class RefreshGrant:
    id: str
    fingerprint: str
    user_oid: str
    home_tid: str
    client_id: str
    scope: str
    amr: list[str]
    issued_at: float
    origin: str
    parent: str | None = None
    redemptions: int = 0
    last_redeemed_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ApplicationConsentRecord:
    customer_tenant_id: str
    application_id: str
    display_name: str
    grants: list[dict[str, str]]
    created_at: float
    partner_tenant_id: str | None
    created_by: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def consent_grants(grants: list[dict[str, str]]) -> list[tuple[str, list[str]]]:
    """Partner Center's `applicationGrants` (`enterpriseApplicationId`, comma-separated `scope`) as (resource app
    id, permissions)."""
    return [
        (g["enterpriseApplicationId"].lower(), [name.strip() for name in g.get("scope", "").split(",") if name.strip()])
        for g in grants
    ]


def grants_view(store: dict[tuple[str, str], dict[str, set[str]]]) -> list[dict[str, Any]]:
    """The grants as JSON: [{tenant_id, client_id, grants: {resource: [permission, ...]}}]."""
    return [
        {
            "tenant_id": tid,
            "client_id": client,
            "grants": {resource: sorted(names, key=str.lower) for resource, names in by_resource.items()},
        }
        for (tid, client), by_resource in store.items()
    ]


class TokenBucket:
    """`rate` tokens per second up to `burst`, on real monotonic time."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def take(self) -> float:
        """0.0 when a token was taken, else the seconds until one is available."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class SlidingWindow:
    """At most `limit` events in any `window` seconds (real monotonic time)."""

    def __init__(self) -> None:
        self.events: deque[float] = deque()

    def take(self, limit: int, window: float) -> float:
        now = time.monotonic()
        while self.events and self.events[0] <= now - window:
            self.events.popleft()
        if len(self.events) >= limit:
            return self.events[0] + window - now
        self.events.append(now)
        return 0.0


@dataclass
class VaultState:
    """A Key Vault served besides the first: its secrets (a keyvault.VaultStore) and its own throttling windows, Key
    Vault's limits being per vault."""

    store: Any
    creates: SlidingWindow = field(default_factory=SlidingWindow)
    others: SlidingWindow = field(default_factory=SlidingWindow)
    url: str = ""


@dataclass
class Urls:
    entra: str = ""
    partner_center: str = ""
    graph: str = ""
    vault: str = ""

    @property
    def control(self) -> str:
        return f"{self.entra}/_simulator"


@dataclass
class EntraState:
    pending: dict[str, PendingAuthorization] = field(default_factory=dict)
    codes: dict[str, CodeGrant] = field(default_factory=dict)
    refresh_tokens: dict[str, RefreshGrant] = field(default_factory=dict)
    tokens_valid_from: dict[str, float] = field(default_factory=dict)
    # (tenant id, client id) -> resource -> the delegated permissions consented there (simulator/grants.py)
    grants: dict[tuple[str, str], dict[str, set[str]]] = field(default_factory=dict)
    redemptions_by_user: Counter[str] = field(default_factory=Counter)
    id_token_cache: dict[tuple[Any, ...], tuple[float, str]] = field(default_factory=dict)
    # opaque access token -> its claims (only with `opaque_access_tokens`; never persisted: they last an hour)
    opaque_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    grant_seq: int = 0


class Simulator:
    """Everything the services share: the world, the clock, keys, logs, faults and mutable state."""

    def __init__(self, world: World, settings: Settings | None = None, *, log_size: int = 100_000) -> None:
        from simulator.keyvault import VaultStore

        self._initial_world = world.to_dict()
        self._initial_settings = (settings or Settings()).copy()
        self._vault_store_type = VaultStore
        self.world = world
        self.settings = self._initial_settings.copy()
        self.clock = Clock()
        self.signer = Signer()
        # IDENTITY_HEADER of the host's managed identity endpoint (managed_identity.py); App Service rotates it
        self.identity_header = secrets.token_hex(16)
        self.issued = IssuedSecrets()
        self.log = RequestLog(maxlen=log_size)
        self.faults = FaultSet()
        self.urls = Urls()
        self.env: dict[str, str] = {}
        self.entra = EntraState()
        self.app_consents: dict[str, dict[str, ApplicationConsentRecord]] = {}
        # customer tenant id -> [requests still to throttle, Retry-After seconds] (control `throttle_graph`)
        self.graph_throttles: dict[str, list[int]] = {}
        self.pc_buckets: dict[str, TokenBucket] = {}
        self.vault = VaultStore()
        self.vault_creates = SlidingWindow()
        self.vault_others = SlidingWindow()
        # the vaults served besides the first (`vaults_serve`), each with its secrets and throttling windows
        self.more_vaults: list[VaultState] = []
        self._resource_aliases: dict[str, str] = {}
        # each national cloud's own Entra ID signing key and listeners (CloudView)
        self.national_signers: dict[str, Signer] = {}
        self.national_urls: dict[str, Urls] = {}
        self._views: dict[str, CloudView] = {}
        self._register_world_secrets()
        self._record_world_consents()

    # ----- lifecycle -----
    def reset(self) -> None:
        """Back to the world and settings the simulator started with; logs, faults, clock cleared."""
        # A deep copy: the world's lists and maps must not be the snapshot's, or a change survives the next reset.
        self.world = World.from_dict(copy.deepcopy(self._initial_world))
        self.settings = self._initial_settings.copy()
        self.clock.reset()
        self.issued.clear()
        self.issued.enabled = self.settings.record_issued
        self.log.clear()
        self.faults.clear()
        self.entra = EntraState()
        self.app_consents = {}
        self.graph_throttles = {}
        self.pc_buckets = {}
        self.vault = self._vault_store_type()
        self.vault_creates = SlidingWindow()
        self.vault_others = SlidingWindow()
        self.more_vaults = [VaultState(self._vault_store_type(), url=v.url) for v in self.more_vaults]
        self.signer.clear_cache()
        for signer in self.national_signers.values():
            signer.clear_cache()
        self._register_world_secrets()
        self._record_world_consents()
        logger.info("simulator reset")

    def _record_world_consents(self) -> None:
        """Partner Center's record of the consents a world arrives with (its showcase): one per world app whose
        service principal a customer tenant holds."""
        for tid, directory in self.world.directories.items():
            for app in self.world.apps():
                client = directory.by_app_id(app.client_id)
                if client is None or app.client_id in self.app_consents.get(tid, {}):
                    continue
                by_id = {sp.id: sp.app_id for sp in directory.service_principals}
                self.app_consents.setdefault(tid, {})[app.client_id] = ApplicationConsentRecord(
                    customer_tenant_id=tid,
                    application_id=app.client_id,
                    display_name=app.display_name,
                    grants=[
                        {"enterpriseApplicationId": by_id.get(g.resource_id, ""), "scope": g.scope.replace(" ", ",")}
                        for g in directory.grants_of(client.id)
                    ],
                    created_at=client.created,
                    partner_tenant_id=None,
                    created_by=None,
                )

    def graph_throttle_take(self, tenant_id: str) -> int | None:
        """The Retry-After seconds when Graph throttles this request of the tenant (and one fewer to go), else
        None."""
        held = self.graph_throttles.get(tenant_id.lower())
        if not held or held[0] <= 0:
            return None
        held[0] -= 1
        if held[0] <= 0:
            del self.graph_throttles[tenant_id.lower()]
        return held[1]

    def _register_world_secrets(self) -> None:
        self.issued.enabled = self.settings.record_issued
        for value in self.world.secret_values():
            self.issued.add("client_secret" if "SIMCANARY" in value else "private_key", value)

    # ----- persistence (simulator/persistence.py writes and reads the file) -----
    def snapshot(self) -> dict[str, Any]:
        """Everything a restarted simulator needs to go on where this one stopped: the world (through
        `World.to_dict`, so whatever it holds is kept), the clock, the token-signing key, every refresh token and
        code with its grant state, consents, and the vault. Simulated secrets included; faults, logs, throttles
        and caches are not kept. Expired codes, sign-ins and refresh tokens are left out."""
        now = self.clock.now()
        entra = self.entra
        return {
            "version": SNAPSHOT_VERSION,
            "world": self.world.to_dict(),
            "clock_offset": self.clock.offset,
            "signer": self.signer.to_dict(),
            "national_signers": {cloud: signer.to_dict() for cloud, signer in self.national_signers.items()},
            "entra": {
                "pending": [asdict(p) for p in entra.pending.values() if now - p.created_at < PENDING_KEPT],
                "codes": {value: asdict(g) for value, g in entra.codes.items() if g.expires_at > now},
                "refresh_tokens": {
                    value: grant.to_dict()
                    for value, grant in entra.refresh_tokens.items()
                    if now - grant.issued_at <= REFRESH_TOKEN_INACTIVITY
                },
                "tokens_valid_from": dict(entra.tokens_valid_from),
                "grants": grants_view(entra.grants),
                "redemptions_by_user": dict(entra.redemptions_by_user),
                "grant_seq": entra.grant_seq,
            },
            "app_consents": {
                customer: {app: record.to_dict() for app, record in apps.items()}
                for customer, apps in self.app_consents.items()
            },
            "vault": self.vault.to_dict(),
            "more_vaults": [more.store.to_dict() for more in self.more_vaults],
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Take up a `snapshot` (the world itself is the one this simulator was made with:
        `World.from_dict(data["world"])`)."""
        self.clock.offset = float(data.get("clock_offset", 0.0))
        if data.get("signer"):
            self.signer = Signer(data["signer"])
        self.national_signers = {cloud: Signer(saved) for cloud, saved in (data.get("national_signers") or {}).items()}
        saved = data.get("entra", {})
        entra = EntraState()
        entra.pending = {p["txn"]: PendingAuthorization(**p) for p in saved.get("pending", [])}
        entra.codes = {value: CodeGrant(**g) for value, g in saved.get("codes", {}).items()}
        entra.refresh_tokens = {value: RefreshGrant(**g) for value, g in saved.get("refresh_tokens", {}).items()}
        entra.tokens_valid_from = {k: float(v) for k, v in saved.get("tokens_valid_from", {}).items()}
        entra.grants = {
            (g["tenant_id"], g["client_id"]): {resource: set(names) for resource, names in g["grants"].items()}
            for g in saved.get("grants", [])
        }
        # a file written before grants were kept per resource holds the scope strings of each sign-in
        for old in saved.get("user_consents", []):
            app = self.world.app(old["client_id"])
            registration = app.delegated_permissions if app is not None else {}
            store = entra.grants.setdefault((old["tenant_id"], old["client_id"]), {})
            grants.record(store, grants.from_scope_strings(old["scopes"], registration))
        entra.redemptions_by_user = Counter(saved.get("redemptions_by_user", {}))
        entra.grant_seq = int(saved.get("grant_seq", 0))
        self.entra = entra
        self.app_consents = {
            customer: {app: ApplicationConsentRecord(**record) for app, record in apps.items()}
            for customer, apps in data.get("app_consents", {}).items()
        }
        self.vault = self._vault_store_type.from_dict(data.get("vault", {}))
        for more, saved_vault in zip(self.more_vaults, data.get("more_vaults", []), strict=False):
            more.store = self._vault_store_type.from_dict(saved_vault)
        # a file written before customer tenants held service principals and grants: its consents make them
        for tid, apps in self.app_consents.items():
            for app_id, record in apps.items():
                directory = self.world.directory(tid)
                app = self.world.app(app_id)
                if directory is None or app is None or directory.by_app_id(app_id) is not None:
                    continue
                try:
                    self.world.consent_app(tid, app, consent_grants(record.grants), now=record.created_at)
                except MissingResource:
                    logger.warning("the consent of %s in %s names a resource the tenant lacks", app_id, tid)
        # the leak search (/_simulator/issued) goes on finding the refresh tokens issued before the restart
        for value in entra.refresh_tokens:
            self.issued.add("refresh_token", value)

    def vaults_serve(self, count: int) -> None:
        """Serve `count` Key Vaults (the first is `vault`): each added one empty, with throttling windows of its own."""
        self.more_vaults = self.more_vaults[: max(count - 1, 0)]
        while len(self.more_vaults) < count - 1:
            self.more_vaults.append(VaultState(self._vault_store_type()))

    def set_urls(self, urls: Urls) -> None:
        self.urls = urls
        aliases = {
            PARTNER_CENTER_RESOURCE: PARTNER_CENTER_RESOURCE,
            PARTNER_CENTER_APP_ID: PARTNER_CENTER_RESOURCE,
            GRAPH_RESOURCE: GRAPH_RESOURCE,
            GRAPH_APP_ID: GRAPH_RESOURCE,
            VAULT_RESOURCE: VAULT_RESOURCE,
            KEY_VAULT_APP_ID: VAULT_RESOURCE,
            "https://management.azure.com": "https://management.azure.com",
            ARM_APP_ID: "https://management.azure.com",
        }
        # an app that exposes an API (its Application ID URI) is a resource of its own, also named by its client id
        for app in self.world.apps():
            for uri in app.identifier_uris:
                aliases[uri] = uri
                aliases[app.client_id] = uri
        # the simulator's own URLs stand for the service they simulate (a product that builds its
        # scopes from CPV_PARTNER_CENTER_URL / CPV_GRAPH_URL / VAULT_URL still gets a usable token)
        for url, resource in (
            (urls.partner_center, PARTNER_CENTER_RESOURCE),
            (urls.graph, GRAPH_RESOURCE),
            (urls.vault, VAULT_RESOURCE),
        ):
            if url:
                aliases[url.rstrip("/")] = resource
        # this cloud's resource identifiers (graph.microsoft.us, ...) stand for the canonical ones; in a national cloud
        # the global identifiers that differ from its own mean nothing ("Any permission scope value ... that contains
        # the Microsoft Graph domain MUST use the domain of the Microsoft Graph service root endpoint for the national
        # cloud deployment"): the application ids, the same in every cloud, stay
        for global_id in self.national.foreign_identifiers():
            aliases.pop(global_id, None)
        aliases.update(self.national.aliases())
        self._resource_aliases = {k.lower(): v for k, v in aliases.items()}

    def canonical_resource(self, resource: str) -> str | None:
        return self._resource_aliases.get(resource.rstrip("/").lower())

    def resource_audiences(self, resource: str) -> set[str]:
        """Every `aud` value a service accepts as meaning itself."""
        return {alias for alias, canonical in self._resource_aliases.items() if canonical == resource} | {
            self.audience_for(resource)
        }

    @property
    def authority(self) -> str:
        return self.urls.entra

    # ----- the cloud these listeners belong to (CloudView for a national cloud's) -----
    cloud = GLOBAL

    @property
    def national(self) -> NationalCloud:
        return CLOUDS[self.cloud]

    def audience_for(self, resource: str) -> str:
        """The `aud` this cloud's Entra ID writes for a canonical resource identifier."""
        return self.national.audience(resource)

    def sts_issuer(self, tid: str) -> str:
        """The issuer of this cloud's v1.0 access tokens, which Microsoft's own resources receive."""
        return f"{self.national.sts_host}/{tid}/"

    def app_here(self, client_id: str) -> AppRegistration | None:
        """An app registered in this cloud: another cloud's registrations are unknown here."""
        app = self.world.app(client_id)
        return app if app is not None and app.cloud == self.cloud else None

    def tenant_here(self, kind: str, obj: Any) -> bool:
        """Whether a tenant `World.tenant` found lives in this cloud."""
        return self.world.tenant_cloud(kind, obj) == self.cloud

    def signer_for(self, cloud: str) -> Signer:
        if cloud == GLOBAL:
            return self.signer
        found = self.national_signers.get(cloud)
        if found is None:
            found = self.national_signers[cloud] = Signer()
        return found

    def view(self, cloud: str) -> Simulator:
        """The simulator as `cloud`'s listeners see it (one view per cloud)."""
        if cloud == GLOBAL:
            return self
        if cloud not in self._views:
            self._views[cloud] = CloudView(self, cloud)
        return cast(Simulator, self._views[cloud])

    def set_national_urls(self, cloud: str, urls: Urls) -> None:
        """Where `cloud`'s own listeners are, once they listen."""
        self.national_urls[cloud] = urls
        Simulator.set_urls(self.view(cloud), urls)

    def next_grant_id(self, prefix: str) -> str:
        self.entra.grant_seq += 1
        return f"{prefix}-{self.entra.grant_seq}"


class CloudView:
    """The simulator as one national cloud's listeners see it: its own URLs, issuers, audiences, signing key and app
    registrations (the Simulator's methods, run on this view); the world, clock, state, logs and faults are the
    shared simulator's."""

    _OWN = frozenset({"_sim", "cloud", "urls", "_resource_aliases"})

    def __init__(self, sim: Simulator, cloud: str) -> None:
        if cloud not in NATIONAL:
            raise ValueError(f"unknown national cloud {cloud!r}")
        object.__setattr__(self, "_sim", sim)
        object.__setattr__(self, "cloud", cloud)
        Simulator.set_urls(cast(Simulator, self), sim.national_urls.get(cloud) or Urls())

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_sim"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self._sim, name, value)

    @property
    def signer(self) -> Signer:
        return self._sim.signer_for(self.cloud)

    national = Simulator.national
    authority = Simulator.authority
    canonical_resource = Simulator.canonical_resource
    resource_audiences = Simulator.resource_audiences
    audience_for = Simulator.audience_for
    sts_issuer = Simulator.sts_issuer
    app_here = Simulator.app_here
    tenant_here = Simulator.tenant_here


class VaultView:
    """The simulator as the listener of a vault served besides the first sees it: that vault's secrets, throttling
    windows and URL as `vault`, `vault_creates`, `vault_others` and `urls.vault`; everything else the shared
    simulator's (keyvault.py's handlers run unchanged on it)."""

    def __init__(self, sim: Simulator, index: int) -> None:
        object.__setattr__(self, "_sim", sim)
        object.__setattr__(self, "_index", index)

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_sim"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a vault's view does not change {name}")

    @property
    def _state(self) -> VaultState:
        return cast(VaultState, self._sim.more_vaults[self._index - 1])

    @property
    def vault(self) -> Any:
        return self._state.store

    @property
    def vault_creates(self) -> SlidingWindow:
        return self._state.creates

    @property
    def vault_others(self) -> SlidingWindow:
        return self._state.others

    @property
    def urls(self) -> Urls:
        return dataclasses.replace(self._sim.urls, vault=self._state.url)
