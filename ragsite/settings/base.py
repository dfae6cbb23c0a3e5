"""Settings shared by every mode; what differs between machines comes from the environment."""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent
DATA_DIR = BASE_DIR / ".data"

# The embedded stack (`python -m ragsite.devstack`) listens on these loopback ports by default.
EMBEDDED_PG_PORT = 55432
EMBEDDED_REDIS_PORT = 56379

env = environ.Env()

SECRET_KEY = env.str("SECRET_KEY", default="insecure-dev-key-change-me")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

DATABASES = {
    "default": env.db_url(
        "DATABASE_URL",
        default=f"postgres://postgres@127.0.0.1:{EMBEDDED_PG_PORT}/ragsite",
    )
}
DATABASES["default"]["CONN_MAX_AGE"] = 0
# Pooled connections are checked before use, so a database restart costs no failed request.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# A bounded pool per process: 10,000 users never mean 10,000 database connections.
# In production PgBouncer (transaction mode) in front of PostgreSQL can share them across processes.
if env.bool("DATABASE_POOL", default=True):
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env.int("DATABASE_POOL_MIN_SIZE", default=1),
        "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=20),
        "timeout": env.float("DATABASE_POOL_TIMEOUT", default=10.0),
    }

# Admission (ops.admission, in front of Django in ragsite/asgi.py): as many requests at once as the pool has
# connections; a bounded queue behind them (an answer's stream ahead of new questions), deep and patient
# enough for a burst of 10,000 people on two cores (docs/web_load.md); beyond it, after the wait, or while
# retrieval's own queue is full (RAGSITE_RETRIEVAL_MAX_WAITING), 429 with Retry-After.
RAGSITE_WEB_MAX_ACTIVE = env.int(
    "RAGSITE_WEB_MAX_ACTIVE", default=env.int("DATABASE_POOL_MAX_SIZE", default=20)
)
RAGSITE_WEB_MAX_WAITING = env.int("RAGSITE_WEB_MAX_WAITING", default=16384)
RAGSITE_WEB_MAX_WAIT_S = env.float("RAGSITE_WEB_MAX_WAIT_S", default=300.0)
RAGSITE_WEB_RETRY_AFTER_S = env.float("RAGSITE_WEB_RETRY_AFTER_S", default=2.0)
# Threads for the requests' synchronous work (ops.thread_lanes), shared instead of one per request: one fewer
# than the pool has connections, since each thread holds at most one at a time and the probes' own thread
# (/healthz, /metrics) holds the last; fewer would leave connections idle while sync work queues, more would
# only wait for the pool.
RAGSITE_WEB_THREADS = env.int(
    "RAGSITE_WEB_THREADS", default=max(1, env.int("DATABASE_POOL_MAX_SIZE", default=20) - 1)
)
# Before admission (ragsite.request_body) each request's body must arrive within this many seconds, plus
# one second per RAGSITE_WEB_BODY_MIN_RATE bytes received (a large upload over a slow line), else 408.
RAGSITE_WEB_BODY_TIMEOUT_S = env.float("RAGSITE_WEB_BODY_TIMEOUT_S", default=10.0)
RAGSITE_WEB_BODY_MIN_RATE = env.float("RAGSITE_WEB_BODY_MIN_RATE", default=64 * 1024)

# A streaming replica takes retrieval's reads; writes and everything else stay on the primary.
if env.str("DATABASE_REPLICA_URL", default=""):
    DATABASES["replica"] = {
        **env.db_url("DATABASE_REPLICA_URL"),
        "CONN_MAX_AGE": 0,
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": dict(DATABASES["default"].get("OPTIONS", {})),
        "TEST": {"MIRROR": "default"},
    }
RETRIEVAL_DATABASE = "replica" if "replica" in DATABASES else "default"

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=f"redis://127.0.0.1:{EMBEDDED_REDIS_PORT}/0")
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = "default"
# Workers log through Django's LOGGING (JSON lines with the request id), not Celery's own format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_ROUTES = {
    "ingest.*": {"queue": env.str("RAGSITE_INGEST_QUEUE", default="ingest")},
    "retrievers.*": {"queue": env.str("RAGSITE_REEMBED_QUEUE", default="reembed")},
    "search.sentence_vectors_fill": {"queue": env.str("RAGSITE_REEMBED_QUEUE", default="reembed")},
    "sources.*": {"queue": env.str("RAGSITE_SOURCES_QUEUE", default="default")},
}
# Celery beat (a process `make run` starts) looks this often for sources whose sync is due.
CELERY_BEAT_SCHEDULE = {
    "sources-sync-due": {
        "task": "sources.sources_sync_due",
        "schedule": env.float("RAGSITE_SOURCES_DUE_CHECK_S", default=60.0),
    },
    # Sentence vectors for the extractive answer, made in the background after ingestion (search.tasks).
    "search-sentence-vectors": {
        "task": "search.sentence_vectors_fill",
        "schedule": env.float("RAGSITE_SENTENCE_VECTORS_EVERY_S", default=30.0),
        # A run nobody took before the next is due is dropped, so no worker means no growing queue.
        "options": {"expires": env.float("RAGSITE_SENTENCE_VECTORS_EVERY_S", default=30.0)},
    },
}

INFERENCE_URL = env.str("INFERENCE_URL", default="http://127.0.0.1:8001")
# The bearer key the web app and workers present to the inference API (one of its INFERENCE_API_KEYS).
INFERENCE_API_KEY = env.str("INFERENCE_API_KEY", default="")
# How long a call to the inference API may wait for its answer to begin (then the model counts as busy).
INFERENCE_TIMEOUT_S = env.float("INFERENCE_TIMEOUT_S", default=60.0)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    # django-ninja: its Swagger UI page from our own static files (api/), not from a CDN.
    "ninja",
    "ops",
    "ingest",
    "search",
    "evaluation",
    "widget",
    "retrievers",
    "api",
    "accounts",
    "sources",
    # The retriever switch workflow (its commands, tasks and admin), on top of the apps it drives.
    "tuning",
]

# Django's middleware with its hooks on the event loop rather than a thread each (ops/middleware.py).
MIDDLEWARE = [
    "ops.middleware.SecurityMiddleware",
    "ops.middleware.SessionMiddleware",
    "ops.middleware.CommonMiddleware",
    "ops.middleware.CsrfViewMiddleware",
    "ops.middleware.AuthenticationMiddleware",
    "ops.middleware.MessageMiddleware",
    "ops.middleware.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "ops.middleware.RequestContextMiddleware",
    # Rechecks single sign-on sessions with the provider (accounts/middleware.py); does nothing without SSO.
    "accounts.middleware.OidcSessionRefresh",
]

ROOT_URLCONF = "ragsite.urls"
ASGI_APPLICATION = "ragsite.asgi.application"

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
            ],
        },
    }
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
MEDIA_ROOT = env.path("MEDIA_ROOT", default=str(DATA_DIR / "media"))
MEDIA_URL = "media/"

# Staff ask questions without admin access, so they log in on the site's own (throttled) page.
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Single sign-on with OpenID Connect (accounts/, docs/sso.md): off while RAGSITE_OIDC_ISSUER is empty. The
# provider's endpoints come from its discovery document; the groups claim maps to Django groups (and so to
# collections) at every login, only names starting with RAGSITE_OIDC_GROUPS_PREFIX. Signed-in sessions are
# rechecked with the provider (prompt=none) after RAGSITE_OIDC_SESSION_RECHECK_S; RAGSITE_LOCAL_LOGIN=false
# turns password login off (the demo admin's too).
RAGSITE_OIDC_ISSUER = env.str("RAGSITE_OIDC_ISSUER", default="")
RAGSITE_OIDC_PROVIDER_NAME = env.str("RAGSITE_OIDC_PROVIDER_NAME", default="single sign-on")
RAGSITE_OIDC_GROUPS_CLAIM = env.str("RAGSITE_OIDC_GROUPS_CLAIM", default="groups")
RAGSITE_OIDC_GROUPS_PREFIX = env.str("RAGSITE_OIDC_GROUPS_PREFIX", default="")
RAGSITE_LOCAL_LOGIN = env.bool("RAGSITE_LOCAL_LOGIN", default=True)
OIDC_RP_CLIENT_ID = env.str("RAGSITE_OIDC_CLIENT_ID", default="")
OIDC_RP_CLIENT_SECRET = env.str("RAGSITE_OIDC_CLIENT_SECRET", default="")
OIDC_RP_SCOPES = env.str("RAGSITE_OIDC_SCOPES", default="openid email profile groups")
OIDC_RP_SIGN_ALGO = env.str("RAGSITE_OIDC_SIGN_ALGO", default="RS256")
OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS = env.int("RAGSITE_OIDC_SESSION_RECHECK_S", default=900)
OIDC_TIMEOUT = env.float("RAGSITE_OIDC_TIMEOUT_S", default=10.0)
OIDC_TOKEN_USE_BASIC_AUTH = env.bool("RAGSITE_OIDC_TOKEN_BASIC_AUTH", default=True)
OIDC_USE_PKCE = True
AUTHENTICATION_BACKENDS = [
    *(["django.contrib.auth.backends.ModelBackend"] if RAGSITE_LOCAL_LOGIN else []),
    "accounts.backends.OidcBackend",
]

# Uploads bigger than this are refused before they are stored.
RAGSITE_MAX_UPLOAD_BYTES = env.int("RAGSITE_MAX_UPLOAD_BYTES", default=50 * 1024 * 1024)
# One form with files (all the files chosen together) may be at most this big, else 413 before it is read;
# any other request body at most DATA_UPLOAD_MAX_MEMORY_SIZE.
RAGSITE_MAX_UPLOAD_REQUEST_BYTES = env.int(
    "RAGSITE_MAX_UPLOAD_REQUEST_BYTES", default=4 * RAGSITE_MAX_UPLOAD_BYTES + 1024 * 1024
)
# Archives (DOCX, XLSX, PPTX) that unpack past this are refused as zip bombs.
RAGSITE_MAX_UNPACKED_BYTES = env.int("RAGSITE_MAX_UNPACKED_BYTES", default=100 * 1024 * 1024)
# PDF pages without a text layer (scans) are OCRed by Tesseract in these languages ("eng+deu"); "": off.
RAGSITE_OCR_LANGUAGES = env.str("RAGSITE_OCR_LANGUAGES", default="eng")
RAGSITE_INGEST_QUEUE = env.str("RAGSITE_INGEST_QUEUE", default="ingest")
RAGSITE_INGEST_BATCH_SIZE = env.int("RAGSITE_INGEST_BATCH_SIZE", default=64)
# An ingest that meets a transient fault retries after this long, doubling each time (at most 5 minutes).
RAGSITE_INGEST_RETRY_BASE_S = env.float("RAGSITE_INGEST_RETRY_BASE_S", default=5.0)
# Registered retrievers (fine-tuned embedding models), one directory per model id; the inference API reads
# the same directory (the same variable), so they must agree.
RAGSITE_RETRIEVERS_DIR = env.path("RAGSITE_RETRIEVERS_DIR", default=str(DATA_DIR / "retrievers"))
RAGSITE_REEMBED_QUEUE = env.str("RAGSITE_REEMBED_QUEUE", default="reembed")
# Texts per call to the inference API while re-embedding chunks for a new retriever.
RAGSITE_REEMBED_BATCH_SIZE = env.int("RAGSITE_REEMBED_BATCH_SIZE", default=64)
# Sources (docs/sources.md): credentials are encrypted under a key derived from this (default: from
# SECRET_KEY; changing either makes stored credentials unreadable); syncs run on this queue; connectors keep
# their caches (a git source's fetched repository) here.
RAGSITE_SOURCES_KEY = env.str("RAGSITE_SOURCES_KEY", default="")
RAGSITE_SOURCES_QUEUE = env.str("RAGSITE_SOURCES_QUEUE", default="default")
RAGSITE_SOURCES_CACHE_DIR = env.path("RAGSITE_SOURCES_CACHE_DIR", default=str(DATA_DIR / "sources"))
# Every worker looks this often for documents whose run died with another worker (0: only at start).
RAGSITE_STALLED_SWEEP_S = env.float("RAGSITE_STALLED_SWEEP_S", default=30.0)

# Asking: passages retrieved, at most this many of those that are evidence (search.grounding) go to the
# model, and the model's budgets.
RAGSITE_RETRIEVAL_K = env.int("RAGSITE_RETRIEVAL_K", default=10)
RAGSITE_ANSWER_MAX_PASSAGES = env.int("RAGSITE_ANSWER_MAX_PASSAGES", default=3)
RAGSITE_ANSWER_MAX_TOKENS = env.int("RAGSITE_ANSWER_MAX_TOKENS", default=256)
RAGSITE_CHAT_CONTEXT_TOKENS = env.int("RAGSITE_CHAT_CONTEXT_TOKENS", default=4096)
# A busy model service is retried this many times, waiting its Retry-After (at most this long) each time.
RAGSITE_ANSWER_BUSY_RETRIES = env.int("RAGSITE_ANSWER_BUSY_RETRIES", default=3)
RAGSITE_ANSWER_MAX_RETRY_WAIT_S = env.float("RAGSITE_ANSWER_MAX_RETRY_WAIT_S", default=10.0)
# Shared answers (search/answer_cache.py, search/shared_answers.py), in Redis (default: the broker's): a
# finished, checked answer is reused for the same question over the same readable collections and document
# generations for this long; an entry larger than this is not kept. Embeddings made while answering (the
# question's, the passages' sentences') are kept as long, and the last RAGSITE_EMBED_CACHE_LOCAL_ENTRIES of
# them in each web process too. At most RAGSITE_ANSWER_REDIS_CONNECTIONS connections per web process.
RAGSITE_ANSWER_REDIS_URL = env.str("RAGSITE_ANSWER_REDIS_URL", default="")
RAGSITE_ANSWER_REDIS_CONNECTIONS = env.int("RAGSITE_ANSWER_REDIS_CONNECTIONS", default=32)
RAGSITE_ANSWER_CACHE_TTL_S = env.int("RAGSITE_ANSWER_CACHE_TTL_S", default=24 * 3600)
RAGSITE_ANSWER_CACHE_MAX_BYTES = env.int("RAGSITE_ANSWER_CACHE_MAX_BYTES", default=256 * 1024)
RAGSITE_EMBED_CACHE_LOCAL_ENTRIES = env.int("RAGSITE_EMBED_CACHE_LOCAL_ENTRIES", default=4096)
# Single-flight: people asking the same question at once share one retrieval and one generation. The one
# answering holds a lease this long (renewed while it works; a crashed one is taken over when it lapses);
# an answer keeps at most this many events; a web process follows at most this many answers at once (more
# are answered on their own).
RAGSITE_ANSWER_LEASE_S = env.float("RAGSITE_ANSWER_LEASE_S", default=15.0)
RAGSITE_ANSWER_MAX_EVENTS = env.int("RAGSITE_ANSWER_MAX_EVENTS", default=1024)
RAGSITE_ANSWER_MAX_FLIGHTS = env.int("RAGSITE_ANSWER_MAX_FLIGHTS", default=2048)
# The model (search/model_queue.py): a web process keeps at most as many chats at the inference API as its
# engine runs at once; up to RAGSITE_MODEL_QUEUE_MAX_WAITING more answers wait, the most asked first, each at
# most RAGSITE_MODEL_QUEUE_WAIT_S (then it keeps its extract, with "the model is busy").
RAGSITE_MODEL_QUEUE_MAX_WAITING = env.int("RAGSITE_MODEL_QUEUE_MAX_WAITING", default=1024)
RAGSITE_MODEL_QUEUE_WAIT_S = env.float("RAGSITE_MODEL_QUEUE_WAIT_S", default=60.0)
# Retrieval (embedding, search, the extractive answer) runs for at most this many questions at once in a web
# process; up to RAGSITE_RETRIEVAL_MAX_WAITING more wait at most RAGSITE_RETRIEVAL_MAX_WAIT_S for a turn. Past
# that retrieval cannot keep up: the door answers new questions 429 and a waiting one is told to ask again.
RAGSITE_RETRIEVAL_MAX_ACTIVE = env.int("RAGSITE_RETRIEVAL_MAX_ACTIVE", default=8)
RAGSITE_RETRIEVAL_MAX_WAITING = env.int("RAGSITE_RETRIEVAL_MAX_WAITING", default=4000)
RAGSITE_RETRIEVAL_MAX_WAIT_S = env.float("RAGSITE_RETRIEVAL_MAX_WAIT_S", default=120.0)

# The widget: longest visitor token a key may ask for, longest question, and the Redis of its rate limits
# (default: the broker's).
WIDGET_TOKEN_MAX_TTL_S = env.int("WIDGET_TOKEN_MAX_TTL_S", default=3600)
WIDGET_MAX_QUESTION_CHARS = env.int("WIDGET_MAX_QUESTION_CHARS", default=2000)
WIDGET_REDIS_URL = env.str("WIDGET_REDIS_URL", default="")
# The token API (/api/v1/): requests per minute a new token may make, the longest life a token may be given,
# and the Redis of its rate limits (default: the broker's).
RAGSITE_API_RATE_LIMIT = env.int("RAGSITE_API_RATE_LIMIT", default=60)
RAGSITE_API_TOKEN_MAX_DAYS = env.int("RAGSITE_API_TOKEN_MAX_DAYS", default=365)
RAGSITE_API_REDIS_URL = env.str("RAGSITE_API_REDIS_URL", default="")
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True

# Login throttling: this many failures for one address and user name lock the pair out for a while.
RAGSITE_LOGIN_MAX_FAILURES = env.int("RAGSITE_LOGIN_MAX_FAILURES", default=5)
RAGSITE_LOGIN_LOCKOUT_SECONDS = env.int("RAGSITE_LOGIN_LOCKOUT_SECONDS", default=900)
# /metrics answers loopback only, or anyone presenting this bearer token.
RAGSITE_METRICS_TOKEN = env.str("RAGSITE_METRICS_TOKEN", default="")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "ops.logging.JsonFormatter"},
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if env.bool("LOG_JSON", default=True) else "plain",
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
