"""The configuration contract: environment variables in, validated settings out (`load_config`). Every problem is
reported at once, naming its variable; production has no default for anything secret or site-specific."""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.validators import validate_email

from cpv import clouds
from cpv.branding import VENDOR_NAME_MAX, Vendor, logo_data_uri
from cpv.keys import KeyPair, decode_key, new_key_pair, public_key_of

EMBEDDED = "embedded"
PRODUCTION = "production"
MODES = (EMBEDDED, PRODUCTION)
IN_PRODUCTION = "in production (CPV_MODE=production)"

BROKER_SCHEMES = {"redis", "rediss", "amqp", "amqps", "pyamqp", "filesystem", "sqla+sqlite", "memory"}
RESULT_SCHEMES = {"redis", "rediss", "file", "db+sqlite", "db+postgresql", "rpc"}
VAULT_BACKENDS = ("local", "azure")
# What a process is for (CPV_PROCESS_ROLE), which decides the secrets it may hold: the public web tier seals tokens
# and opens none; workers and the token API open them; beat needs only the broker; migrate only the database; all
# is one process doing everything (the embedded default).
WEB = "web"
WORKER = "worker"
API = "api"
BEAT = "beat"
MIGRATE = "migrate"
ALL = "all"
PROCESS_ROLES = (WEB, WORKER, API, BEAT, MIGRATE, ALL)
OPENING_ROLES = (WORKER, API, ALL)
SERVING_ROLES = (WEB, WORKER, API, ALL)
# What production does not ask of a process that serves nothing: beat only queues work on the broker, migrate only
# changes the database's schema.
NOT_NEEDED = {
    BEAT: frozenset({"DJANGO_SECRET_KEY", "CPV_BASE_URL", "DATABASE_URL", "CPV_CLIENT_ID"}),
    MIGRATE: frozenset({"DJANGO_SECRET_KEY", "CPV_BASE_URL", "CELERY_BROKER_URL", "CPV_CLIENT_ID"}),
}
LOG_FORMATS = ("text", "json")

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
# Resources Microsoft retired: a grant to one consents a dead API in every customer tenant. Azure AD Graph
# ("Azure AD Graph is retired", Microsoft Graph's migration pages: its API stopped on 2025-08-31) is still granted
# by Microsoft's own CPV sample, so a vendor who copies it would be refused here with the way out.
RETIRED_RESOURCES = {
    "00000002-0000-0000-c000-000000000000": (
        "Azure AD Graph (00000002-0000-0000-c000-000000000000) was retired by Microsoft on 2025-08-31: grant the "
        f"same permissions on Microsoft Graph ({GRAPH_APP_ID}) instead"
    ),
}
DEFAULT_APPLICATION_GRANTS: dict[str, Any] = {
    "displayName": "Control Panel Vendor",
    "applicationGrants": [
        {
            "enterpriseApplicationId": GRAPH_APP_ID,
            "scope": "Domain.ReadWrite.All,User.ReadWrite.All,Directory.Read.All",
        }
    ],
}


GLOBAL_ADMIN_EVIDENCE = ("require", "warn")
# Who may sign in to the dashboard with a password: only admins (break-glass beside Microsoft's sign-in), or all.
STAFF_PASSWORD_SIGN_IN = ("admins", "all")
# A password sign-in's second factor (TOTP): required of every account, or asked only of accounts that enrolled one.
STAFF_TOTP = ("required", "enrolled")
# An Entra ID authentication context id (Conditional Access): c1 to c99.
AUTH_CONTEXT_ID = re.compile(r"^c([1-9][0-9]?)$")


class ConfigError(ImproperlyConfigured):
    """The environment does not describe a runnable control panel. The message lists every problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"The control panel's configuration is not usable:\n{lines}")


SECRET = "secret"  # noqa: S105 - the name of a credential kind, not a secret
CERTIFICATE = "certificate"
# A user-assigned managed identity trusted by the app registration as a federated identity credential: msal is given
# a client assertion, the managed identity's token for the cloud's token-exchange audience.
MANAGED_IDENTITY = "managed_identity"


@dataclass(frozen=True)
class Credential:
    """One credential of an app registration: a client secret, a certificate with its private key, in a PEM file
    or in Azure Key Vault (`certificate_path` is then the certificate's https:// URL), or a user-assigned managed
    identity the registration trusts (`managed_identity_client_id`, the identity's client id). `source` names where
    it was configured (a variable and a position), for the words an operator reads; the secret never reaches a
    repr."""

    kind: str  # SECRET, CERTIFICATE or MANAGED_IDENTITY
    secret: str = field(default="", repr=False)
    certificate_path: str = ""
    source: str = ""
    managed_identity_client_id: str = ""

    @property
    def label(self) -> str:
        if self.kind == MANAGED_IDENTITY:
            return f"the managed identity {self.managed_identity_client_id}" + (
                f" ({self.source})" if self.source else ""
            )
        if self.kind == CERTIFICATE:
            return f"the certificate {self.certificate_path}" + (f" ({self.source})" if self.source else "")
        return "the client secret" + (f" ({self.source})" if self.source else "")


_KEY_VAULT_CERTIFICATE = re.compile(
    r"^https://(?P<host>[^/?#@\s]+)/certificates/(?P<name>[0-9A-Za-z-]{1,127})(?:/(?P<version>[0-9A-Fa-f]{32}))?/?$"
)


@dataclass(frozen=True)
class KeyVaultCertificate:
    """A certificate kept in Azure Key Vault, named by its URL in a <prefix>_CLIENT_CERTIFICATE list. Its private key
    is read as the secret of the same name (Key Vault's addressable secret), its latest version unless one is
    named."""

    vault_url: str
    name: str
    version: str = ""


def key_vault_certificate(reference: str) -> KeyVaultCertificate | None:
    """The Key Vault certificate `reference` names (https://<vault>/certificates/<name>[/<version>]), else None."""
    match = _KEY_VAULT_CERTIFICATE.match(reference.strip())
    if match is None:
        return None
    return KeyVaultCertificate(
        vault_url=f"https://{match['host']}/", name=match["name"], version=(match["version"] or "").lower()
    )


@dataclass(frozen=True)
class AppCredential:
    """One Entra ID app registration the control panel signs in as, with its credentials newest first
    (`credentials`): requests use the newest that Entra accepts. Built from `client_secret` and `certificate_path`
    alone, it holds those two (the certificate first). `tenant_id` is the tenant the app is registered in (its
    client-credentials probe and the read of its own registration go there); empty when unknown. The secrets never
    reach a repr."""

    client_id: str
    client_secret: str = field(default="", repr=False)
    certificate_path: str = ""
    credentials: tuple[Credential, ...] = ()
    tenant_id: str = ""

    def __post_init__(self) -> None:
        if not self.credentials:
            made = []
            if self.certificate_path:
                made.append(Credential(CERTIFICATE, certificate_path=self.certificate_path))
            if self.client_secret:
                made.append(Credential(SECRET, secret=self.client_secret))
            object.__setattr__(self, "credentials", tuple(made))

    @property
    def configured(self) -> bool:
        return bool(self.client_id and self.credentials)


@dataclass(frozen=True)
class Config:
    mode: str
    debug: bool
    secret_key: str = field(repr=False)
    base_url: str
    allowed_hosts: list[str]
    database: dict[str, Any] = field(repr=False)
    broker_url: str = field(repr=False)
    result_backend: str | None = field(repr=False)
    broker_transport_options: dict[str, Any]
    task_soft_time_limit: int
    task_time_limit: int
    visibility_timeout: int
    verify_queue: str
    cloud: clouds.Cloud
    app: AppCredential
    sandbox_app: AppCredential | None
    # (national cloud, environment) -> the app registered in that cloud (CPV_USGOV_*, CPV_CHINA_SANDBOX_*, ...)
    national_apps: dict[tuple[str, str], AppCredential]
    # With CPV_CLOUD=custom: a national cloud's own custom hosts (CPV_USGOV_AUTHORITY_HOST, ...)
    custom_clouds: dict[str, clouds.Cloud]
    vault_backend: str
    vault_url: str
    # Every Key Vault partners' tokens may live in (VAULT_URLS), the first one VAULT_URL's
    vault_urls: tuple[str, ...]
    vault_keys: list[bytes] = field(repr=False)
    vault_deleted_secret_policy: str
    process_role: str
    email: dict[str, Any] = field(repr=False)
    default_from_email: str
    log_format: str
    log_level: str
    trust_proxy: bool
    ssl_redirect: bool
    self_onboarding: bool
    readyz_token: str
    staff_tenant_id: str
    staff_password_sign_in: str
    staff_totp: str
    staff_auth_context: str
    invitation_max_age_days: int
    signin_max_failures: int
    signin_lockout_minutes: int
    consent_flow_minutes: int
    global_admin_evidence: str
    cache: dict[str, Any]
    application_grants: dict[str, Any]
    var_dir: Path
    renewal_interval_days: int = 7
    renewal_max_attempts: int = 5
    pc_requests_per_second: int = 48
    vault_creates_per_second: int = 29
    consent_pullers: int = 8
    consent_batch: int = 10
    throttle_url: str = field(default="", repr=False)
    vendor: Vendor = field(default_factory=Vendor)
    session_max_age_hours: int = 8
    vault_public_key: bytes | None = None
    vault_private_keys: list[bytes] = field(default_factory=list, repr=False)
    vault_reader_client_id: str = ""
    api_tenant_id: str = ""
    api_audiences: tuple[str, ...] = ()
    api_rate_limit: int = 600

    @property
    def production(self) -> bool:
        return self.mode == PRODUCTION

    @property
    def missing_for_consent(self) -> list[str]:
        """What the site still needs before a partner can consent (shown to staff, not raised)."""
        missing = []
        if not self.app.client_id:
            missing.append("CPV_CLIENT_ID")
        if not self.app.credentials:
            missing.append("CPV_CLIENT_MANAGED_IDENTITY, CPV_CLIENT_CERTIFICATE or CPV_CLIENT_SECRET")
        return missing


# What a section reader returns: its Config fields by name.
Part = dict[str, Any]


class _Reader:
    """django-environ over a given mapping, collecting problems instead of stopping at the first."""

    def __init__(self, environ_map: Mapping[str, str]) -> None:
        self.env = environ.Env()
        self.env.ENVIRON = dict(environ_map)
        self.problems: list[str] = []
        # Variables production requires of a serving process that this process's role does without (beat, migrate).
        self.not_needed: frozenset[str] = frozenset()

    def raw(self, name: str) -> str | None:
        value = self.env.ENVIRON.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def in_production(self, name: str, production: bool) -> str | None:
        """The variable, which production mode requires and embedded mode may leave unset (None)."""
        return self.required(name, IN_PRODUCTION) if production and name not in self.not_needed else self.raw(name)

    def bool(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        self.problems.append(f"{name} must be true or false, got {value!r}")
        return default

    def int(self, name: str, default: int, *, minimum: int = 1) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            self.problems.append(f"{name} must be a whole number, got {value!r}")
            return default
        if number < minimum:
            self.problems.append(f"{name} must be at least {minimum}, got {number}")
            return default
        return number

    def choice(self, name: str, default: str, choices: tuple[str, ...] | list[str]) -> str:
        value = self.raw(name)
        if value is None:
            return default
        if value not in choices:
            self.problems.append(f"{name} must be one of {', '.join(choices)}, got {value!r}")
            return default
        return value

    def required(self, name: str, why: str) -> str | None:
        value = self.raw(name)
        if value is None:
            self.problems.append(f"{name} is required {why}")
        return value


def _var_file(var_dir: Path, name: str, *, generate: bool, make: Callable[[], str] | None = None) -> str | None:
    """A value kept in an owner-only file under var/, made by `make` on first use when `generate` (a racing second
    process reads the first's)."""
    path = var_dir / name
    if path.exists():
        return path.read_text().strip() or None
    if not generate:
        return None
    var_dir.mkdir(parents=True, exist_ok=True)
    value = (make or (lambda: secrets.token_urlsafe(50)))()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip() or None
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def new_vault_key() -> str:
    """A key for the embedded vault: 32 random bytes, URL-safe base64 (the format of VAULT_KEY)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def parse_vault_keys(value: str) -> list[bytes]:
    """`VAULT_KEY`: one or more URL-safe base64 keys of 32 bytes, comma-separated, newest first."""
    keys = []
    for index, part in enumerate(p.strip() for p in value.split(",")):
        if not part:
            raise ValueError(f"key {index + 1} is empty")
        try:
            key = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        except (binascii.Error, ValueError):
            raise ValueError(f"key {index + 1} is not URL-safe base64") from None
        if len(key) != 32:
            raise ValueError(f"key {index + 1} decodes to {len(key)} bytes; each key must be 32 bytes")
        keys.append(key)
    return keys


def parse_application_grants(value: str) -> dict[str, Any]:
    """`CPV_APPLICATION_GRANTS`: JSON with `displayName` and `applicationGrants` (or the list alone), each grant an
    `enterpriseApplicationId` GUID and a comma-separated `scope`."""
    data = json.loads(value)
    if isinstance(data, list):
        data = {"displayName": DEFAULT_APPLICATION_GRANTS["displayName"], "applicationGrants": data}
    if not isinstance(data, dict):
        raise ValueError("must be a JSON object or a JSON list of grants")
    grants = data.get("applicationGrants")
    if not isinstance(grants, list) or not grants:
        raise ValueError("applicationGrants must be a non-empty list")
    seen = set()
    for grant in grants:
        if not isinstance(grant, dict):
            raise ValueError("each grant must be an object with enterpriseApplicationId and scope")
        app_id = str(grant.get("enterpriseApplicationId", ""))
        scope = grant.get("scope")
        try:
            uuid.UUID(app_id)
        except ValueError:
            raise ValueError(f"enterpriseApplicationId {app_id!r} is not a GUID") from None
        if app_id.lower() in RETIRED_RESOURCES:
            raise ValueError(RETIRED_RESOURCES[app_id.lower()])
        if not isinstance(scope, str) or not [s for s in scope.split(",") if s.strip()]:
            raise ValueError(f"the grant for {app_id} needs a comma-separated scope")
        if app_id.lower() in seen:
            raise ValueError(f"{app_id} appears twice: give one grant per resource, with all its scopes in one scope")
        seen.add(app_id.lower())
    name = data.get("displayName")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("displayName must be a non-empty string")
    return {"displayName": name.strip(), "applicationGrants": grants}


def _vendor(r: _Reader, *, production: bool) -> Vendor:
    """CPV_VENDOR_NAME (required in production), CPV_VENDOR_SUPPORT_EMAIL and CPV_VENDOR_LOGO."""
    name = (
        r.required(
            "CPV_VENDOR_NAME",
            "in production (CPV_MODE=production): partners read it on every page and email beside Microsoft's "
            "sign-in, which shows the app registration's display name; set it to that same name",
        )
        if production
        else r.raw("CPV_VENDOR_NAME")
    ) or ""
    if len(name) > VENDOR_NAME_MAX or any(ord(c) < 32 for c in name):
        r.problems.append(f"CPV_VENDOR_NAME must be one line of at most {VENDOR_NAME_MAX} characters")
        name = ""
    support = r.raw("CPV_VENDOR_SUPPORT_EMAIL") or ""
    if support:
        try:
            validate_email(support)
        except ValidationError:
            r.problems.append(f"CPV_VENDOR_SUPPORT_EMAIL must be an email address, got {support!r}")
            support = ""
    logo_path = r.raw("CPV_VENDOR_LOGO") or ""
    logo = ""
    if logo_path:
        try:
            logo = logo_data_uri(Path(logo_path))
        except ValueError as exc:
            r.problems.append(f"CPV_VENDOR_LOGO names {logo_path!r}, which {exc}")
    return Vendor(name=name, support_email=support, logo_path=logo_path if logo else "", logo_data_uri=logo)


def _url_scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def _is_redis(url: str) -> bool:
    return _url_scheme(url) in {"redis", "rediss"}


def _filesystem_broker(var_dir: Path) -> tuple[str, dict[str, Any]]:
    base = var_dir / "celery"
    folders = {name: base / name for name in ("queue", "processed", "control")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    return "filesystem://", {
        "data_folder_in": str(folders["queue"]),
        "data_folder_out": str(folders["queue"]),
        "processed_folder": str(folders["processed"]),
        "control_folder": str(folders["control"]),
        "store_processed": False,
        # How often an idle worker looks at the folder (kombu's default is each second): a task starts sooner, and a
        # stopping worker notices sooner.
        "polling_interval": 0.2,
    }


def _secrets(r: _Reader, *, production: bool, var_dir: Path) -> Part:
    """DJANGO_DEBUG (off in production) and DJANGO_SECRET_KEY (embedded keeps a generated one under var/)."""
    debug = r.bool("DJANGO_DEBUG", False)
    if production and debug:
        r.problems.append("DJANGO_DEBUG must be off in production (CPV_MODE=production)")
    secret_key = r.in_production("DJANGO_SECRET_KEY", production)
    if secret_key is None and not production:
        secret_key = _var_file(var_dir, "secret.key", generate=True)
    if production and secret_key is not None and (len(secret_key) < 50 or len(set(secret_key)) < 5):
        r.problems.append("DJANGO_SECRET_KEY must be at least 50 random characters")
    return {"debug": debug, "secret_key": secret_key or ""}


def _address(r: _Reader, *, production: bool) -> Part:
    """CPV_BASE_URL (redirect URIs are built from it, never from Host) and DJANGO_ALLOWED_HOSTS, with its host."""
    base_url = r.in_production("CPV_BASE_URL", production) or "http://127.0.0.1:8000"
    parts = urlsplit(base_url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        r.problems.append(f"CPV_BASE_URL must be an http(s):// URL with a host, got {base_url!r}")
    elif production and parts.scheme != "https":
        r.problems.append("CPV_BASE_URL must be https:// in production")
    elif parts.path not in {"", "/"} or parts.query or parts.fragment:
        r.problems.append(f"CPV_BASE_URL must be the site's root URL with no path, got {base_url!r}")
    hosts_raw = r.raw("DJANGO_ALLOWED_HOSTS")
    allowed_hosts = [h.strip() for h in hosts_raw.split(",") if h.strip()] if hosts_raw else []
    if parts.hostname and parts.hostname not in allowed_hosts:
        allowed_hosts.insert(0, parts.hostname)
    if not production:
        allowed_hosts += [h for h in ("127.0.0.1", "localhost", "[::1]") if h not in allowed_hosts]
    return {"base_url": base_url.rstrip("/"), "allowed_hosts": allowed_hosts}


def _database(r: _Reader, *, production: bool, var_dir: Path) -> dict[str, Any]:
    """DATABASE_URL (PostgreSQL in production; embedded: SQLite under var/) and DATABASE_CONN_MAX_AGE."""
    database_url = r.in_production("DATABASE_URL", production)
    if database_url is None and not production:
        var_dir.mkdir(parents=True, exist_ok=True)
        database_url = f"sqlite:///{var_dir / 'db.sqlite3'}"
    if database_url is None:
        return {}
    scheme = _url_scheme(database_url)
    if scheme not in {"sqlite", "postgres", "postgresql", "pgsql"}:
        r.problems.append(
            "DATABASE_URL must be a postgres:// or sqlite:/// URL"
            + (f", got scheme {scheme!r}" if scheme else ", got something that is not a URL")
        )
        return {}
    try:
        database = environ.Env.db_url_config(database_url)
    except (ImproperlyConfigured, ValueError) as exc:
        r.problems.append(f"DATABASE_URL could not be read: {exc.__class__.__name__}")
        return {}
    if database["ENGINE"].endswith("postgresql"):
        database.setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
        # No JIT: PostgreSQL compiles any plan costed over jit_above_cost, ~150 ms each time on this product's short
        # queries (the overview's needs-attention ranking went past it at 10,000 partners). A random page read priced
        # as on SSD or memory (1.1, not the spinning disk's 4): with 4, the overview joined 100,000 tokens and
        # counters by hash to rank 5,000 partners instead of reading their rows by index (85 ms against 55). A URL's
        # ?options= wins.
        database["OPTIONS"].setdefault("options", "-c jit=off -c random_page_cost=1.1")
        database["CONN_MAX_AGE"] = r.int("DATABASE_CONN_MAX_AGE", 60, minimum=0)
        database["CONN_HEALTH_CHECKS"] = True
    elif production:
        r.problems.append("DATABASE_URL must point at PostgreSQL in production")
    else:
        # The embedded database is shared by the web server and the worker's processes: a writer waits for another
        # (up to 20 s) instead of failing, a transaction takes its write lock when it begins (no deadlock upgrading a
        # read), and readers never block the writer (WAL).
        database.setdefault("OPTIONS", {}).update(
            timeout=20,
            transaction_mode="IMMEDIATE",
            init_command="PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        )
    database["ATOMIC_REQUESTS"] = False
    return database


# A queue's name: what Redis keys and the embedded broker's file names take without quoting.
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _celery(r: _Reader, *, production: bool, var_dir: Path) -> Part:
    """Celery's time limits, broker (embedded needs no server), result backend and the verification's queue."""
    task_soft = r.int("CELERY_TASK_SOFT_TIME_LIMIT", 300)
    task_hard = r.int("CELERY_TASK_TIME_LIMIT", 360)
    visibility = r.int("CELERY_VISIBILITY_TIMEOUT", 3600)
    if not task_soft < task_hard < visibility:
        r.problems.append(
            "Celery's limits must satisfy CELERY_TASK_SOFT_TIME_LIMIT < CELERY_TASK_TIME_LIMIT < "
            f"CELERY_VISIBILITY_TIMEOUT (got {task_soft}, {task_hard}, {visibility}); otherwise the broker "
            "hands a still-running task to a second worker"
        )
    broker_url, transport = _broker(r, production=production, var_dir=var_dir, visibility=visibility)
    return {
        "broker_url": broker_url,
        "result_backend": _result_backend(r, broker_url=broker_url, var_dir=var_dir),
        "broker_transport_options": transport,
        "task_soft_time_limit": task_soft,
        "task_time_limit": task_hard,
        "visibility_timeout": visibility,
        "verify_queue": _verify_queue(r),
    }


def _verify_queue(r: _Reader) -> str:
    """CPV_VERIFY_QUEUE: the queue of the reads in customer tenants (Graph), apart from the default queue's work so
    that Partner Center's budget never waits behind them; every worker consumes it unless told otherwise (`-Q`)."""
    name = r.raw("CPV_VERIFY_QUEUE") or "verify"
    if not _QUEUE_NAME.match(name) or name == "celery":
        r.problems.append(
            f"CPV_VERIFY_QUEUE must be a queue name of letters, digits, '.', '_' or '-' other than the default "
            f"queue 'celery', got {name!r}"
        )
        return "verify"
    return name


def _broker(r: _Reader, *, production: bool, var_dir: Path, visibility: int) -> tuple[str, dict[str, Any]]:
    """CELERY_BROKER_URL and the transport options that go with it ("" when production names none)."""
    broker_url = r.in_production("CELERY_BROKER_URL", production)
    if broker_url is None:
        return ("", {}) if production else _filesystem_broker(var_dir)
    scheme = _url_scheme(broker_url)
    transport: dict[str, Any] = {}
    if scheme not in BROKER_SCHEMES:
        r.problems.append(
            f"CELERY_BROKER_URL must use one of {', '.join(sorted(BROKER_SCHEMES))}, got {scheme or 'no scheme'!r}"
        )
    elif scheme == "filesystem":
        broker_url, transport = _filesystem_broker(var_dir)
    elif production and scheme in {"memory", "sqla+sqlite"}:
        r.problems.append(f"CELERY_BROKER_URL {scheme}:// cannot be shared by separate workers in production")
    if scheme in {"redis", "rediss"}:
        transport = {"visibility_timeout": visibility, "socket_connect_timeout": 5, "socket_timeout": 30}
    return broker_url, transport


def _result_backend(r: _Reader, *, broker_url: str, var_dir: Path) -> str | None:
    """CELERY_RESULT_BACKEND; by default the Redis broker, or a folder under var/ beside the embedded broker."""
    result_backend = r.raw("CELERY_RESULT_BACKEND")
    if result_backend is not None:
        scheme = _url_scheme(result_backend)
        if scheme not in RESULT_SCHEMES:
            r.problems.append(
                f"CELERY_RESULT_BACKEND must use one of {', '.join(sorted(RESULT_SCHEMES))}, "
                f"got {scheme or 'no scheme'!r}"
            )
        return result_backend
    if _url_scheme(broker_url) in {"redis", "rediss"}:
        return broker_url
    if broker_url == "filesystem://":
        results = var_dir / "celery" / "results"
        results.mkdir(parents=True, exist_ok=True)
        return f"file://{results}"
    return None


def _cloud(r: _Reader, *, production: bool) -> clouds.Cloud:
    """CPV_CLOUD, the cloud the vendor's app lives in, and with CPV_CLOUD=custom its three hosts."""
    cloud_name = r.raw("CPV_CLOUD") or clouds.GLOBAL
    host_variables: tuple[str, ...] = ("CPV_AUTHORITY_HOST", "CPV_PARTNER_CENTER_URL", "CPV_GRAPH_URL")
    if cloud_name == clouds.CUSTOM and production and not r.bool("CPV_ALLOW_CUSTOM_CLOUD", False):
        r.problems.append(
            "CPV_CLOUD=custom points the control panel at hosts other than Microsoft's (the simulator, a test double) "
            "and is refused in production; set CPV_ALLOW_CUSTOM_CLOUD=true only for a test deployment"
        )
    if cloud_name == clouds.CUSTOM:
        hosts = {}
        for name in host_variables:
            value = r.required(name, "when CPV_CLOUD=custom")
            if value is not None:
                try:
                    hosts[name] = clouds.validate_https_url(name, value)
                except ValueError as exc:
                    r.problems.append(str(exc))
        if len(hosts) < 3:
            return clouds.CLOUDS[clouds.GLOBAL]
        return clouds.custom_cloud(
            authority_host=hosts["CPV_AUTHORITY_HOST"],
            partner_center_url=hosts["CPV_PARTNER_CENTER_URL"],
            graph_url=hosts["CPV_GRAPH_URL"],
        )
    for national in clouds.NATIONAL_CLOUDS:
        host_variables += tuple(f"CPV_{national.upper()}_{name.removeprefix('CPV_')}" for name in host_variables[:3])
    if cloud_name not in clouds.CLOUDS:
        r.problems.append(f"CPV_CLOUD must be one of global, usgov, china, custom, got {cloud_name!r}")
    elif clouds.CLOUDS[cloud_name].retired:
        r.problems.append(f"CPV_CLOUD={cloud_name}: {clouds.CLOUDS[cloud_name].retired_reason}")
    else:
        for name in host_variables:
            if r.raw(name) is not None:
                r.problems.append(f"{name} is only read when CPV_CLOUD=custom (CPV_CLOUD is {cloud_name})")
        return clouds.CLOUDS[cloud_name]
    return clouds.CLOUDS[clouds.GLOBAL]


def _custom_clouds(r: _Reader, *, deployment: clouds.Cloud) -> dict[str, clouds.Cloud]:
    """With CPV_CLOUD=custom, each national cloud's own hosts: CPV_<CLOUD>_AUTHORITY_HOST, _PARTNER_CENTER_URL and
    _GRAPH_URL, all three or none (a cloud without them resolves to the deployment's hosts)."""
    found: dict[str, clouds.Cloud] = {}
    if deployment.name != clouds.CUSTOM:
        return found
    for national in clouds.NATIONAL_CLOUDS:
        names = [f"CPV_{national.upper()}_{part}" for part in ("AUTHORITY_HOST", "PARTNER_CENTER_URL", "GRAPH_URL")]
        values = {name: r.raw(name) for name in names}
        if not any(values.values()):
            continue
        hosts = []
        for name, value in values.items():
            if not value:
                r.problems.append(f"{name} is required when any of {', '.join(names)} is set")
                continue
            try:
                hosts.append(clouds.validate_https_url(name, value))
            except ValueError as exc:
                r.problems.append(str(exc))
        if len(hosts) == 3:
            found[national] = clouds.custom_cloud(
                authority_host=hosts[0], partner_center_url=hosts[1], graph_url=hosts[2], national=national
            )
    return found


def app_prefix(cloud: str, environment: str) -> str:
    """The settings prefix of the app registered in `cloud` for `environment`: CPV, CPV_SANDBOX, CPV_USGOV,
    CPV_CHINA_SANDBOX, ..."""
    national = "" if cloud == clouds.GLOBAL else f"_{cloud.upper()}"
    return "CPV" + national + ("_SANDBOX" if environment == "sandbox" else "")


def _apps(r: _Reader, *, production: bool) -> Part:
    """The production app registration (CPV_*, required in production), the optional sandbox's (CPV_SANDBOX_*), and
    the apps registered in the national clouds (CPV_USGOV_*, CPV_USGOV_SANDBOX_*, CPV_CHINA_*, CPV_CHINA_SANDBOX_*):
    Microsoft's national clouds only know apps registered in them."""
    national: dict[tuple[str, str], AppCredential] = {}
    for cloud in clouds.NATIONAL_CLOUDS:
        for environment in ("production", "sandbox"):
            found = _credential(r, app_prefix(cloud, environment), required=False)
            if found is not None:
                national[(cloud, environment)] = found
    return {
        "app": _credential(r, "CPV", required=production) or AppCredential(client_id=""),
        "sandbox_app": _credential(r, "CPV_SANDBOX", required=False),
        "national_apps": national,
    }


def _listed(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _credential(r: _Reader, prefix: str, *, required: bool) -> AppCredential | None:
    """One app registration's settings: <prefix>_CLIENT_ID with its credentials in the order they are tried:
    <prefix>_CLIENT_MANAGED_IDENTITY (a user-assigned managed identity's client id, the secretless credential) first,
    then <prefix>_CLIENT_CERTIFICATE (PEM files or Key Vault certificates, comma-separated, newest first), then
    <prefix>_CLIENT_SECRET (comma-separated, newest first); and <prefix>_TENANT_ID, the tenant it is registered in
    (CPV_STAFF_TENANT_ID by default). None when no client id is set. The one reader of an app's credentials,
    whatever the cloud or environment it serves."""
    client_id = r.in_production(f"{prefix}_CLIENT_ID", required)
    secrets_ = _listed(r.raw(f"{prefix}_CLIENT_SECRET"))
    certificates = _listed(r.raw(f"{prefix}_CLIENT_CERTIFICATE"))
    identity = _managed_identity(r, prefix)
    tenant_id = (r.raw(f"{prefix}_TENANT_ID") or r.raw("CPV_STAFF_TENANT_ID") or "").lower()
    if client_id is not None:
        try:
            uuid.UUID(client_id)
        except ValueError:
            r.problems.append(f"{prefix}_CLIENT_ID must be the app's client id (a GUID), got {client_id!r}")
    if r.raw(f"{prefix}_TENANT_ID") is not None:
        try:
            uuid.UUID(tenant_id)
        except ValueError:
            r.problems.append(f"{prefix}_TENANT_ID must be the tenant id the app is registered in (a GUID)")
    for index, certificate in enumerate(certificates):
        position = f" (certificate {index + 1})" if len(certificates) > 1 else ""
        if "://" in certificate:
            if key_vault_certificate(certificate) is None:
                r.problems.append(
                    f"{prefix}_CLIENT_CERTIFICATE{position} names {certificate!r}, which is not a Key Vault "
                    "certificate: write https://<vault>.vault.azure.net/certificates/<name> (optionally /<version>)"
                )
        elif not Path(certificate).is_file():
            r.problems.append(
                f"{prefix}_CLIENT_CERTIFICATE{position} names {certificate!r}, which is not a readable file"
            )
    kinds = f"{prefix}_CLIENT_MANAGED_IDENTITY, {prefix}_CLIENT_CERTIFICATE or {prefix}_CLIENT_SECRET"
    if required and client_id and not (secrets_ or certificates or identity):
        r.problems.append(f"{kinds} is required {IN_PRODUCTION}")
    if client_id is None and (secrets_ or certificates or identity):
        r.problems.append(f"{prefix}_CLIENT_ID is required when its managed identity, certificate or secret is set")
    if client_id is None:
        return None

    def source(name: str, index: int, count: int) -> str:
        return f"{prefix}_{name}" + (f" #{index + 1}" if count > 1 else "")

    managed = (
        (Credential(MANAGED_IDENTITY, managed_identity_client_id=identity, source=f"{prefix}_CLIENT_MANAGED_IDENTITY"),)
        if identity
        else ()
    )
    credentials = (
        managed
        + tuple(
            Credential(CERTIFICATE, certificate_path=path, source=source("CLIENT_CERTIFICATE", i, len(certificates)))
            for i, path in enumerate(certificates)
        )
        + tuple(
            Credential(SECRET, secret=value, source=source("CLIENT_SECRET", i, len(secrets_)))
            for i, value in enumerate(secrets_)
        )
    )
    return AppCredential(
        client_id=client_id,
        client_secret=secrets_[0] if secrets_ else "",
        certificate_path=certificates[0] if certificates else "",
        credentials=credentials,
        tenant_id=tenant_id,
    )


def _managed_identity(r: _Reader, prefix: str) -> str:
    """<prefix>_CLIENT_MANAGED_IDENTITY: the client id (a GUID) of the user-assigned managed identity the app
    registration trusts as a federated identity credential, lower-cased; "" when unset. Microsoft's "Configure an
    application to trust a managed identity" allows user-assigned identities only ("system-assigned identities
    aren't supported"), so "system" is refused with those words."""
    name = f"{prefix}_CLIENT_MANAGED_IDENTITY"
    value = (r.raw(name) or "").strip()
    if not value:
        return ""
    if value.lower() in {"system", "system-assigned", "systemassigned"}:
        r.problems.append(
            f"{name} must be a user-assigned managed identity's client id: Microsoft lets only user-assigned "
            "identities be an app's federated identity credential (system-assigned identities aren't supported)"
        )
        return ""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        r.problems.append(
            f"{name} must be the client id (a GUID) of the user-assigned managed identity the app registration "
            f"trusts as a federated identity credential, got {value!r}"
        )
        return ""


def _vault(r: _Reader, *, production: bool, var_dir: Path, role: str) -> Part:
    """VAULT_BACKEND, VAULT_URL, the local vault's keys as `role` may hold them (`_vault_keys`), the workers' Key Vault
    identity and VAULT_DELETED_SECRET_POLICY."""
    vault_backend = r.choice("VAULT_BACKEND", "local", VAULT_BACKENDS)
    vault_urls = _vault_urls(r, azure=vault_backend == "azure")
    return {
        "vault_backend": vault_backend,
        "vault_url": vault_urls[0] if vault_urls else "",
        "vault_urls": vault_urls,
        **_vault_keys(r, production=production, var_dir=var_dir, role=role, local=vault_backend == "local"),
        "vault_deleted_secret_policy": r.choice("VAULT_DELETED_SECRET_POLICY", "recover", ("recover", "purge", "fail")),
        "vault_reader_client_id": _vault_identities(r, production=production, role=role, backend=vault_backend),
    }


def _vault_urls(r: _Reader, *, azure: bool) -> tuple[str, ...]:
    """VAULT_URLS (comma-separated) or VAULT_URL (a list of one), each an https:// root URL ending in "/": the Key
    Vaults partners' tokens are spread over, the first holding every token stored before a vault was recorded. Both
    set must agree; either is refused with the embedded vault, which has no URL."""
    many, one = r.raw("VAULT_URLS"), r.raw("VAULT_URL")
    if not azure:
        # VAULT_URL beside the embedded vault was always ignored (a shared environment file may carry it).
        if many is not None:
            r.problems.append("VAULT_URLS names Key Vaults, which only VAULT_BACKEND=azure uses (it is local)")
        return ()
    if many is None and one is None:
        r.problems.append("VAULT_URL is required when VAULT_BACKEND=azure (or VAULT_URLS, naming several vaults)")
        return ()
    urls: list[str] = []
    for name, value in (("VAULT_URLS", many), ("VAULT_URL", one)):
        if value is None:
            continue
        given: list[str] = []
        for item in (part.strip() for part in value.split(",")):
            try:
                url = clouds.validate_https_url(name, item) + "/"
            except ValueError as exc:
                r.problems.append(str(exc))
                continue
            if urlsplit(url).path != "/":
                r.problems.append(f"{name} must name each vault by its root URL with no path, got {item!r}")
            elif url.lower() in (known.lower() for known in given):
                r.problems.append(f"{name} names {url} twice")
            else:
                given.append(url)
        if name == "VAULT_URLS":
            urls = given
        elif many is None:
            urls = given[:1]
            if len(given) > 1:
                r.problems.append("VAULT_URL names one vault: write several in VAULT_URLS")
        elif given[:1] != urls[:1] or len(given) > 1:
            r.problems.append(
                f"VAULT_URL ({one}) and VAULT_URLS ({many}) disagree: set VAULT_URLS alone, or VAULT_URL to its first "
                "vault (which holds the tokens stored before vaults were recorded)"
            )
    return tuple(urls)


def _vault_keys(r: _Reader, *, production: bool, var_dir: Path, role: str, local: bool) -> Part:
    """VAULT_PUBLIC_KEY, VAULT_PRIVATE_KEY and VAULT_KEY, as `role` may hold them.

    The local vault seals each token to VAULT_PUBLIC_KEY; VAULT_PRIVATE_KEY opens them (newest first, a rotation's
    older keys after it) and VAULT_KEY opens what was written before sealing. Embedded keeps a generated key pair
    under var/ (and reads var/vault.key when an older install made one). A process that may not open tokens (web,
    beat, migrate) is given no opening key; in production it refuses to start when one is set."""
    opens = role in OPENING_ROLES
    needs_vault = role in (*OPENING_ROLES, WEB)
    if production and not opens:
        for name in ("VAULT_PRIVATE_KEY", "VAULT_KEY"):
            if r.raw(name) is not None:
                r.problems.append(
                    f"{name} must not be given to a {role} process in production (CPV_PROCESS_ROLE={role}): it opens "
                    "every partner's refresh token, which only the workers may (the web tier gets VAULT_PUBLIC_KEY)"
                )
    public_value = r.raw("VAULT_PUBLIC_KEY")
    private_value = r.raw("VAULT_PRIVATE_KEY") if opens else None
    key_value = r.raw("VAULT_KEY") if opens else None
    if not production and local and needs_vault:
        if public_value is None and private_value is None:
            pair = _var_key_pair(var_dir, with_private=opens)
            public_value, private_value = pair.public, pair.private if opens else None
        if key_value is None and opens:
            # An older embedded install's symmetric key: its rows stay readable (`vault_reseal` moves them).
            key_value = _var_file(var_dir, "vault.key", generate=False)
    if production and local and needs_vault:
        if role == WEB and public_value is None:
            r.problems.append(
                "VAULT_PUBLIC_KEY is required in production for the web tier (CPV_PROCESS_ROLE=web) when "
                "VAULT_BACKEND=local: it seals the tokens partners consent with"
            )
        if opens and private_value is None and key_value is None:
            r.problems.append(
                "VAULT_PRIVATE_KEY (or, before re-sealing, VAULT_KEY) is required in production when "
                "VAULT_BACKEND=local"
            )
    keys = _decoded_vault_keys(r, public_value=public_value, private_value=private_value, key_value=key_value)
    if not needs_vault:
        keys["vault_public_key"] = None
    return keys


def _decoded_vault_keys(
    r: _Reader, *, public_value: str | None, private_value: str | None, key_value: str | None
) -> Part:
    """The keys' bytes, each problem named by its variable (never its value); the public key is the first private
    key's own half, derived when only the private key is given."""
    vault_keys: list[bytes] = []
    if key_value is not None:
        try:
            vault_keys = parse_vault_keys(key_value)
        except ValueError as exc:
            r.problems.append(f"VAULT_KEY is not usable: {exc}")
    private_keys: list[bytes] = []
    if private_value is not None:
        try:
            private_keys = [
                decode_key(part, what=f"key {index + 1}") for index, part in enumerate(private_value.split(","))
            ]
        except ValueError as exc:
            r.problems.append(f"VAULT_PRIVATE_KEY is not usable: {exc}")
    public_key: bytes | None = None
    if public_value is not None:
        try:
            public_key = decode_key(public_value, what="the key")
        except ValueError as exc:
            r.problems.append(f"VAULT_PUBLIC_KEY is not usable: {exc}")
    if private_keys:
        derived = public_key_of(private_keys[0])
        if public_key is not None and public_key != derived:
            r.problems.append(
                "VAULT_PUBLIC_KEY is not the public half of the first key of VAULT_PRIVATE_KEY: tokens sealed to it "
                "could not be opened (give the same key pair to the web tier and the workers)"
            )
        public_key = public_key or derived
    return {"vault_keys": vault_keys, "vault_public_key": public_key, "vault_private_keys": private_keys}


def _vault_identities(r: _Reader, *, production: bool, role: str, backend: str) -> str:
    """VAULT_READER_CLIENT_ID, the workers' Key Vault identity (get, set, list); the web's (AZURE_CLIENT_ID) may only
    set. A production web process with Key Vault refuses to start without two distinct identities."""
    reader = (r.raw("VAULT_READER_CLIENT_ID") or "").lower()
    if backend != "azure" or not production or role != WEB:
        return reader
    own = (r.raw("AZURE_CLIENT_ID") or "").lower()
    if not reader:
        r.problems.append(
            "VAULT_READER_CLIENT_ID is required in production for the web tier with VAULT_BACKEND=azure: it names "
            "the workers' identity, the one that may read secrets, so that the web's own (AZURE_CLIENT_ID) is known "
            "to be another"
        )
    elif not own:
        r.problems.append(
            "AZURE_CLIENT_ID is required in production for the web tier with VAULT_BACKEND=azure: the web signs in "
            "to Key Vault as its own identity, which may only set secrets"
        )
    elif own == reader:
        r.problems.append(
            "AZURE_CLIENT_ID is the workers' identity (VAULT_READER_CLIENT_ID), which may read secrets: the web tier "
            "must sign in to Key Vault as an identity that may only set them"
        )
    return reader


def _var_key_pair(var_dir: Path, *, with_private: bool) -> KeyPair:
    """The embedded vault's key pair under var/ (vault-seal.key, vault-seal.pub), made on first use. A process that
    may not open tokens reads only the public half."""
    public = _var_file(var_dir, "vault-seal.pub", generate=False)
    if public is not None and not with_private:
        return KeyPair(private="", public=public)
    made: list[KeyPair] = []

    def make() -> str:
        made.append(new_key_pair())
        return made[0].private

    private = _var_file(var_dir, "vault-seal.key", generate=True, make=make) or ""
    try:
        derived = base64.urlsafe_b64encode(public_key_of(decode_key(private, what="var/vault-seal.key"))).decode()
    except ValueError:
        return KeyPair(private=private, public=public or "")
    if public is None:
        public = _var_file(var_dir, "vault-seal.pub", generate=True, make=lambda: derived)
    return KeyPair(private=private if with_private else "", public=public or derived)


def _email(r: _Reader, *, production: bool, site_host: str | None) -> Part:
    """EMAIL_URL (an smtp:// URL in production: partners are sent links by email) and DEFAULT_FROM_EMAIL."""
    email: dict[str, Any] = {}
    try:
        email = environ.Env.email_url_config(r.raw("EMAIL_URL") or "consolemail://")
    except (ImproperlyConfigured, ValueError, KeyError):
        r.problems.append("EMAIL_URL must be smtp://, smtp+tls://, smtp+ssl://, consolemail:// or dummymail://")
    if production and email.get("EMAIL_BACKEND", "").endswith(("console.EmailBackend", "dummy.EmailBackend")):
        r.problems.append("EMAIL_URL is required in production (an smtp:// URL): partners are sent links by email")
    return {
        "email": email,
        "default_from_email": r.raw("DEFAULT_FROM_EMAIL") or f"control-panel@{site_host or 'localhost'}",
    }


def _cache(r: _Reader, *, production: bool, broker_url: str) -> dict[str, Any]:
    """CACHE_URL, shared by all processes in production (default: the Redis broker, else the database)."""
    cache_url = r.raw("CACHE_URL")
    if cache_url is None and _is_redis(broker_url):
        cache_url = broker_url
    if cache_url is None:
        if production:
            return {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "cpv_cache"}
        return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    if _is_redis(cache_url):
        # JSON, never pickle: writing into Redis must not be running code here (cpv/cache.py).
        return {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": cache_url,
            "OPTIONS": {"serializer": "cpv.cache.JsonSerializer"},
        }
    scheme = _url_scheme(cache_url)
    if scheme != "locmem":
        r.problems.append(f"CACHE_URL must be a redis:// URL or locmem://, got {scheme or 'no scheme'!r}")
    return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}


def _application_grants(r: _Reader) -> dict[str, Any]:
    """CPV_APPLICATION_GRANTS, what ApplicationConsent grants in each customer tenant (default: Microsoft Graph)."""
    grants_raw = r.raw("CPV_APPLICATION_GRANTS")
    if grants_raw is None:
        return DEFAULT_APPLICATION_GRANTS
    try:
        return parse_application_grants(grants_raw)
    except (ValueError, json.JSONDecodeError) as exc:
        r.problems.append(f"CPV_APPLICATION_GRANTS is not usable: {exc}")
        return DEFAULT_APPLICATION_GRANTS


def _renewal_and_pacing(r: _Reader) -> Part:
    """Renewal's schedule and attempts, and the pace of Partner Center and Key Vault calls."""
    # Every redemption returns a new refresh token, kept as a new vault version. The interval must stay well inside
    # Entra's 90-day inactivity limit, and each renewal spends one of the secret's 500 versions (weekly lasts about
    # 9.6 years).
    renewal_interval = r.int("CPV_RENEWAL_INTERVAL_DAYS", 7)
    if renewal_interval > 60:
        r.problems.append(
            "CPV_RENEWAL_INTERVAL_DAYS must be at most 60 (refresh tokens die after 90 days unused), "
            f"got {renewal_interval}"
        )
    renewal_attempts = r.int("CPV_RENEWAL_MAX_ATTEMPTS", 5)
    # Partner Center allows 50 ApplicationConsent requests per second per application id, across all workers;
    # the limiter caps its burst so that no second passes 50 (microsoft/throttle.py).
    pc_rate = r.int("CPV_PC_REQUESTS_PER_SECOND", 48)
    if pc_rate >= 50:
        r.problems.append(f"CPV_PC_REQUESTS_PER_SECOND must stay under Partner Center's 50 per second, got {pc_rate}")
    # Key Vault takes 300 secret creates per 10 s per vault: writes are paced under that (0: no pacing).
    vault_rate = r.int("CPV_VAULT_CREATES_PER_SECOND", 29, minimum=0)
    if vault_rate >= 30:
        r.problems.append(f"CPV_VAULT_CREATES_PER_SECOND must stay under Key Vault's 30 per second, got {vault_rate}")
    return {
        "renewal_interval_days": renewal_interval,
        "renewal_max_attempts": renewal_attempts,
        "pc_requests_per_second": pc_rate,
        "vault_creates_per_second": vault_rate,
    }


def _consent_schedule(r: _Reader, *, pc_rate: int, task_soft: int) -> Part:
    """The fair schedule of ApplicationConsent (customers/scheduling.py): its puller slots and the customers in a
    batch. More pullers keep the limit busy while Partner Center answers, but beyond the workers' threads they only
    wait in the broker; a bigger batch costs fewer claims and closes (PostgreSQL transactions, task messages) per
    customer, but a partner whose work arrives waits up to a batch per puller for its first turn."""
    pullers = r.int("CPV_CONSENT_PULLERS", 8)
    batch = r.int("CPV_CONSENT_BATCH", 10)
    # With every slot busy, a batch gets 1/pullers of the limit: it must end well inside the task's time limit, or it
    # is cut off and its customers wait for their claims to lapse.
    seconds = batch * pullers / max(1, pc_rate)
    if seconds > task_soft / 2:
        r.problems.append(
            f"CPV_CONSENT_BATCH x CPV_CONSENT_PULLERS ({batch} x {pullers}) customers take {seconds:.0f} s at "
            f"CPV_PC_REQUESTS_PER_SECOND={pc_rate}: a batch, sharing the limit with the other pullers, must take "
            f"at most half of CELERY_TASK_SOFT_TIME_LIMIT ({task_soft} s); lower one of them"
        )
    return {"consent_pullers": pullers, "consent_batch": batch}


def _throttle_url(r: _Reader, *, broker_url: str) -> str:
    """CPV_THROTTLE_URL, the Redis the shared limiter counts in; by default the cache's or the broker's Redis."""
    throttle_url = r.raw("CPV_THROTTLE_URL")
    if throttle_url is not None:
        if not _is_redis(throttle_url):
            r.problems.append(
                f"CPV_THROTTLE_URL must be a redis:// URL, got {_url_scheme(throttle_url) or 'no scheme'!r}"
            )
        return throttle_url
    return next((url for url in (r.raw("CACHE_URL"), broker_url) if url and _is_redis(url)), "")


def _staff_sign_in(r: _Reader, *, production: bool) -> Part:
    """Staff sign-in: Microsoft against CPV_STAFF_TENANT_ID, passwords as admins' break-glass, TOTP, and the lockout."""
    staff_tenant_id = (r.raw("CPV_STAFF_TENANT_ID") or "").strip().lower()
    if staff_tenant_id:
        try:
            staff_tenant_id = str(uuid.UUID(staff_tenant_id))
        except ValueError:
            r.problems.append(
                f"CPV_STAFF_TENANT_ID must be the vendor's tenant id (a GUID, not a domain), got {staff_tenant_id!r}"
            )
    staff_passwords = r.choice(
        "CPV_STAFF_PASSWORD_SIGN_IN", "admins" if production or staff_tenant_id else "all", STAFF_PASSWORD_SIGN_IN
    )
    staff_totp = r.choice("CPV_STAFF_TOTP", "required" if production else "enrolled", STAFF_TOTP)
    if production and staff_passwords != "admins":
        r.problems.append(
            "CPV_STAFF_PASSWORD_SIGN_IN must be admins in production: staff sign in with Microsoft "
            "(CPV_STAFF_TENANT_ID), and passwords are the admins' break-glass"
        )
    if production and staff_totp != "required":
        r.problems.append("CPV_STAFF_TOTP must be required in production: every password sign-in needs its TOTP code")
    return {
        "staff_tenant_id": staff_tenant_id,
        "staff_password_sign_in": staff_passwords,
        "staff_totp": staff_totp,
        "staff_auth_context": _staff_auth_context(r, staff_tenant_id=staff_tenant_id),
        "signin_max_failures": r.int("CPV_SIGNIN_MAX_FAILURES", 5),
        "signin_lockout_minutes": r.int("CPV_SIGNIN_LOCKOUT_MINUTES", 15),
        # A staff or portal session's absolute lifetime from its sign-in; no request extends it.
        "session_max_age_hours": r.int("CPV_SESSION_MAX_AGE_HOURS", 8),
    }


def _staff_auth_context(r: _Reader, *, staff_tenant_id: str) -> str:
    """CPV_STAFF_AUTH_CONTEXT (c1 to c99), the authentication context the staff sign-in asks for; "" asks for none."""
    value = r.raw("CPV_STAFF_AUTH_CONTEXT") or ""
    if not value:
        return ""
    if not AUTH_CONTEXT_ID.match(value):
        r.problems.append(
            f"CPV_STAFF_AUTH_CONTEXT must be an authentication context id such as c1 (c1 to c99), got {value!r}"
        )
        return ""
    if not staff_tenant_id:
        r.problems.append(
            "CPV_STAFF_AUTH_CONTEXT needs CPV_STAFF_TENANT_ID: the authentication context is asked of staff who "
            "sign in with Microsoft, which only the vendor's tenant id turns on"
        )
    return value


def _serving(r: _Reader, *, production: bool) -> Part:
    """How the site serves and reports: the log format and level, the proxy and HTTPS, the readiness token."""
    return {
        "log_format": r.choice("CPV_LOG_FORMAT", "json" if production else "text", LOG_FORMATS),
        "log_level": r.choice("CPV_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
        "trust_proxy": r.bool("CPV_TRUST_PROXY", False),
        "ssl_redirect": r.bool("CPV_SSL_REDIRECT", production),
        "readyz_token": r.raw("CPV_READYZ_TOKEN") or "",
    }


def _partners(r: _Reader) -> Part:
    """Self-onboarding, link and sign-in lifetimes, and what proves a Global Administrator."""
    return {
        "self_onboarding": r.bool("CPV_SELF_ONBOARDING", True),
        "invitation_max_age_days": r.int("CPV_INVITATION_MAX_AGE_DAYS", 14),
        "consent_flow_minutes": r.int("CPV_CONSENT_FLOW_MINUTES", 15),
        # What a consent does when no token and no Graph answer proves the Global Administrator role: refuse
        # it, or accept it on Partner Center's Admin Agent check alone and show staff it was not proven.
        "global_admin_evidence": r.choice("CPV_GLOBAL_ADMIN_EVIDENCE", "require", GLOBAL_ADMIN_EVIDENCE),
    }


def _api(r: _Reader, *, staff_tenant_id: str) -> Part:
    """The token API: the vendor's tenant whose client-credentials tokens it accepts (CPV_API_TENANT_ID, default the
    staff tenant), the audiences those tokens must carry (CPV_API_AUDIENCE: the API app's Application ID URI and/or
    client id, comma-separated; api.authentication accepts each form of them Entra emits), and each client's
    hand-outs and reads a minute (CPV_API_RATE_LIMIT)."""
    tenant = (r.raw("CPV_API_TENANT_ID") or staff_tenant_id).strip().lower()
    if tenant:
        try:
            tenant = str(uuid.UUID(tenant))
        except ValueError:
            r.problems.append(f"CPV_API_TENANT_ID must be the vendor's tenant id (a GUID), got {tenant!r}")
            tenant = ""
    audiences = tuple(a.strip() for a in (r.raw("CPV_API_AUDIENCE") or "").split(",") if a.strip())
    return {"api_tenant_id": tenant, "api_audiences": audiences, "api_rate_limit": r.int("CPV_API_RATE_LIMIT", 600)}


def _role(r: _Reader, *, production: bool) -> str:
    """CPV_PROCESS_ROLE: what this process is for, which production requires and which decides the secrets it may
    hold (web seals tokens and opens none). Embedded runs every job in any process unless told otherwise."""
    value = r.raw("CPV_PROCESS_ROLE")
    if value is None:
        if production:
            r.problems.append(
                "CPV_PROCESS_ROLE is required in production (CPV_MODE=production): web, worker, api, beat or migrate "
                "(it decides which secrets the process may hold)"
            )
        return ALL
    role = r.choice("CPV_PROCESS_ROLE", ALL, PROCESS_ROLES)
    if production and role == ALL:
        r.problems.append(
            "CPV_PROCESS_ROLE=all is the embedded mode's: in production each process names its role (web, worker, "
            "api, beat or migrate), so that the web tier never holds a key that opens tokens"
        )
    return role


def load_config(environ_map: Mapping[str, str], *, base_dir: Path) -> Config:
    """Read every setting from the environment, section by section. Raises ConfigError listing each problem."""
    r = _Reader(environ_map)
    mode = r.choice("CPV_MODE", EMBEDDED, MODES)
    production = mode == PRODUCTION
    var_dir = Path(r.raw("CPV_VAR_DIR") or base_dir / "var")
    role = _role(r, production=production)
    serving = role in SERVING_ROLES
    r.not_needed = NOT_NEEDED.get(role, frozenset()) if production else frozenset()
    secret = _secrets(r, production=production, var_dir=var_dir)
    if production and not serving and not secret["secret_key"]:
        # Signs nothing (no request, no session): a key for this process's life satisfies Django.
        secret["secret_key"] = secrets.token_urlsafe(50)
    address = _address(r, production=production and serving)
    database = _database(r, production=production, var_dir=var_dir)
    celery = _celery(r, production=production, var_dir=var_dir)
    broker_url = celery["broker_url"]
    cloud = _cloud(r, production=production)
    parts: Part = {
        "mode": mode,
        "var_dir": var_dir,
        **secret,
        **address,
        "database": database,
        **celery,
        "cloud": cloud,
        "custom_clouds": _custom_clouds(r, deployment=cloud),
        **_apps(r, production=production),
        **_vault(r, production=production, var_dir=var_dir, role=role),
        "process_role": role,
        **_email(r, production=production and serving, site_host=urlsplit(address["base_url"]).hostname),
        "cache": _cache(r, production=production, broker_url=broker_url),
        "application_grants": _application_grants(r),
        **(pacing := _renewal_and_pacing(r)),
        **_consent_schedule(r, pc_rate=pacing["pc_requests_per_second"], task_soft=celery["task_soft_time_limit"]),
        "vendor": _vendor(r, production=production and serving),
        "throttle_url": _throttle_url(r, broker_url=broker_url),
        **(staff := _staff_sign_in(r, production=production)),
        **_api(r, staff_tenant_id=staff["staff_tenant_id"]),
        **_serving(r, production=production),
        **_partners(r),
    }
    if r.problems:
        raise ConfigError(r.problems)
    return Config(**parts)
