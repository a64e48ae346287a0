"""Veil settings: one module, configured from the environment (12-factor).

With no environment at all Veil runs on its embedded default: SQLite, a filesystem Celery broker,
local password login and Slack off. Setting `DATABASE_URL`, `REDIS_URL`, `SLACK_*` and `OIDC_*`
moves the same code onto PostgreSQL, Redis, Slack and the company IdP. Every variable is listed in
the README's configuration table. Bad values fail fast with `ImproperlyConfigured`.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from urllib.parse import urlsplit

import csp.constants as csp
import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str = "") -> str:
    """Read a string; `NAME_FILE` (a path, e.g. a Docker secret) takes precedence over `NAME`."""
    file_path = os.environ.get(f"{name}_FILE")
    if file_path:
        try:
            return Path(file_path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={file_path!r} cannot be read: {exc}") from exc
    return os.environ.get(name, default)


def envbool(name: str, default: bool) -> bool:
    raw = env(name, "1" if default else "0").strip().lower()
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off", ""}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), not {raw!r}")


def envint(name: str, default: int) -> int:
    raw = env(name, str(default))
    try:
        return int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, not {raw!r}") from exc


def envlist(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


DEBUG = envbool("DEBUG", False)
# Development defaults only: with DEBUG=0 `check --deploy` fails on a public SECRET_KEY or a missing
# VEIL_SIGNING_KEY, and the web server and the Celery processes refuse to start (config/checks.py).
SECRET_KEY = env("SECRET_KEY", "django-insecure-veil-embedded-default-change-me")
# Signs audit checkpoints and export manifests; kept apart from SECRET_KEY so rotating sessions
# does not invalidate evidence already handed to auditors. Only development (DEBUG=1) falls back.
VEIL_SIGNING_KEY = env("VEIL_SIGNING_KEY") or (SECRET_KEY if DEBUG else "")
SITE_URL = env("SITE_URL", "http://127.0.0.1:8000").rstrip("/")
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", SITE_URL)
VAR_DIR = Path(env("VEIL_VAR_DIR", str(BASE_DIR / "var")))

INSTALLED_APPS = [
    "config.apps.VeilAdminConfig",  # django.contrib.admin behind Veil's sign-in
    "config.apps.ProjectConfig",  # start-up checks of the configuration (config/checks.py)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",  # OpClass in index expressions (the audit search indexes)
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "mozilla_django_oidc",
    "axes",  # password sign-in lockout per user and per address
    "csp",
    "pgtrigger",
    "audit",
    "identity",
    "masking",
    "jitaccess",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: turns a locked-out sign-in into the lockout page (HTTP 429).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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
                "config.context_processors.navigation",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", f"sqlite:///{VAR_DIR / 'veil.sqlite3'}"),
        conn_max_age=envint("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if not env("DATABASE_URL"):
    VAR_DIR.mkdir(parents=True, exist_ok=True)  # the embedded default's SQLite file lives here
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # One writer at a time; wait for it rather than failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
on_postgresql = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
if on_postgresql and envbool("DATABASE_PREPARED_STATEMENTS", True):
    # Django turns psycopg's prepared statements off (prepare_threshold=None), which also ignores an
    # explicit `prepare=True`. Django's own cursors never prepare whatever this says; the threshold
    # lets the unmask record's INSERT (audit.decision_log) be prepared once per connection.
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 2**31 - 1
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_USER_MODEL = "identity.User"
OIDC_ENABLED = bool(env("OIDC_RP_CLIENT_ID"))
LOCAL_LOGIN_ENABLED = envbool("LOCAL_LOGIN_ENABLED", not OIDC_ENABLED)
AUTHENTICATION_BACKENDS = ["guardian.backends.ObjectPermissionBackend"]
if OIDC_ENABLED:
    AUTHENTICATION_BACKENDS.insert(0, "identity.oidc.VeilOIDCBackend")
# Model permissions always come from Django's model backend; passwords only when local login is on.
AUTHENTICATION_BACKENDS.insert(
    0,
    "django.contrib.auth.backends.ModelBackend"
    if LOCAL_LOGIN_ENABLED
    else "identity.backends.PermissionsOnlyBackend",
)
# First: refuses any sign-in from a locked-out user or address before a password is checked.
AUTHENTICATION_BACKENDS.insert(0, "axes.backends.AxesStandaloneBackend")
if not (OIDC_ENABLED or LOCAL_LOGIN_ENABLED):
    raise ImproperlyConfigured("No way to sign in: set OIDC_RP_CLIENT_ID or LOCAL_LOGIN_ENABLED=1")
OIDC_RP_CLIENT_ID = env("OIDC_RP_CLIENT_ID")
OIDC_RP_CLIENT_SECRET = env("OIDC_RP_CLIENT_SECRET")
OIDC_RP_SIGN_ALGO = env("OIDC_RP_SIGN_ALGO", "RS256")
OIDC_RP_SCOPES = env("OIDC_RP_SCOPES", "openid email profile groups")
OIDC_OP_AUTHORIZATION_ENDPOINT = env("OIDC_OP_AUTHORIZATION_ENDPOINT")
OIDC_OP_TOKEN_ENDPOINT = env("OIDC_OP_TOKEN_ENDPOINT")
OIDC_OP_USER_ENDPOINT = env("OIDC_OP_USER_ENDPOINT")
OIDC_OP_JWKS_ENDPOINT = env("OIDC_OP_JWKS_ENDPOINT")
OIDC_OP_LOGOUT_ENDPOINT = env("OIDC_OP_LOGOUT_ENDPOINT")
OIDC_OP_ISSUER = env("OIDC_OP_ISSUER")
if OIDC_ENABLED and not OIDC_OP_ISSUER:
    # mozilla-django-oidc does not check `iss`; identity.oidc does, against this, always.
    raise ImproperlyConfigured(
        "OIDC_OP_ISSUER is required when OIDC is on (OIDC_RP_CLIENT_ID is set): the IdP's issuer, "
        "from its .well-known/openid-configuration"
    )
OIDC_USE_PKCE = envbool("OIDC_USE_PKCE", True)
OIDC_GROUPS_CLAIM = env("OIDC_GROUPS_CLAIM", "groups")
# The claim a person is known by (their OIDC subject, and the SCIM externalId of a provisioned person):
# `sub` for Okta and most IdPs; `oid` for Entra ID, whose `sub` is pairwise (one per application)
# while `oid` is the person's object id, the one its provisioning sends as externalId.
OIDC_SUBJECT_CLAIM = env("OIDC_SUBJECT_CLAIM", "sub").strip()
if not OIDC_SUBJECT_CLAIM:
    raise ImproperlyConfigured("OIDC_SUBJECT_CLAIM must name a claim (sub, or oid for Entra ID)")
OIDC_CALLBACK_CLASS = "identity.oidc.VeilOIDCCallbackView"
LOGIN_REDIRECT_URL_FAILURE = "/login/?sso=failed"
OIDC_CREATE_USER = True
OIDC_STORE_ID_TOKEN = False
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
GUARDIAN_RAISE_403 = True

# Password sign-in lockout (django-axes, database handler): LOGIN_FAILURE_LIMIT failures lock the
# username, and separately the client address, for LOGIN_LOCKOUT_S seconds (0: until an administrator
# unlocks, docs/operations.md). Every failure is kept with its address (AccessFailureLog).
AXES_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", 10)
LOGIN_LOCKOUT_S = envint("LOGIN_LOCKOUT_S", 3600)
AXES_COOLOFF_TIME = LOGIN_LOCKOUT_S / 3600 if LOGIN_LOCKOUT_S else None  # hours
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_ENABLE_ACCESS_FAILURE_LOG = True
AXES_DISABLE_ACCESS_LOG = True  # successful sign-ins are in the audit log already
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
# Behind a TLS proxy REMOTE_ADDR is the proxy: every person would share one address and one lockout.
# TRUSTED_PROXY_COUNT proxies append to X-Forwarded-For; the address before them is the client's.
TRUSTED_PROXY_COUNT = envint("TRUSTED_PROXY_COUNT", 0)
AXES_CLIENT_IP_CALLABLE = "identity.signin.client_address"
ANONYMOUS_USER_NAME = None

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env("STATIC_ROOT", str(VAR_DIR / "static")))
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        # Hashed, compressed files need `collectstatic` (the Docker image runs it); tests and
        # runserver serve the source files directly.
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if envbool("STATIC_MANIFEST", not DEBUG)
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not envbool("STATIC_MANIFEST", not DEBUG)

# Security: secure by default, loosened only by explicit environment variables.
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", SECURE_HSTS_SECONDS > 0)
if envbool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_AGE = envint("SESSION_COOKIE_AGE", 8 * 3600)
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp): Veil's pages load only their own scripts, styles and images
# and run no inline script or style attribute, so an injected <script> or handler never runs.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [csp.SELF],
        "script-src": [csp.SELF],
        "style-src": [csp.SELF],
        "img-src": [csp.SELF, "data:"],
        "font-src": [csp.SELF],
        "connect-src": [csp.SELF],
        "object-src": [csp.NONE],
        "base-uri": [csp.NONE],
        "form-action": [csp.SELF],
        "frame-ancestors": [csp.NONE],
    },
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "identity.authentication.ServiceTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["shared.strict_json.StrictJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "shared.schema.AutoSchema",
    "EXCEPTION_HANDLER": "shared.api.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Veil API",
    "DESCRIPTION": "Per-column mask/unmask decisions, catalog, just-in-time unmask requests, audit.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # Served from our own static files: nothing is fetched from a CDN at run time.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Celery: Redis when REDIS_URL is set, otherwise kombu's filesystem transport (no server needed).
# Its URL names a host (ignored) because kombu warns "No hostname was supplied" on every connection.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", REDIS_URL or "filesystem://localhost/")
if CELERY_BROKER_URL.startswith("filesystem://"):
    broker_dir = VAR_DIR / "celery-broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(broker_dir),
        "data_folder_out": str(broker_dir),
        "processed_folder": str(VAR_DIR / "celery-processed"),
        "control_folder": str(VAR_DIR / "celery-control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 2, "socket_timeout": 5}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = TIME_ZONE
# The one place periodic work is declared; one beat process runs it (see docs/operations.md).
SWEEP_INTERVAL_S = envint("SWEEP_INTERVAL_S", 60)
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "jitaccess-sweep": {"task": "jitaccess.tasks.sweep_requests", "schedule": float(SWEEP_INTERVAL_S)},
    "jitaccess-deliver-pending": {
        "task": "jitaccess.tasks.deliver_pending_notifications",
        "schedule": float(SWEEP_INTERVAL_S),
    },
    "jitaccess-slack-reminders": {
        "task": "jitaccess.slack.tasks.remind_pending_requests",
        "schedule": float(SWEEP_INTERVAL_S),
    },
    "jitaccess-slack-resume": {
        "task": "jitaccess.slack.tasks.resume_slack_deliveries",
        "schedule": float(SWEEP_INTERVAL_S),
    },
    "jitaccess-slack-policy-messages": {
        "task": "jitaccess.slack.tasks.sync_policy_messages",
        "schedule": float(SWEEP_INTERVAL_S),
    },
    "jitaccess-slack-clicks": {
        "task": "jitaccess.slack.tasks.apply_slack_clicks",
        "schedule": float(SWEEP_INTERVAL_S),
    },
    "jitaccess-access-reviews": {
        "task": "jitaccess.reviews.tasks.sweep_access_reviews",
        "schedule": float(SWEEP_INTERVAL_S),
    },
    "jitaccess-access-review-messages": {
        "task": "jitaccess.reviews.tasks.sync_access_review_messages",
        "schedule": float(SWEEP_INTERVAL_S),
    },
}
# A publish that cannot reach the broker fails fast instead of stalling a web request.
CELERY_BROKER_CONNECTION_TIMEOUT = 2

# Slack: off unless a bot token is configured. SLACK_API_URL lets tests point slack-sdk at a fake.
SLACK_BOT_TOKEN = env("SLACK_BOT_TOKEN")
SLACK_SIGNING_SECRET = env("SLACK_SIGNING_SECRET")
SLACK_API_URL = env("SLACK_API_URL", "https://slack.com/api/")
SLACK_ENABLED = bool(SLACK_BOT_TOKEN)
# The one workspace (team ID, T...) and Slack app (A...) whose interactions are accepted: a payload
# signed with the right secret but sent from another workspace (a distributed app) is refused.
SLACK_TEAM_ID = env("SLACK_TEAM_ID")
SLACK_APP_ID = env("SLACK_APP_ID")
for _name, _value in (("SLACK_TEAM_ID", SLACK_TEAM_ID), ("SLACK_APP_ID", SLACK_APP_ID)):
    if SLACK_ENABLED and not _value:
        raise ImproperlyConfigured(
            f"{_name} is required when Slack is on (SLACK_BOT_TOKEN is set): see docs/slack.md"
        )
# Where approval requests go when neither the request's policy nor its project names a channel
# (a channel ID such as C0123ABCD, or #name). No channel anywhere: the approvers get DMs.
SLACK_APPROVAL_CHANNEL = env("SLACK_APPROVAL_CHANNEL")
# A Slack click is bound to a Slack identity, not to an IdP session with MFA: scopes classified at
# or above this level (and wholly unclassified ones) are approved in the web UI after IdP sign-in.
SLACK_WEB_CONFIRM_LEVEL = envint("SLACK_WEB_CONFIRM_LEVEL", 4)
# A pending request is re-announced after the first delay and escalated after the second (0: never).
SLACK_REMINDER_AFTER_S = envint("SLACK_REMINDER_AFTER_S", 3600)
SLACK_ESCALATION_AFTER_S = envint("SLACK_ESCALATION_AFTER_S", 4 * 3600)
SLACK_ESCALATION_CHANNEL = env("SLACK_ESCALATION_CHANNEL")
# Whom the escalation mentions, in Slack syntax: <!subteam^S0123ABCD> for a user group, <@U0123> a person.
SLACK_ESCALATION_MENTION = env("SLACK_ESCALATION_MENTION")
# Per Web API call. Short, because interaction replies must fit in Slack's 3-second window.
SLACK_API_TIMEOUT_S = envint("SLACK_API_TIMEOUT_S", 5)
# A 429 asking to wait up to this long is retried inside the call; a longer wait goes back to the outbox.
SLACK_RATE_LIMIT_MAX_WAIT_S = envint("SLACK_RATE_LIMIT_MAX_WAIT_S", 5)
# jitaccess/slack/tasks.py and jitaccess/reviews/tasks.py are not an app's `tasks` module, so
# Celery's autodiscovery would miss them.
CELERY_IMPORTS = ["jitaccess.slack.tasks", "jitaccess.reviews.tasks"]

# On-call approval (jitaccess/oncall.py): an approval policy may name a PagerDuty or Opsgenie schedule.
# Off for a provider until its credential is set. Schedules are read at every decision, never cached;
# a provider that does not answer within the timeout (or answers an error) adds no approver.
PAGERDUTY_API_TOKEN = env("PAGERDUTY_API_TOKEN")
PAGERDUTY_API_URL = env("PAGERDUTY_API_URL", "https://api.pagerduty.com")
OPSGENIE_API_KEY = env("OPSGENIE_API_KEY")
OPSGENIE_API_URL = env("OPSGENIE_API_URL", "https://api.opsgenie.com")  # EU: https://api.eu.opsgenie.com
ONCALL_API_TIMEOUT_S = envint("ONCALL_API_TIMEOUT_S", 2)
if ONCALL_API_TIMEOUT_S < 1:
    raise ImproperlyConfigured("ONCALL_API_TIMEOUT_S must be at least 1")
for _name in ("PAGERDUTY_API_URL", "OPSGENIE_API_URL"):
    _url = urlsplit(globals()[_name])
    # The token goes with every request: in clear only to this machine (a fake or a local relay).
    _local = _url.hostname in ("localhost", "127.0.0.1", "::1")
    if not _url.hostname or _url.username or _url.password or _url.query or _url.fragment:
        raise ImproperlyConfigured(
            f"{_name} must be a plain base URL such as https://host, not {_url.geturl()!r}"
        )
    if _url.scheme != "https" and not (_url.scheme == "http" and _local):
        raise ImproperlyConfigured(f"{_name} must use https (http only to localhost), not {_url.geturl()!r}")

# Tickets checked in Jira Cloud (jitaccess/jira.py): a project may require that a request names an
# open Jira issue. Off until all three are set. The issue is read once, when the request is made;
# Jira not answering within the timeout (or answering an error) refuses the request's ticket.
JIRA_URL = env("JIRA_URL").rstrip("/")  # the site, e.g. https://acme.atlassian.net
JIRA_EMAIL = env("JIRA_EMAIL")
JIRA_API_TOKEN = env("JIRA_API_TOKEN")
JIRA_API_TIMEOUT_S = envint("JIRA_API_TIMEOUT_S", 2)
if JIRA_API_TIMEOUT_S < 1:
    raise ImproperlyConfigured("JIRA_API_TIMEOUT_S must be at least 1")
if any((JIRA_URL, JIRA_EMAIL, JIRA_API_TOKEN)) and not all((JIRA_URL, JIRA_EMAIL, JIRA_API_TOKEN)):
    raise ImproperlyConfigured("JIRA_URL, JIRA_EMAIL and JIRA_API_TOKEN go together: set all three or none")
if JIRA_URL:
    _url = urlsplit(JIRA_URL)
    # The API token goes with every request: in clear only to this machine (a fake or a local relay).
    _local = _url.hostname in ("localhost", "127.0.0.1", "::1")
    if not _url.hostname or _url.username or _url.password or _url.query or _url.fragment:
        raise ImproperlyConfigured(
            f"JIRA_URL must be a plain site URL such as https://acme.atlassian.net, not {JIRA_URL!r}"
        )
    if _url.scheme != "https" and not (_url.scheme == "http" and _local):
        raise ImproperlyConfigured(f"JIRA_URL must use https (http only to localhost), not {JIRA_URL!r}")

NOTIFY_BY_EMAIL = envbool("NOTIFY_BY_EMAIL", False)
EMAIL_BACKEND = env("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_FILE_PATH = env("EMAIL_FILE_PATH", str(VAR_DIR / "mail"))
EMAIL_HOST = env("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", 25)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "veil@localhost")

# Catalog API: how many columns one bulk upsert may carry.
CATALOG_UPSERT_MAX_COLUMNS = envint("CATALOG_UPSERT_MAX_COLUMNS", 20000)
# Decision API: batch size, how long clients may cache an answer, what counts as sensitive by default.
DECISION_MAX_COLUMNS = envint("DECISION_MAX_COLUMNS", 1000)
DECISION_TTL_S = envint("DECISION_TTL_S", 10)
MASK_CLASSIFIED_FROM_LEVEL = envint("MASK_CLASSIFIED_FROM_LEVEL", 3)
UNKNOWN_COLUMNS_MASKED = envbool("UNKNOWN_COLUMNS_MASKED", True)
# Environments whose unclassified columns are masked unless a project's policy settings say otherwise.
UNCLASSIFIED_MASKED_ENVIRONMENTS = envlist("UNCLASSIFIED_MASKED_ENVIRONMENTS", "prod,production")
# Unknown columns one token's decision requests may add to the catalog per window (more are still
# answered unknown_column, masked, but not recorded; the checks page shows the throttling).
CATALOG_DISCOVERY_MAX = envint("CATALOG_DISCOVERY_MAX", 200)
CATALOG_DISCOVERY_WINDOW_S = envint("CATALOG_DISCOVERY_WINDOW_S", 3600)
PRINCIPAL_CACHE_S = envint("PRINCIPAL_CACHE_S", 1)
# Each process re-reads the policy and grant epochs at most this often, so a change committed in
# another process reaches every decision within this bound (0: read them on every decision).
DECISION_EPOCH_MAX_AGE_MS = envint("DECISION_EPOCH_MAX_AGE_MS", 250)
ACCESS_EVENTS_MAX_BATCH = envint("ACCESS_EVENTS_MAX_BATCH", 1000)
# Service-account token use is recorded at most this often per token (keeps the hot path read-only).
API_TOKEN_LAST_USED_RESOLUTION_S = envint("API_TOKEN_LAST_USED_RESOLUTION_S", 60)
# A verified token is trusted for this long in each process (revocation reaches others within it).
API_TOKEN_CACHE_S = envint("API_TOKEN_CACHE_S", 1)
# Directory sync (SCIM 2.0 at /scim/v2/, django-scim2): Veil's adapters, filters and token check.
SCIM_SERVICE_PROVIDER = {
    "USER_ADAPTER": "identity.scim.PersonAdapter",
    "GROUP_MODEL": "identity.models.DirectoryGroup",
    "GROUP_ADAPTER": "identity.scim.GroupAdapter",
    "USER_FILTER_PARSER": "identity.scim_filters.PersonFilter",
    "GROUP_FILTER_PARSER": "identity.scim_filters.DirectoryGroupFilter",
    "AUTH_CHECK_MIDDLEWARE": "identity.scim.ScimTokenCheck",
    "BASE_LOCATION_GETTER": "identity.scim.base_location",
    "SERVICE_PROVIDER_CONFIG_MODEL": "identity.scim.ServiceProviderConfig",
    "GET_EXTRA_MODEL_EXCLUDE_KWARGS_GETTER": "identity.scim.local_accounts_excluded",
    "GET_OBJECT_POST_PROCESSOR_GETTER": "identity.scim.local_account_hidden",
    "NETLOC": SITE_URL.split("://", 1)[-1],  # required by django-scim2; locations come from SITE_URL
    "WWW_AUTHENTICATE_HEADER": 'Bearer realm="veil-scim"',
    "AUTHENTICATION_SCHEMES": [
        {
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "A Veil service-account token with the scim scope",
            "primary": True,
        }
    ],
}
# veil-proxy as people reach it: the Database access page builds their psql and JDBC strings from these.
VEIL_PROXY_HOST = env("VEIL_PROXY_HOST", "localhost")
VEIL_PROXY_PORT = envint("VEIL_PROXY_PORT", 6432)
VEIL_PROXY_DATABASE = env("VEIL_PROXY_DATABASE", "shop")
VEIL_PROXY_SSLMODE = env("VEIL_PROXY_SSLMODE", "prefer")
if VEIL_PROXY_SSLMODE not in {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}:
    raise ImproperlyConfigured(f"VEIL_PROXY_SSLMODE must be a libpq sslmode, not {VEIL_PROXY_SSLMODE!r}")
# Failed proxy logins written to the audit log per client address and minute; more are only counted.
QUERY_LOGIN_FAILURES_RECORDED_PER_MINUTE = envint("QUERY_LOGIN_FAILURES_RECORDED_PER_MINUTE", 10)

# GET /metrics (config/metrics.py) answers a scraper sending this bearer token, or connecting from one
# of these networks (CIDRs, the connecting address only); with neither, nobody.
METRICS_TOKEN = env("METRICS_TOKEN")
METRICS_ALLOWED_NETWORKS = envlist("METRICS_ALLOWED_NETWORKS")
for _network in METRICS_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_network)
    except ValueError as _exc:
        raise ImproperlyConfigured(f"METRICS_ALLOWED_NETWORKS: {_network!r}: {_exc}") from _exc

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # A 403 is logged as one line, without the refusing view's traceback (config/log_filters.py).
    "filters": {"refusal_without_traceback": {"()": "config.log_filters.RefusalWithoutTraceback"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["refusal_without_traceback"],
        }
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    # django-axes logs every sign-in at INFO; failures and lockouts are counted in audit.failures.
    # "django" listed without handlers drops Django's own DEBUG console handler, which printed each
    # of its records a second time, unfiltered, beside the root's.
    "loggers": {
        "django": {"level": "INFO"},
        "django.db.backends": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
    },
}

# Audit
# Owned by audit/ (see docs/audit.md). Retention bounds what `manage.py audit archive` may remove;
# the intervals are the Celery beat periods of the sealing and checkpoint tasks, which `audit verify`
# also uses to warn when they have stopped. Exports and archives are files under VAR_DIR.
AUDIT_RETENTION_DAYS = envint("AUDIT_RETENTION_DAYS", 7 * 366)
AUDIT_SEAL_INTERVAL_S = envint("AUDIT_SEAL_INTERVAL_S", 60)
AUDIT_CHECKPOINT_INTERVAL_S = envint("AUDIT_CHECKPOINT_INTERVAL_S", 300)
# Unauthenticated failures are counted per window and folded into one chained event per window and
# action (audit/failures.py), so nobody outside can make the audited writes queue behind theirs.
AUDIT_FAILURE_WINDOW_S = envint("AUDIT_FAILURE_WINDOW_S", 60)
# Checkpoints, archive boundaries and export manifests are signed with an Ed25519 key derived from
# VEIL_SIGNING_KEY; keys listed here (comma-separated, old first) are still accepted when verifying.
AUDIT_PREVIOUS_SIGNING_KEYS = envlist("AUDIT_PREVIOUS_SIGNING_KEYS")
AUDIT_EXPORT_DIR = Path(env("AUDIT_EXPORT_DIR", str(VAR_DIR / "audit-exports")))
AUDIT_ARCHIVE_DIR = Path(env("AUDIT_ARCHIVE_DIR", str(VAR_DIR / "audit-archive")))
# Every signed checkpoint is also logged, and appended to this file and POSTed to this URL when set:
# copies outside the database that `audit verify` holds the chain to (audit/published.py).
AUDIT_CHECKPOINT_PATH = env("AUDIT_CHECKPOINT_PATH")
AUDIT_CHECKPOINT_WEBHOOK_URL = env("AUDIT_CHECKPOINT_WEBHOOK_URL")
# Audit streams (audit/streams/): beat offers every enabled destination its new events this often;
# a failed batch is retried after RETRY_BASE_S, doubling up to RETRY_MAX_S, and the destination is
# disabled (and that audited) after MAX_FAILURES consecutive failures. Destinations must resolve to
# public addresses over https, unless they lie in ALLOWED_NETWORKS (CIDRs; http allowed there too).
AUDIT_STREAM_INTERVAL_S = envint("AUDIT_STREAM_INTERVAL_S", 5)
AUDIT_STREAM_BATCH_SIZE = envint("AUDIT_STREAM_BATCH_SIZE", 100)
AUDIT_STREAM_TIMEOUT_S = envint("AUDIT_STREAM_TIMEOUT_S", 10)
AUDIT_STREAM_RETRY_BASE_S = envint("AUDIT_STREAM_RETRY_BASE_S", 5)
AUDIT_STREAM_RETRY_MAX_S = envint("AUDIT_STREAM_RETRY_MAX_S", 3600)
AUDIT_STREAM_MAX_FAILURES = envint("AUDIT_STREAM_MAX_FAILURES", 20)
AUDIT_STREAM_ALLOWED_NETWORKS = envlist("AUDIT_STREAM_ALLOWED_NETWORKS")
for _network in AUDIT_STREAM_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_network)
    except ValueError as _exc:
        raise ImproperlyConfigured(f"AUDIT_STREAM_ALLOWED_NETWORKS: {_network!r}: {_exc}") from _exc
for _name in ("INTERVAL_S", "BATCH_SIZE", "TIMEOUT_S", "MAX_FAILURES", "RETRY_BASE_S", "RETRY_MAX_S"):
    if globals()[f"AUDIT_STREAM_{_name}"] < 1:
        raise ImproperlyConfigured(f"AUDIT_STREAM_{_name} must be at least 1")
CELERY_BEAT_SCHEDULE |= {
    "audit-seal-decisions": {"task": "audit.tasks.seal_decisions", "schedule": float(AUDIT_SEAL_INTERVAL_S)},
    "audit-checkpoint": {"task": "audit.tasks.checkpoint", "schedule": float(AUDIT_CHECKPOINT_INTERVAL_S)},
    "audit-run-pending-exports": {"task": "audit.tasks.run_pending_exports", "schedule": 60.0},
    "audit-verify-log": {"task": "audit.tasks.verify_log", "schedule": 86400.0},
    "audit-fold-failures": {"task": "audit.tasks.fold_failures", "schedule": float(AUDIT_FAILURE_WINDOW_S)},
    "audit-deliver-streams": {
        "task": "audit.tasks.deliver_streams",
        "schedule": float(AUDIT_STREAM_INTERVAL_S),
    },
}
