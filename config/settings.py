"""csvault settings: the one place that reads the environment.

Embedded mode (no ``DATABASE_URL``): SQLite, a broker-less kombu transport,
local-memory cache, files and keys in ``CSVAULT_DATA_DIR``. Production mode
(``DATABASE_URL`` set): PostgreSQL, Redis and keys from the environment, and
the service refuses to start without a secret key and master keys. Business
code never asks which mode it is in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from config.layout import BASE_DIR, Layout, load_env
from config.storage import datasets_storage

# Importing the settings changes nothing on disk or in os.environ (reading .env
# aside): the folders and embedded mode's generated secrets are made by
# config.bootstrap.prepare(), which every entry point calls first.
env = load_env()
_layout = Layout.from_env(env)

DATA_DIR = _layout.data_dir
DATABASE_URL = _layout.database_url
EMBEDDED = _layout.embedded


def _dev_secret(path: Path, variable: str) -> str:
    """A secret that embedded mode generated into the data dir."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise ImproperlyConfigured(
            f"{variable} is not set and {path} does not exist. Embedded mode generates it "
            "when csvault starts: run `make migrate` (or any `python manage.py` command, "
            "gunicorn config.wsgi, celery -A config); a script that calls django.setup() "
            "itself must call config.bootstrap.prepare() first."
        ) from None


SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
CSVAULT_MASTER_KEYS = env.str("CSVAULT_MASTER_KEYS", default="")
if EMBEDDED:
    SECRET_KEY = SECRET_KEY or _dev_secret(_layout.secret_key_file, "DJANGO_SECRET_KEY")
    CSVAULT_MASTER_KEYS = CSVAULT_MASTER_KEYS or _dev_secret(
        _layout.master_keys_file, "CSVAULT_MASTER_KEYS"
    )
elif not SECRET_KEY or not CSVAULT_MASTER_KEYS:
    raise ImproperlyConfigured(
        "DATABASE_URL names PostgreSQL (production mode) but DJANGO_SECRET_KEY or "
        "CSVAULT_MASTER_KEYS is missing; refusing to start."
    )

DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list(
    "DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"]
)
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    # Swagger UI's files, served by csvault itself (/api/docs/ loads nothing from a CDN).
    "drf_spectacular_sidecar",
    # django-csp: its system checks report settings in the format before 4.0.
    "csp",
    "csvault.core",
    "csvault.datasets",
    "csvault.audit",
    "csvault.web",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "csvault.core.middleware.RequestContextMiddleware",
    "csvault.core.middleware.UnfinishedUploadMiddleware",
    "csvault.core.middleware.ApiNoStoreMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Before WhiteNoise and every view: static files and error pages carry the policy too.
    "csp.middleware.CSPMiddleware",
    # Before anything that reads a body (the CSRF check does): csvault/core/bodies.py.
    # Its refusals still get the request id, no-store, the security headers and the CSP.
    "csvault.core.bodies.RequestBodyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database -------------------------------------------------------------
if EMBEDDED:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env.db_url("DATABASE_URL")["NAME"]
            if DATABASE_URL
            else str(DATA_DIR / "csvault.sqlite3"),
            # The worker is another process: wait for the writer instead of
            # failing with "database is locked", and take the write lock up
            # front so two writers never deadlock on an upgrade.
            "OPTIONS": {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            # A file, not :memory:, so a worker process sees the test database.
            "TEST": {"NAME": str(DATA_DIR / "test.sqlite3")},
        }
    }
else:
    DATABASES = {"default": env.db_url("DATABASE_URL")}
    if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured("DATABASE_URL must be a postgres:// (or sqlite://) URL.")
    pool_size = env.int("CSVAULT_DATABASE_POOL", default=0)

    def _pool_connection_class() -> Any:
        from csvault.core.dbwait import Connection

        return Connection

    if pool_size:
        # A connection pool per process (psycopg_pool, Django's "pool" option), for the
        # gevent web workers (scripts/gunicorn.conf.py sets it): there every greenlet is
        # a "thread" with its own connection, so persistent ones would grow with the
        # clients; the pool bounds them and lends one per request.
        DATABASES["default"]["CONN_MAX_AGE"] = 0
        options: dict[str, Any] = dict(DATABASES["default"].get("OPTIONS") or {})  # type: ignore[arg-type]
        options["pool"] = {
            "min_size": min(2, pool_size),
            "max_size": pool_size,
            "timeout": env.float("CSVAULT_DATABASE_POOL_TIMEOUT", default=10.0),
            # Lets a short read wait without yielding (csvault/core/dbwait.py).
            "connection_class": _pool_connection_class(),
        }
        DATABASES["default"]["OPTIONS"] = options
    else:
        # Persistent connections: measured 5x throughput on cached endpoints.
        DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
        DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- cache ------------------------------------------------------------------
CACHE_URL = env.str("CACHE_URL", default="")
if CACHE_URL.startswith("dummy://"):
    # No caching at all (for measuring what the cache saves).
    CACHES: dict[str, dict[str, Any]] = {
        "default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}
    }
elif CACHE_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": CACHE_URL,
            "KEY_PREFIX": "csvault",
            # A cache outage degrades to the database instead of a 500.
            "OPTIONS": {
                "IGNORE_EXCEPTIONS": True,
                "SOCKET_CONNECT_TIMEOUT": 1,
                "SOCKET_TIMEOUT": 1,
            },
        }
    }
    DJANGO_REDIS_IGNORE_EXCEPTIONS = True
    DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
else:
    # Files in the data dir, shared by the web and worker processes of one
    # machine: the worker's writes must clear what the web process cached.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(DATA_DIR / "cache"),
            "OPTIONS": {"MAX_ENTRIES": 20_000},
        }
    }

# --- storage ----------------------------------------------------------------
STORAGE_URL = env.str("STORAGE_URL", default=f"file://{DATA_DIR / 'files'}")
try:
    _datasets_storage = datasets_storage(
        STORAGE_URL,
        endpoint_url=env.str("AWS_S3_ENDPOINT_URL", default=""),
        access_key=env.str("AWS_ACCESS_KEY_ID", default=""),
        secret_key=env.str("AWS_SECRET_ACCESS_KEY", default=""),
        region=env.str("AWS_S3_REGION_NAME", default="us-east-1"),
        addressing_style=env.str("AWS_S3_ADDRESSING_STYLE", default=""),
        connect_timeout=env.float("CSVAULT_STORAGE_CONNECT_TIMEOUT", default=5.0),
        read_timeout=env.float("CSVAULT_STORAGE_READ_TIMEOUT", default=60.0),
    )
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from None
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
    "datasets": _datasets_storage,
}
FILE_UPLOAD_TEMP_DIR = str(_layout.upload_temp_dir)
FILE_UPLOAD_PERMISSIONS = 0o600
# Every multipart body goes through the encrypting handler: no plaintext temp files.
FILE_UPLOAD_HANDLERS = ["csvault.datasets.uploads.EncryptingUploadHandler"]

STATIC_URL = "static/"
LOGIN_URL = "web-login"
LOGIN_REDIRECT_URL = "web-home"
LOGOUT_REDIRECT_URL = "web-login"
STATIC_ROOT = _layout.static_root

# --- auth and API -------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

REST_FRAMEWORK = {
    # Token first so that an anonymous request gets 401 with WWW-Authenticate.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "csvault.core.authentication.CachedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "csvault.core.schema.AutoSchema",
    "EXCEPTION_HANDLER": "csvault.core.exceptions.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "csvault.core.pagination.NewestFirstCursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_THROTTLE_CLASSES": ["csvault.core.throttling.ScopedUserThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "read": env.str("CSVAULT_THROTTLE_READ", default="1200/min"),
        "write": env.str("CSVAULT_THROTTLE_WRITE", default="120/min"),
        "upload": env.str("CSVAULT_THROTTLE_UPLOAD", default="60/min"),
        # A resumable upload's chunks: a 5 GB file in 5 MiB chunks is 1,000 of them.
        "chunk": env.str("CSVAULT_THROTTLE_CHUNK", default="3000/min"),
        "login": env.str("CSVAULT_THROTTLE_LOGIN", default="10/min"),
        "anon": env.str("CSVAULT_THROTTLE_ANON", default="60/min"),
    },
    # Client addresses come from REMOTE_ADDR only (X-Forwarded-For is spoofable);
    # behind N trusted proxies set CSVAULT_TRUSTED_PROXIES=N.
    "NUM_PROXIES": env.int("CSVAULT_TRUSTED_PROXIES", default=0),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "csvault API",
    "DESCRIPTION": "Upload large CSV files, ingest them encrypted, read them back.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Every operation's error answers, the Error body and the HEAD/OPTIONS operations
    # that views implement themselves (tus, the export's HEAD): csvault/core/schema.py.
    "DEFAULT_GENERATOR_CLASS": "csvault.core.schema.SchemaGenerator",
    # Swagger UI from drf-spectacular-sidecar's static files, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
}

# --- security ---------------------------------------------------------------
# Production (PostgreSQL) is HTTPS-only by default: redirect, Secure cookies, HSTS.
# Embedded mode keeps all of them off, so it works over plain http on localhost
# (HSTS on localhost would also break every other local http service in the browser).
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not EMBEDDED)
# Secure cookies stay on behind a TLS proxy even with DJANGO_SECURE_SSL_REDIRECT=0.
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=not EMBEDDED)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# Sent on HTTPS responses only. The preload token alone submits nothing to browsers'
# preload lists; that stays a deliberate, manual step.
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0 if EMBEDDED else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy on every answer (django-csp; docs/security.md): scripts,
# styles, images, fonts and fetches from csvault itself only, no inline script, no
# plugin, no <base>, no framing, forms posting to csvault only. Styles also allow
# 'unsafe-inline' because Swagger UI (/api/docs/) and the Django admin set style
# attributes and <style> blocks; scripts never do.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- csvault ----------------------------------------------------------------
CSVAULT_MAX_UPLOAD_BYTES = env.int("CSVAULT_MAX_UPLOAD_BYTES", default=1 << 30)
# After the grace period a request body must average at least this many bytes a second
# since the request began, or it is cut with 408 (csvault/core/bodyrate.py; gevent worker).
CSVAULT_MIN_BODY_RATE = env.int("CSVAULT_MIN_BODY_RATE", default=10240)
CSVAULT_BODY_GRACE_SECONDS = env.float("CSVAULT_BODY_GRACE_SECONDS", default=30.0)
# Largest body of any request but an upload (login and admin forms, the token API):
# refused with 413 from its Content-Length, before it is read.
CSVAULT_FORM_MAX_BYTES = env.int("CSVAULT_FORM_MAX_BYTES", default=64 * 1024)
# A resumable upload not finished this many seconds after its creation is deleted.
CSVAULT_UPLOAD_EXPIRES = env.int("CSVAULT_UPLOAD_EXPIRES", default=24 * 3600)
CSVAULT_MAX_COLUMNS = env.int("CSVAULT_MAX_COLUMNS", default=1000)
CSVAULT_MAX_FIELD_BYTES = env.int("CSVAULT_MAX_FIELD_BYTES", default=1 << 20)
CSVAULT_MAX_ROWS = env.int("CSVAULT_MAX_ROWS", default=100_000_000)
CSVAULT_INGEST_BATCH_ROWS = env.int("CSVAULT_INGEST_BATCH_ROWS", default=40_000)
# How often the GIL changes hands while the ingest's writer thread runs (seconds);
# see docs/performance.md.
CSVAULT_GIL_SWITCH_INTERVAL = env.float("CSVAULT_GIL_SWITCH_INTERVAL", default=0.001)
# Parse CSV rows with the C fast path when it is built (setup.py; it hands a file to
# the reference Python reader at the first row it is not sure of); 0: Python only.
CSVAULT_FAST_CSV = env.bool("CSVAULT_FAST_CSV", default=True)
# Compress each block of rows (LZ4) before it is encrypted (csvault/csvio/blocks.py).
CSVAULT_COMPRESS_ROWS = env.bool("CSVAULT_COMPRESS_ROWS", default=True)
# Server-Sent Events: how often a stream looks at the (cached) progress, and
# how long one stream lasts before the client reconnects (it holds a thread).
CSVAULT_SSE_INTERVAL_SECONDS = env.float("CSVAULT_SSE_INTERVAL_SECONDS", default=0.5)
CSVAULT_SSE_MAX_SECONDS = env.float("CSVAULT_SSE_MAX_SECONDS", default=60.0)
# Per-user quotas (0 = none): bytes stored, and datasets not yet final.
CSVAULT_QUOTA_BYTES = env.int("CSVAULT_QUOTA_BYTES", default=20 << 30)
CSVAULT_MAX_ACTIVE_DATASETS = env.int("CSVAULT_MAX_ACTIVE_DATASETS", default=20)
# Work whose heartbeat is older than this is considered stalled and re-queued.
CSVAULT_STALL_SECONDS = env.int("CSVAULT_STALL_SECONDS", default=30)
# Unfinished uploads (a web process died mid-upload) older than this are removed from
# the store by the reaper; far longer than any gap between two writes of a live upload.
CSVAULT_UNFINISHED_UPLOAD_SECONDS = env.int("CSVAULT_UNFINISHED_UPLOAD_SECONDS", default=3600)
CSVAULT_MAX_ATTEMPTS = env.int("CSVAULT_MAX_ATTEMPTS", default=5)

# Malware scanning (fail closed). With CLAMD_URL (tcp://host:port or
# unix:///path) files are scanned by clamd; without it by the minimal built-in
# matcher over CSVAULT_SIGNATURES_DIR (embedded mode; `check --deploy` warns).
CLAMD_URL = env.str("CLAMD_URL", default="")
CSVAULT_SIGNATURES_DIR = Path(
    env.str("CSVAULT_SIGNATURES_DIR", default=str(BASE_DIR / "signatures"))
).resolve()
CSVAULT_SCAN_TIMEOUT = env.float("CSVAULT_SCAN_TIMEOUT", default=60.0)
# A scan that finds the scanner unavailable is retried this many times in all
# (backoff from CSVAULT_SCAN_RETRY_SECONDS, doubling, capped at 5 minutes),
# then the dataset fails with "scanner unavailable"; it is never ingested.
CSVAULT_SCAN_MAX_ATTEMPTS = env.int("CSVAULT_SCAN_MAX_ATTEMPTS", default=6)
CSVAULT_SCAN_RETRY_SECONDS = env.float("CSVAULT_SCAN_RETRY_SECONDS", default=5.0)
# A worker that takes both scans and ingests runs the ingest while clamd decides, the
# rows unreadable until the verdict (csvault/pipeline/scan.py); 0: one after the other.
CSVAULT_INGEST_DURING_SCAN = env.bool("CSVAULT_INGEST_DURING_SCAN", default=True)

# --- celery -----------------------------------------------------------------
_broker_dir = _layout.broker_dir
CELERY_BROKER_URL = _layout.broker_url
if _layout.filesystem_broker:
    # kombu's filesystem transport, writing each message atomically (see the module).
    CELERY_BROKER_TRANSPORT = "csvault.core.fsbroker:Transport"
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        # The worker looks for new message files this often (kombu's default is
        # 1 s, which made every hand-off - upload to scan, scan to ingest - wait
        # up to a second: 80 concurrent small uploads took 82 s end to end).
        "polling_interval": env.float("CELERY_POLLING_INTERVAL", default=0.1),
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # Redelivery of a killed worker's task after ~visibility_timeout; the
        # reaper covers the rest (see DESIGN.md, reliability rules).
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600),
    }
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=3000)
# The soft limit lets a task clean up a minute before the hard kill (when the
# hard limit is long enough to leave such a margin).
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 60 if CELERY_TASK_TIME_LIMIT > 120 else None
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Scans go to "<default>.scan" and ingests to "<default>.ingest" (see
# config/celery.py), so a huge ingest never holds up the scan of a small file;
# the reaper runs on the default queue.
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="csvault")
CELERY_TASK_ROUTES = ("config.celery.route_task",)

# --- operations: logs, metrics, readiness (docs/operations.md) -----------------
# JSON lines by default (request, user, dataset and task ids on every line where
# known); LOG_FORMAT=plain for people reading a terminal.
LOG_FORMAT = env.str("LOG_FORMAT", default="json")
if LOG_FORMAT not in ("json", "plain"):
    raise ImproperlyConfigured("LOG_FORMAT must be json or plain.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "csvault.core.logs.ContextFilter"}},
    "formatters": {
        "plain": {"()": "csvault.core.logs.PlainFormatter"},
        "json": {"()": "csvault.core.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
# prometheus_client multiprocess mode: every csvault process on a host (web and
# worker) writes its metrics here and /metrics sums them. The variable must be in
# the environment before prometheus_client is imported, so config.bootstrap.prepare()
# sets it. `make run` empties the directory at start; see docs/operations.md for
# production.
PROMETHEUS_MULTIPROC_DIR = _layout.metrics_dir
# When set, /metrics wants "Authorization: Bearer <token>". Without one, /metrics is
# served to anyone only when CSVAULT_METRICS_PUBLIC is on (the default in embedded
# mode only): production answers 401 until the operator chooses.
CSVAULT_METRICS_TOKEN = env.str("CSVAULT_METRICS_TOKEN", default="")
CSVAULT_METRICS_PUBLIC = env.bool("CSVAULT_METRICS_PUBLIC", default=EMBEDDED)
# Workers on hosts without a web server serve their metrics on this port (0 = off).
CSVAULT_WORKER_METRICS_PORT = env.int("CSVAULT_WORKER_METRICS_PORT", default=0)
CSVAULT_WORKER_METRICS_ADDR = env.str("CSVAULT_WORKER_METRICS_ADDR", default="0.0.0.0")  # noqa: S104
# A token's user is taken from the cache this long; a deactivation that bypasses
# save() (a bulk update, SQL) takes effect within it.
CSVAULT_AUTH_CACHE_SECONDS = env.float("CSVAULT_AUTH_CACHE_SECONDS", default=5.0)
# Token reads of progress, detail and the list's first page answered from Redis before
# Django when cached (csvault/datasets/hotreads.py); off: every request goes to Django.
CSVAULT_HOT_READS = env.bool("CSVAULT_HOT_READS", default=True)
# /readyz reuses its result this long per process (0: every hit runs the checks).
CSVAULT_READYZ_CACHE_SECONDS = env.float("CSVAULT_READYZ_CACHE_SECONDS", default=5.0)
# Timeout (s) of each /readyz check and of the scrape-time scanner ping.
CSVAULT_PROBE_TIMEOUT = env.float("CSVAULT_PROBE_TIMEOUT", default=2.0)
# Load balancers and Prometheus probe these over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
CELERY_BEAT_SCHEDULE = {
    "csvault-reap-stalled": {
        "task": "csvault.reap_stalled",
        "schedule": float(env.int("CSVAULT_REAP_EVERY_SECONDS", default=15)),
    },
}
