"""The one settings module. Everything that varies comes from the environment through cpv/config.py."""

from __future__ import annotations

import os
from pathlib import Path

from csp.constants import NONE, SELF
from kombu import Exchange, Queue

from cpv.config import load_config
from cpv.env_files import read_dotenv_if_asked
from cpv.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent

read_dotenv_if_asked(os.environ, base_dir=BASE_DIR)
CONFIG = load_config(os.environ, base_dir=BASE_DIR)

CPV_MODE = CONFIG.mode
DEBUG = CONFIG.debug
SECRET_KEY = CONFIG.secret_key
ALLOWED_HOSTS = CONFIG.allowed_hosts
CPV_BASE_URL = CONFIG.base_url
CPV_VAR_DIR = CONFIG.var_dir

INSTALLED_APPS = [
    # django.contrib.admin, with a site that asks the staff pages' finished sign-in (partners/admin_site.py)
    "partners.apps.StaffAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "cpv",
    "partners",
    "events",
    "tokens",
    "customers",
    "consent",
    "dashboard",
    "api",
]

MIDDLEWARE = [
    "cpv.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # A session ends CPV_SESSION_MAX_AGE_HOURS after its sign-in, whatever its requests do (cpv/sessions.py).
    "cpv.sessions.SessionLifetimeMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # request.user.is_verified(): whether this session's password sign-in passed its TOTP code (django-otp)
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "cpv.urls"
WSGI_APPLICATION = "cpv.wsgi.application"
ASGI_APPLICATION = "cpv.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "cpv.context_processors.site",
            ],
        },
    },
]

DATABASES = {"default": CONFIG.database}
CACHES = {"default": CONFIG.cache}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard:home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = CONFIG.var_dir / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
if not CONFIG.production:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if CONFIG.production
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
# Embedded mode serves static files straight from the source folders, with no collectstatic step.
WHITENOISE_USE_FINDERS = not CONFIG.production
WHITENOISE_AUTOREFRESH = DEBUG

# Email: console in the embedded mode, SMTP from EMAIL_URL in production.
EMAIL_BACKEND = CONFIG.email.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = CONFIG.email.get("EMAIL_HOST", "")
EMAIL_PORT = CONFIG.email.get("EMAIL_PORT", 25)
EMAIL_HOST_USER = CONFIG.email.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = CONFIG.email.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = CONFIG.email.get("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = CONFIG.email.get("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = CONFIG.default_from_email
SERVER_EMAIL = CONFIG.default_from_email

# Sessions and cookies. Staff and portal sessions end CPV_SESSION_MAX_AGE_HOURS (8) after their sign-in however
# busy they are (cpv/sessions.py), or when the browser closes.
CPV_SESSION_MAX_AGE_HOURS = CONFIG.session_max_age_hours
SESSION_COOKIE_AGE = CPV_SESSION_MAX_AGE_HOURS * 60 * 60
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
if CONFIG.production:
    # The __Host- prefix pins a cookie to this host, over HTTPS, for the whole site.
    SESSION_COOKIE_NAME = "__Host-sessionid"
    CSRF_COOKIE_NAME = "__Host-csrftoken"
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = 365 * 24 * 60 * 60
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    CSRF_TRUSTED_ORIGINS = [CPV_BASE_URL]
SECURE_SSL_REDIRECT = CONFIG.ssl_redirect
# Health checks come from inside the network (a container's probe), often over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
if CONFIG.trust_proxy:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Celery: JSON only, explicit limits below the broker's visibility timeout, beat in cpv/celery.py.
CELERY_BROKER_URL = CONFIG.broker_url
CELERY_BROKER_TRANSPORT_OPTIONS = CONFIG.broker_transport_options
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_RESULT_BACKEND = CONFIG.result_backend
CELERY_RESULT_EXPIRES = 24 * 60 * 60
CELERY_RESULT_EXTENDED = False
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SOFT_TIME_LIMIT = CONFIG.task_soft_time_limit
CELERY_TASK_TIME_LIMIT = CONFIG.task_time_limit
# The reads in customer tenants (Graph, not Partner Center's budget) have a queue of their own, so ApplicationConsent
# never waits behind them; a worker started without `-Q` consumes both queues, and a deployment may give the
# verification a worker of its own (`-Q verify`) and the rest another (`-Q celery`).
CPV_VERIFY_QUEUE = CONFIG.verify_queue
CELERY_TASK_QUEUES = [Queue(name, Exchange(name, "direct"), routing_key=name) for name in ("celery", CPV_VERIFY_QUEUE)]
CELERY_TASK_ROUTES = {"consent.consents_verify": {"queue": CPV_VERIFY_QUEUE}}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_SEND_TASK_EVENTS = False
CELERY_TASK_TRACK_STARTED = True
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True

# Microsoft: the cloud the vendor's app lives in and its app registrations.
CPV_CLOUD = CONFIG.cloud.name
CPV_CLOUD_CONFIG = CONFIG.cloud
CPV_APP = CONFIG.app
CPV_SANDBOX_APP = CONFIG.sandbox_app
# The apps registered in the national clouds, by (cloud, environment); partners.registrations.app_for chooses.
CPV_NATIONAL_APPS = CONFIG.national_apps
# With CPV_CLOUD=custom: the national clouds' own hosts, by cloud name (clouds.resolve).
CPV_CUSTOM_CLOUDS = CONFIG.custom_clouds
CPV_APPLICATION_GRANTS = CONFIG.application_grants
# Who the partner-facing pages and emails say is asking (name, support address, logo).
CPV_VENDOR = CONFIG.vendor
CPV_SELF_ONBOARDING = CONFIG.self_onboarding
CPV_READYZ_TOKEN = CONFIG.readyz_token
CPV_INVITATION_MAX_AGE_DAYS = CONFIG.invitation_max_age_days
# Staff sign-in: failures per account before it is refused for the window (four times that per address).
CPV_SIGNIN_MAX_FAILURES = CONFIG.signin_max_failures
CPV_SIGNIN_LOCKOUT_MINUTES = CONFIG.signin_lockout_minutes
# Staff sign-in with Microsoft against the vendor's tenant ("" leaves passwords only); who may use a password
# ("admins": break-glass only; "all"), and the TOTP second factor ("required", or "enrolled": asked when set up).
CPV_STAFF_TENANT_ID = CONFIG.staff_tenant_id
CPV_STAFF_PASSWORD_SIGN_IN = CONFIG.staff_password_sign_in
CPV_STAFF_TOTP = CONFIG.staff_totp
# The authentication context id (c1 to c99) the staff sign-in with Microsoft asks for ("" asks for none).
CPV_STAFF_AUTH_CONTEXT = CONFIG.staff_auth_context
# The issuer an authenticator app shows beside the account (django-otp's TOTP devices).
OTP_TOTP_ISSUER = "CPV control panel"
CPV_CONSENT_FLOW_MINUTES = CONFIG.consent_flow_minutes
# require: a consent whose Global Administrator role cannot be proven is refused; warn: accepted and flagged.
CPV_GLOBAL_ADMIN_EVIDENCE = CONFIG.global_admin_evidence

# Background work: token renewal, and the shared limiter for Partner Center's ApplicationConsent calls.
CPV_RENEWAL_INTERVAL_DAYS = CONFIG.renewal_interval_days
CPV_RENEWAL_MAX_ATTEMPTS = CONFIG.renewal_max_attempts
CPV_PC_REQUESTS_PER_SECOND = CONFIG.pc_requests_per_second
CPV_VAULT_CREATES_PER_SECOND = CONFIG.vault_creates_per_second
# The fair schedule of ApplicationConsent: puller slots (batches in flight at once) and customers in a batch.
CPV_CONSENT_PULLERS = CONFIG.consent_pullers
CPV_CONSENT_BATCH = CONFIG.consent_batch
CPV_THROTTLE_URL = CONFIG.throttle_url
CPV_VISIBILITY_TIMEOUT = CONFIG.visibility_timeout

# The vault that holds every partner's refresh token.
VAULT_BACKEND = CONFIG.vault_backend
VAULT_URL = CONFIG.vault_url
VAULT_URLS = list(CONFIG.vault_urls)
VAULT_KEYS = CONFIG.vault_keys
# The local vault seals each token to this public key; only processes that may open tokens hold the private keys.
VAULT_PUBLIC_KEY = CONFIG.vault_public_key
VAULT_PRIVATE_KEYS = CONFIG.vault_private_keys
# The workers' Key Vault identity (may get, set and list); the web tier's own may only set.
VAULT_READER_CLIENT_ID = CONFIG.vault_reader_client_id
# web (seals tokens, opens none), worker, api, beat, migrate, or all (the embedded default: one process, every job).
CPV_PROCESS_ROLE = CONFIG.process_role
# The token API (api/): the vendor's tenant and the audiences of the client-credentials tokens it accepts, and each
# client's requests a minute.
CPV_API_TENANT_ID = CONFIG.api_tenant_id
CPV_API_AUDIENCES = CONFIG.api_audiences
CPV_API_RATE_LIMIT = CONFIG.api_rate_limit
VAULT_DELETED_SECRET_POLICY = CONFIG.vault_deleted_secret_policy

# Content-Security-Policy: nothing inline, nothing from another site. Forms may only post here; the consent
# page adds its partner's sign-in authority, where its form's redirect leads (consent/views.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    }
}

LOGGING = logging_config(log_format=CONFIG.log_format, level=CONFIG.log_level)
