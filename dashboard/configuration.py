"""The effective configuration as the settings page shows it: grouped, in words, a secret only as set or not, URL
passwords as ***; a Config field not listed here shows under "Other"."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings

from cpv.config import MANAGED_IDENTITY
from cpv.keys import public_key_of
from tokens.vault.seal import seal_key_id

MASK = "***"


@dataclass(frozen=True)
class Setting:
    label: str
    value: str
    # The environment variable a person changes, where there is one.
    variable: str = ""


@dataclass(frozen=True)
class Group:
    title: str
    settings: list[Setting]


def url_masked(value: str) -> str:
    """A URL with its password (or a lone user part, which is how Redis URLs carry one) replaced by ***."""
    if not value or "://" not in value:
        return value
    try:
        parts = urlsplit(value)
        user, password = parts.username, parts.password
    except ValueError:
        return MASK
    if user is None and password is None:
        return value
    host = parts.netloc.rpartition("@")[2]
    credentials = f"{user}:{MASK}" if password is not None and user else MASK
    return urlunsplit((parts.scheme, f"{credentials}@{host}", parts.path, parts.query, parts.fragment))


def _yes_no(value: Any) -> str:
    return "yes" if value else "no"


def _is_set(value: Any) -> str:
    return "set" if value else "not set"


def _text(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return _yes_no(value)
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value) or "—"
    if isinstance(value, dict):
        return "; ".join(f"{_key(k)}: {_safe(k, v)}" for k, v in value.items()) or "—"
    return url_masked(str(value))


SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "KEY")


def _key(key: Any) -> str:
    return str(key).replace("EMAIL_", "").replace("_", " ").lower().capitalize()


def _safe(key: Any, value: Any) -> str:
    """A dict's value, unless its key names a secret: then only whether it is set."""
    if any(word in str(key).upper() for word in SECRET_WORDS) and "KEY_PREFIX" not in str(key).upper():
        return _is_set(value)
    return _text(value)


def _database(db: dict[str, Any]) -> str:
    engine = str(db.get("ENGINE", "")).rpartition(".")[2]
    where = db.get("HOST") or "the local socket"
    if db.get("PORT"):
        where = f"{where}:{db['PORT']}"
    engine_name = {"postgresql": "PostgreSQL", "sqlite3": "SQLite"}.get(engine, engine)
    user = f" as {db['USER']}" if db.get("USER") else ""
    password = ", password set" if db.get("PASSWORD") else ""
    if engine == "sqlite3":
        return f"{engine_name} file {db.get('NAME', '')}"
    return f"{engine_name} database {db.get('NAME', '')} on {where}{user}{password}"


def _email(email: dict[str, Any]) -> str:
    backend = str(email.get("EMAIL_BACKEND", "")).rpartition(".")[2]
    kinds = {
        "EmailBackend": "SMTP",
        "console": "printed to the console",
        "filebased": "written to files",
        "locmem": "kept in memory",
    }
    module = str(email.get("EMAIL_BACKEND", "")).split(".")[-2:-1]
    kind = kinds.get(module[0], kinds.get(backend, backend)) if module else backend
    if kind == "SMTP" and email.get("EMAIL_HOST"):
        user = f" as {email['EMAIL_HOST_USER']}" if email.get("EMAIL_HOST_USER") else ""
        password = ", password set" if email.get("EMAIL_HOST_PASSWORD") else ""
        return f"SMTP through {email['EMAIL_HOST']}:{email.get('EMAIL_PORT') or 25}{user}{password}"
    if email.get("EMAIL_FILE_PATH"):
        return f"{kind.capitalize()} ({email['EMAIL_FILE_PATH']})"
    return kind.capitalize()


def _cache(cache: dict[str, Any]) -> str:
    backend = str(cache.get("BACKEND", "")).rpartition(".")[2]
    names = {"RedisCache": "Redis", "LocMemCache": "this process's memory", "DatabaseCache": "the database"}
    location = cache.get("LOCATION")
    where = f" at {_text(location)}" if location else ""
    return f"{names.get(backend, backend)}{where}"


def _app(app: Any) -> str:
    if app is None:
        return "none (the global app serves the sandbox)"
    if not app.client_id:
        return "not set"
    how = "a client secret (set)" if app.client_secret else ""
    if app.certificate_path:
        how = f"a certificate ({app.certificate_path})"
    identity = next((c for c in app.credentials if c.kind == MANAGED_IDENTITY), None)
    if identity is not None:
        # tried first (cpv/config.py `_credential`); a certificate or secret beside it is the fallback
        managed = f"the managed identity {identity.managed_identity_client_id} (a federated identity credential)"
        how = f"{managed}, then {how}" if how else managed
    return f"client id {app.client_id}, signing in with {how or 'no credential'}"


def _national_apps(apps: dict[tuple[str, str], Any]) -> str:
    if not apps:
        return "none (partners of US Government and China cannot be invited)"
    return "; ".join(f"{cloud} {environment}: {_app(app)}" for (cloud, environment), app in sorted(apps.items()))


def _custom_clouds(found: dict[str, Any]) -> str:
    if not found:
        return "none (every cloud's partners go to the hosts above)"
    return "; ".join(
        f"{name}: sign-in at {c.authority_host}, Partner Center at {c.partner_center_url}, Graph at {c.graph_url}"
        for name, c in sorted(found.items())
    )


def _grants(grants: dict[str, Any]) -> str:
    listed = "; ".join(
        f"{g.get('enterpriseApplicationId', '')}: {g.get('scope', '')}" for g in grants.get("applicationGrants", [])
    )
    return f"{grants.get('displayName', '')} — {listed or 'no grant'}"


def _vault_urls(urls: tuple[str, ...]) -> str:
    if not urls:
        return "— (the embedded vault)"
    if len(urls) == 1:
        return f"{urls[0]} alone"
    return (
        f"{', '.join(urls)}: each partner's token stays in the vault it was first stored in, a new partner goes to "
        "the one keeping the fewest, and each vault's write limit paces its own partners' renewals"
    )


def _keys(keys: list[bytes]) -> str:
    if not keys:
        return "not set"
    return "set (1 key)" if len(keys) == 1 else f"set ({len(keys)} keys: the first encrypts, the others still decrypt)"


def _sealing_key(key: bytes | None) -> str:
    # The key id names the pair without showing it (tokens/vault/seal.py); a public key is no secret anyway.
    return f"set (key id {seal_key_id(key)})" if key else "not set"


def _opening_keys(keys: list[bytes]) -> str:
    if not keys:
        return "none in this process"
    ids = ", ".join(seal_key_id(public_key_of(key)) for key in keys)
    return f"set ({len(keys)}: key id {ids}; the first's public half seals)"


def _seconds(value: Any) -> str:
    return f"{value} s"


def _days(value: Any) -> str:
    return f"{value} day{'s' if value != 1 else ''}"


def _vendor(vendor: Any) -> str:
    name = vendor.name or "not set (the pages say “your Control Panel Vendor”)"
    return f"{name}; support address {vendor.support_email or '—'}; logo {vendor.logo_path or 'none'}"


def _staff_tenant(tenant_id: str) -> str:
    return tenant_id or "not set: staff sign in with passwords"


def _passwords(value: str) -> str:
    return "administrators only (break-glass)" if value == "admins" else "every staff account"


def _totp(value: str) -> str:
    return "required of every account" if value == "required" else "asked of accounts that set one up"


Show = Callable[[Any], str]
# (field, label, environment variable, how it is shown), by group. Fields not listed fall under "Other".
GROUPS: list[tuple[str, list[tuple[str, str, str, Show]]]] = [
    (
        "Site",
        [
            ("mode", "Mode", "CPV_MODE", _text),
            ("base_url", "Address of the site", "CPV_BASE_URL", _text),
            ("allowed_hosts", "Host names served", "DJANGO_ALLOWED_HOSTS", _text),
            ("database", "Database", "DATABASE_URL", _database),
            ("cache", "Cache", "CACHE_URL", _cache),
            ("var_dir", "Local data folder", "CPV_VAR_DIR", _text),
            ("debug", "Debug pages", "DJANGO_DEBUG", _yes_no),
            ("log_format", "Log format", "CPV_LOG_FORMAT", _text),
            ("log_level", "Log level", "CPV_LOG_LEVEL", _text),
            ("vendor", "Vendor shown to partners", "CPV_VENDOR_NAME", _vendor),
        ],
    ),
    (
        "Microsoft",
        [
            ("cloud", "Cloud", "CPV_CLOUD", lambda c: f"{c.label} (sign-in at {c.authority_host})"),
            ("app", "App registration", "CPV_CLIENT_ID", _app),
            ("sandbox_app", "Sandbox app registration", "CPV_SANDBOX_CLIENT_ID", _app),
            ("national_apps", "National clouds' apps", "CPV_USGOV_CLIENT_ID, CPV_CHINA_CLIENT_ID", _national_apps),
            ("custom_clouds", "National clouds' own hosts", "CPV_USGOV_AUTHORITY_HOST, ...", _custom_clouds),
            ("application_grants", "ApplicationConsent grants", "CPV_APPLICATION_GRANTS", _grants),
            ("global_admin_evidence", "Global Administrator proof", "CPV_GLOBAL_ADMIN_EVIDENCE", _text),
            ("pc_requests_per_second", "Partner Center calls per second", "CPV_PC_REQUESTS_PER_SECOND", _text),
        ],
    ),
    (
        "Vault",
        [
            ("vault_backend", "Vault", "VAULT_BACKEND", _text),
            ("vault_url", "Key Vault address (the first vault)", "VAULT_URL", _text),
            ("vault_urls", "Key Vaults partners' tokens are spread over", "VAULT_URLS", _vault_urls),
            ("process_role", "This process's role", "CPV_PROCESS_ROLE", _text),
            ("vault_public_key", "Sealing public key", "VAULT_PUBLIC_KEY", _sealing_key),
            ("vault_private_keys", "Keys that open tokens", "VAULT_PRIVATE_KEY", _opening_keys),
            ("vault_keys", "Local vault keys", "VAULT_KEY", _keys),
            ("vault_reader_client_id", "Workers' Key Vault identity", "VAULT_READER_CLIENT_ID", _text),
            ("vault_deleted_secret_policy", "A deleted secret is", "VAULT_DELETED_SECRET_POLICY", _text),
            ("vault_creates_per_second", "Vault writes per second", "CPV_VAULT_CREATES_PER_SECOND", _text),
        ],
    ),
    (
        "Workers and schedule",
        [
            ("broker_url", "Task broker", "CELERY_BROKER_URL", _text),
            ("result_backend", "Task results", "CELERY_RESULT_BACKEND", _text),
            ("throttle_url", "Shared rate limiter", "CPV_THROTTLE_URL", _text),
            ("broker_transport_options", "Broker options", "", _text),
            ("task_soft_time_limit", "A task is asked to stop after", "CELERY_TASK_SOFT_TIME_LIMIT", _seconds),
            ("task_time_limit", "A task is stopped after", "CELERY_TASK_TIME_LIMIT", _seconds),
            (
                "visibility_timeout",
                "An unacknowledged task is handed out again after",
                "CELERY_VISIBILITY_TIMEOUT",
                _seconds,
            ),
            ("verify_queue", "Reads in customer tenants queue", "CPV_VERIFY_QUEUE", _text),
            ("renewal_interval_days", "Tokens are renewed every", "CPV_RENEWAL_INTERVAL_DAYS", _days),
            ("renewal_max_attempts", "Renewal attempts before giving up", "CPV_RENEWAL_MAX_ATTEMPTS", _text),
            ("consent_pullers", "ApplicationConsent batches in flight at once", "CPV_CONSENT_PULLERS", _text),
            ("consent_batch", "Customers in an ApplicationConsent batch", "CPV_CONSENT_BATCH", _text),
        ],
    ),
    (
        "Security",
        [
            ("secret_key", "Django secret key", "DJANGO_SECRET_KEY", _is_set),
            ("readyz_token", "Readiness probe token", "CPV_READYZ_TOKEN", _is_set),
            ("ssl_redirect", "HTTPS only", "CPV_SSL_REDIRECT", _yes_no),
            ("trust_proxy", "Trust the proxy's X-Forwarded headers", "CPV_TRUST_PROXY", _yes_no),
            ("staff_tenant_id", "Staff sign in with Microsoft on tenant", "CPV_STAFF_TENANT_ID", _staff_tenant),
            ("staff_auth_context", "Authentication context asked at that sign-in", "CPV_STAFF_AUTH_CONTEXT", _text),
            ("staff_password_sign_in", "Who may sign in with a password", "CPV_STAFF_PASSWORD_SIGN_IN", _passwords),
            ("staff_totp", "Authenticator code after a password", "CPV_STAFF_TOTP", _totp),
            ("signin_max_failures", "Failed sign-ins before a lockout", "CPV_SIGNIN_MAX_FAILURES", _text),
            ("signin_lockout_minutes", "Lockout", "CPV_SIGNIN_LOCKOUT_MINUTES", lambda v: f"{v} minutes"),
            (
                "session_max_age_hours",
                "Sessions end after their sign-in",
                "CPV_SESSION_MAX_AGE_HOURS",
                lambda v: f"{v} hours",
            ),
            ("self_onboarding", "Partners may sign up themselves", "CPV_SELF_ONBOARDING", _yes_no),
            ("invitation_max_age_days", "Consent links work for", "CPV_INVITATION_MAX_AGE_DAYS", _days),
            (
                "consent_flow_minutes",
                "A consent sign-in must finish within",
                "CPV_CONSENT_FLOW_MINUTES",
                lambda v: f"{v} minutes",
            ),
        ],
    ),
    (
        "Email",
        [
            ("email", "Email is", "EMAIL_URL", _email),
            ("default_from_email", "Sent from", "DEFAULT_FROM_EMAIL", _text),
        ],
    ),
    (
        "Token API",
        [
            ("api_tenant_id", "Client systems' tokens from tenant", "CPV_API_TENANT_ID", _text),
            ("api_audiences", "The API's audiences", "CPV_API_AUDIENCE", lambda v: ", ".join(v) or "none"),
            ("api_rate_limit", "Hand-outs a minute per client", "CPV_API_RATE_LIMIT", _text),
        ],
    ),
]


def configuration_groups(config: Any = None) -> list[Group]:
    """Every setting in force, grouped and in words; a secret says only whether it is set, a URL shows no password."""
    config = config if config is not None else settings.CONFIG
    fields = {f.name: f for f in dataclasses.fields(config)}
    groups = []
    for title, rows in GROUPS:
        shown = [
            Setting(label, show(getattr(config, name)), variable)
            for name, label, variable, show in rows
            if name in fields
        ]
        groups.append(Group(title, shown))
    known = {name for _, rows in GROUPS for name, *_ in rows}
    other = [
        Setting(
            name.replace("_", " ").capitalize(),
            _text(getattr(config, name)) if f.repr else _is_set(getattr(config, name)),
        )
        for name, f in fields.items()
        if name not in known
    ]
    if other:
        groups.append(Group("Other", other))
    return [g for g in groups if g.settings]
