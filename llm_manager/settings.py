"""Django settings for LLM Manager.

Every setting a user may change comes from an environment variable read here,
and only here (or from a `.env` file, see llm_manager.config); the README lists them
with their defaults. A value that cannot be used stops the service with one line
naming the variable.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from platformdirs import user_data_dir

from llm_manager.config import (
    SettingError,
    env_choice,
    env_port_range,
    load_env_files,
    writable_dir,
)
from llm_manager.config import (
    env as _env,
)
from llm_manager.config import (
    env_bool as _env_bool,
)
from llm_manager.config import (
    env_float as _env_float,
)
from llm_manager.config import (
    env_int as _env_int,
)

BASE_DIR = Path(__file__).resolve().parent.parent
# Run from a checkout, the data stays beside it; installed as a package, in the platform's user data dir.
RUN_FROM_CHECKOUT = (BASE_DIR / "manage.py").exists()
PACKAGE_DIR = Path(__file__).resolve().parent


def _database_from_url(url: str, data_dir: Path) -> dict:
    """Translate DATABASE_URL (sqlite:///path or postgres://...) into Django's form."""
    if not url:
        return _sqlite_database(data_dir / "llm_manager.sqlite3")
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        # sqlite:///relative.db and sqlite:////absolute.db, as dj-database-url reads them.
        return _sqlite_database(Path(unquote(parts.path[1:]) if parts.path.startswith("/") else parts.path))
    if parts.scheme in {"postgres", "postgresql", "pgsql"}:
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "OPTIONS": dict(parse_qsl(parts.query)),
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
        }
    raise SettingError("DATABASE_URL", f"unsupported scheme {parts.scheme!r} (use sqlite:// or postgres://)")


def _sqlite_database(path: Path) -> dict:
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(path),
        "OPTIONS": {
            # The web server and the workers write at once: WAL lets readers run
            # beside a writer, and the busy timeout makes writers queue, not fail.
            # mmap shares the OS page cache between connections, so a new connection starts warm.
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA mmap_size=1073741824;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        },
        "TEST": {"NAME": str(path.with_name(path.stem + "_test.sqlite3"))},
    }


# --- Service ------------------------------------------------------------------
SERVICE_NAME = "llm-manager-api"
API_VERSION = "v1"
DATA_DIR = load_env_files(BASE_DIR / "data" if RUN_FROM_CHECKOUT else Path(user_data_dir("llm-manager")))
HOST = _env("LLM_MANAGER_HOST", "127.0.0.1")
PORT = _env_int("LLM_MANAGER_PORT", 5000, minimum=1, maximum=65535)
MODELS_DIR = DATA_DIR / "models"
LOGS_DIR = DATA_DIR / "logs"
# prometheus-client's multiprocess mode reads this before it is first imported (core.metrics): each process of
# this service writes its counts there, and /metrics adds them up. Always this data dir's, never inherited.
METRICS_DIR = DATA_DIR / "metrics"
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(METRICS_DIR)
for _directory in (DATA_DIR, MODELS_DIR, LOGS_DIR, METRICS_DIR):
    writable_dir("LLM_MANAGER_DATA_DIR", _directory)

API_KEY = _env("LLM_MANAGER_API_KEY")
# Larger request bodies are refused (413 PAYLOAD_TOO_LARGE) before they are parsed.
MAX_BODY_BYTES = _env_int("LLM_MANAGER_MAX_BODY_MB", 32, minimum=1, maximum=4096) * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_BODY_BYTES
MAX_CONCURRENT_DOWNLOADS = _env_int("LLM_MANAGER_MAX_CONCURRENT_DOWNLOADS", 2, minimum=1)
# Each running download holds a worker: leave room beside them for the other jobs.
WORKERS = _env_int("LLM_MANAGER_WORKERS", MAX_CONCURRENT_DOWNLOADS + 2, minimum=1)
# Thresholds of GET /api/system/health.
HEALTH_MIN_FREE_DISK_GB = _env_float("LLM_MANAGER_MIN_FREE_DISK_GB", 1.0)
HEALTH_MIN_AVAILABLE_MEMORY_GB = _env_float("LLM_MANAGER_MIN_AVAILABLE_MEMORY_GB", 0.5)

# --- Model sources ------------------------------------------------------------
HF_ENDPOINT = _env("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
HF_TOKEN = _env("HF_TOKEN") or None
OLLAMA_REGISTRY = _env("LLM_MANAGER_OLLAMA_REGISTRY", "https://registry.ollama.ai").rstrip("/")
OLLAMA_LIBRARY = _env("LLM_MANAGER_OLLAMA_LIBRARY", "https://ollama.com").rstrip("/")
# The name ModelScope's own client reads; MODELSCOPE_DOMAIN is its deprecated older name.
MODELSCOPE_ENDPOINT = (_env("MODELSCOPE_ENDPOINT") or _env("MODELSCOPE_DOMAIN") or "https://www.modelscope.cn").rstrip("/")
if "://" not in MODELSCOPE_ENDPOINT:
    MODELSCOPE_ENDPOINT = f"https://{MODELSCOPE_ENDPOINT}"
MODELSCOPE_API_TOKEN = _env("MODELSCOPE_API_TOKEN") or None
# Where `import` looks for models the machine already has, as those tools themselves read it.
IMPORT_HF_CACHE = Path(_env("HF_HUB_CACHE") or Path(_env("HF_HOME") or "~/.cache/huggingface") / "hub").expanduser()
IMPORT_OLLAMA_MODELS = Path(_env("OLLAMA_MODELS") or "~/.ollama/models").expanduser()

# --- Django -------------------------------------------------------------------
SECRET_KEY = _env("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    # A per-installation key kept in the data dir, so sessions survive restarts.
    _key_file = DATA_DIR / "secret_key"
    if not _key_file.exists():
        from django.core.management.utils import get_random_secret_key

        _key_file.write_text(get_random_secret_key())
        _key_file.chmod(0o600)
    SECRET_KEY = _key_file.read_text().strip()

DEBUG = _env_bool("LLM_MANAGER_DEBUG")
ALLOWED_HOSTS = [h for h in _env("LLM_MANAGER_ALLOWED_HOSTS", "*").split(",") if h]

INSTALLED_APPS = [
    "daphne",
    "system.apps.ConsoleAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_api_key",
    "drf_spectacular",
    "channels",
    # The project's apps, bottom to top: each imports only those above it in this list.
    "core",
    "catalog",
    "downloads",
    "deployments",
    "inference",
    "system",
    # After `system`, whose `qcluster` (the cluster with its caretaker) takes the place of django-q2's own.
    "django_q",
]

MIDDLEWARE = [
    "core.logs.RequestIdMiddleware",
    "core.middleware.BodyLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "core.auth.ApiKeyMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "core.middleware.DatabaseOutageMiddleware",
]

ROOT_URLCONF = "llm_manager.urls"
ASGI_APPLICATION = "llm_manager.asgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [(BASE_DIR if RUN_FROM_CHECKOUT else PACKAGE_DIR) / "templates"],
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

DATABASES = {"default": _database_from_url(_env("DATABASE_URL"), DATA_DIR)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = _env("REDIS_URL")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}
    }
else:
    # A file cache is shared by the web server and the worker processes; the
    # worker cluster's heartbeat (django-q2's Stat) lives in it.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(DATA_DIR / "cache"),
        }
    }
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

Q_CLUSTER = {
    "name": "llm_manager",
    "workers": WORKERS,
    # Downloads and syncs run long: the timeout must fit a large model, and an
    # unacknowledged task is only delivered again after `retry` seconds.
    "timeout": _env_int("LLM_MANAGER_TASK_TIMEOUT", 24 * 3600),
    "retry": _env_int("LLM_MANAGER_TASK_TIMEOUT", 24 * 3600) + 600,
    "max_attempts": 1,
    "ack_failures": True,
    "catch_up": False,
    "cache": "default",
    "poll": 0.2,
    "label": "Worker tasks",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
# The console's own scripts and styles; daphne serves /static/ itself (llm_manager.asgi).
STATICFILES_DIRS = [(BASE_DIR if RUN_FROM_CHECKOUT else PACKAGE_DIR) / "static"]

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "core.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "core.schema.EnvelopeAutoSchema",
    "DATETIME_FORMAT": "%Y-%m-%dT%H:%M:%SZ",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "LLM Manager API",
    "DESCRIPTION": "Find, download, deploy and talk to large language models.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.schema.refuse_nul_in_strings",
        "inference.schema.add_inference_paths",
        "system.schema.add_links",
        "core.schema.close_request_bodies",
    ],
}

# `plain` for people, `json` (one object per line, see core.logs) for log shippers.
LOG_FORMAT = env_choice("LLM_MANAGER_LOG_FORMAT", "plain", ("plain", "json"))
LOG_LEVEL = env_choice("LLM_MANAGER_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "core.logs.ContextFilter"}},
    "formatters": {
        "plain": {"()": "core.logs.PlainFormatter", "format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "core.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context"]},
        "file": {
            "class": "logging.handlers.RotatingFileHandler",
            "filename": str(LOGS_DIR / "service.log"),
            "maxBytes": 10 * 1024 * 1024,
            "backupCount": 3,
            "formatter": LOG_FORMAT,
            "filters": ["context"],
        },
    },
    "root": {"handlers": ["console", "file"], "level": LOG_LEVEL},
    # daphne's own access lines repeat ours (which carry the request id), and Django's 4xx warnings the envelope.
    "loggers": {"django.request": {"level": "ERROR"}, "django.channels.server": {"level": "WARNING"}},
}

# --- Catalog ------------------------------------------------------------------
# A search asks the live source when the same question was not asked within the TTL;
# a source slower than the timeout is abandoned and the catalog answers alone.
CATALOG_LIVE_TTL = _env_int("LLM_MANAGER_CATALOG_TTL", 600)
CATALOG_SOURCE_TIMEOUT = _env_float("LLM_MANAGER_SOURCE_TIMEOUT", 3.0)
# Offline mode: never ask the live sources; the catalog answers alone.
CATALOG_OFFLINE = _env_bool("LLM_MANAGER_OFFLINE")
# `index` (an in-memory Tantivy index, rebuilt after the catalog changes; `fts` answers meanwhile), `fts`
# (SQLite's FTS5, PostgreSQL's tsvector with a GIN index) or `like` (case-insensitive LIKE).
CATALOG_SEARCH_BACKEND = env_choice("LLM_MANAGER_SEARCH_BACKEND", "index", ("index", "fts", "like"))

# --- Downloads ----------------------------------------------------------------
DOWNLOAD_PARTS = _env_int("LLM_MANAGER_DOWNLOAD_PARTS", 8)
# More connections are opened, four at a time, while they raise the file's throughput (capped links), up to this.
DOWNLOAD_MAX_PARTS = _env_int("LLM_MANAGER_DOWNLOAD_MAX_PARTS", 16)
DOWNLOAD_PART_THRESHOLD_MB = _env_int("LLM_MANAGER_DOWNLOAD_PART_THRESHOLD_MB", 64)
DOWNLOAD_STALL_SECONDS = _env_float("LLM_MANAGER_DOWNLOAD_STALL_SECONDS", 30.0)
DOWNLOAD_RETRY_BACKOFF_SECONDS = _env_float("LLM_MANAGER_DOWNLOAD_BACKOFF_SECONDS", 1.0)
# Each connection's socket receive buffer; 0 (the default) leaves it to the kernel's autotuning, which sizes it to
# the link. What sits there when a worker dies is fetched again: a fixed amount, not a share of the file
# (docs/benchmarks.md measures it for 1 and 4 GiB files).
DOWNLOAD_RECEIVE_BUFFER_KB = _env_int("LLM_MANAGER_DOWNLOAD_RECEIVE_BUFFER_KB", 0)
# A downloading task whose worker shows no sign of life for this long is queued again.
DOWNLOAD_STALE_SECONDS = _env_float("LLM_MANAGER_DOWNLOAD_STALE_SECONDS", 15.0)
# Free space that must remain after a download, beyond its own size.
DOWNLOAD_DISK_MARGIN_GB = _env_float("LLM_MANAGER_DOWNLOAD_DISK_MARGIN_GB", 1.0)

# --- Deployments --------------------------------------------------------------
ENGINE_PORT_RANGE = env_port_range("LLM_MANAGER_ENGINE_PORTS", "8000-8999")
ENGINE_READY_TIMEOUT = _env_float("LLM_MANAGER_ENGINE_READY_TIMEOUT", 600.0)
ENGINE_STOP_GRACE = _env_float("LLM_MANAGER_ENGINE_STOP_GRACE", 10.0)
# A running engine that fails this many readiness probes in a row (one a second, 2 s each at most) is restarted.
ENGINE_PROBE_FAILURES = _env_int("LLM_MANAGER_ENGINE_PROBE_FAILURES", 3, minimum=1)
# /metrics without a key (for a Prometheus on a trusted network); else it needs one, as the API does.
METRICS_PUBLIC = _env_bool("LLM_MANAGER_METRICS_PUBLIC")
# A call for a model that is downloaded but not running starts it (or its stopped deployment) and then answers.
LOAD_ON_DEMAND = _env_bool("LLM_MANAGER_LOAD_ON_DEMAND", True)
# A deployment with no request for this many seconds stops (reason `idle`); unset: never. Per deployment too.
IDLE_TIMEOUT: int | None = _env_int("LLM_MANAGER_IDLE_TIMEOUT", 0, minimum=10) or None
# --- A cluster on Ray (docs/cluster.md) ---------------------------------------
# The Ray head's address (HOST:PORT): deployments are then placed on the cluster's nodes, not on this machine.
RAY_ADDRESS = _env("LLM_MANAGER_RAY_ADDRESS")
# The address the cluster reaches this machine at (Ray's own guess when empty; `node join` passes it on too).
NODE_IP = _env("LLM_MANAGER_NODE_IP")
# The data dir's models/ is one file system mounted at the same path on every node: engines read it in place.
# Else each node fetches a deployment's model into its own cache (its data dir's models/) first.
SHARED_STORAGE = _env_bool("LLM_MANAGER_SHARED_STORAGE")
if RAY_ADDRESS:
    _cluster_needs = [need for need, missing in (
        ("PostgreSQL (DATABASE_URL=postgres://…): every process on every node records into one database",
         DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql"),
        ("Redis (REDIS_URL=redis://…): rate limits, caches and download events shared by every process",
         not REDIS_URL)) if missing]
    if _cluster_needs:
        raise SettingError("LLM_MANAGER_RAY_ADDRESS", "cluster mode needs " + "; ".join(_cluster_needs))

ENGINE_LOG_MAX_BYTES = _env_int("LLM_MANAGER_ENGINE_LOG_MAX_BYTES", 10 * 1024 * 1024)
ENGINE_LOG_BACKUPS = 3
