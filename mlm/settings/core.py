"""The core settings: paths, development mode, keys, the site's address, apps, database,
Redis, languages, static files and logging."""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from mlm.embedded import Paths as EmbeddedPaths
from mlm.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parents[2]
VAR_DIR = Path(
    env_str(
        "MLM_VAR_DIR",
        str(BASE_DIR / "var"),
        "Folder for the embedded default's local state: its PostgreSQL and Redis data, uploads, "
        "logs, development keys.",
    )
)

DEBUG = env_bool("DEBUG", False, "Development mode. Never on in production.")


def _local_development_key(path: Path, make=lambda: secrets.token_urlsafe(50)) -> str:
    """Make a development key once and keep it in the var folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = env_str(
    "SECRET_KEY",
    None,
    "Signs sessions and recipient links. Required when DEBUG is off.",
    production=True,
)
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. With DEBUG off MLM refuses to start without one: set the "
            "SECRET_KEY environment variable to a long random string, e.g. the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`."
        )
    SECRET_KEY = _local_development_key(VAR_DIR / "secret_key")
MLM_ADDRESS_HASH_KEY = env_str(
    "MLM_ADDRESS_HASH_KEY",
    None,
    "Key of the hashes that keep erased and suppressed addresses out. Never change it: "
    "suppressions would stop matching. Required when DEBUG is off.",
    production=True,
)
if not MLM_ADDRESS_HASH_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "MLM_ADDRESS_HASH_KEY is not set. With DEBUG off MLM refuses to start without one: "
            "set it once to a long random string and keep it for the life of the installation."
        )
    MLM_ADDRESS_HASH_KEY = _local_development_key(VAR_DIR / "address_hash_key")
_dkim_keys = env_list(
    "MLM_DKIM_ENCRYPTION_KEY",
    [],
    "Fernet key(s) that encrypt the DKIM private keys in the database, comma-separated: the "
    "first encrypts, all decrypt (put a new key first to rotate). Make one with `python -c "
    "'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`. "
    "Required when DEBUG is off.",
    production=True,
)
if not _dkim_keys:
    if not DEBUG:
        raise ImproperlyConfigured(
            "MLM_DKIM_ENCRYPTION_KEY is not set. With DEBUG off MLM refuses to start without one: "
            "set it to a Fernet key (`python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'`) and keep it: without it the DKIM keys in "
            "the database cannot be read."
        )
    _dkim_keys = [
        _local_development_key(
            VAR_DIR / "dkim_encryption_key",
            lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        )
    ]
for _key in _dkim_keys:
    try:
        if len(base64.urlsafe_b64decode(_key.encode())) != 32:
            raise ValueError
    except ValueError:
        raise ImproperlyConfigured(
            "MLM_DKIM_ENCRYPTION_KEY must be Fernet keys (32 bytes, url-safe base64), "
            "comma-separated."
        ) from None
MLM_DKIM_ENCRYPTION_KEYS = _dkim_keys
SECRET_KEY_FALLBACKS = env_list(
    "SECRET_KEY_FALLBACKS",
    [],
    "Earlier SECRET_KEYs, comma-separated: links in old mails keep working after a rotation.",
)

# Without SITE_URL, links in mails follow the address `make run` serves (HOST, PORT).
_run_host = os.environ.get("HOST", "127.0.0.1")
if _run_host in {"", "0.0.0.0", "::"}:  # noqa: S104 -- listening everywhere; link to loopback
    _run_host = "127.0.0.1"
SITE_URL = env_str(
    "SITE_URL",
    f"http://{_run_host}:{os.environ.get('PORT', '8000')}",
    "Public base URL of the app, used for absolute links in mails (https in production).",
    production=True,
).rstrip("/")
_site = urlsplit(SITE_URL)
if _site.scheme not in {"http", "https"} or not _site.netloc:
    raise ImproperlyConfigured(f"SITE_URL must be an absolute http(s) URL, not {SITE_URL!r}.")

ALLOWED_HOSTS = env_list(
    "ALLOWED_HOSTS",
    ["localhost", "127.0.0.1", "[::1]", _site.hostname or "localhost"],
    "Host names this app answers to, comma-separated.",
    production=True,
)
CSRF_TRUSTED_ORIGINS = [f"{_site.scheme}://{_site.netloc}"]

MLM_INTERNAL_DOMAINS = [
    d.lower()
    for d in env_list(
        "MLM_INTERNAL_DOMAINS",
        ["example.edu"],
        "The institution's own mail domains, comma-separated (internal audience).",
        production=True,
    )
]
MLM_INSTITUTION_NAME = env_str(
    "MLM_INSTITUTION_NAME",
    "Example University",
    "The institution's name, shown on public pages.",
    production=True,
)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "csp",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "anymail",
    "mlm",
    "mlm.sso",
    "consent",
    "recipients",
    "campaigns",
    "outbound",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    # SAML's own session cookie (djangosaml2): the requests sent to the identity provider.
    "djangosaml2.middleware.SamlSessionMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "mlm.urls"
WSGI_APPLICATION = "mlm.wsgi.application"

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
                "mlm.context_processors.shell",
            ],
        },
    },
]

# Without DATABASE_URL and REDIS_URL, the embedded default: PostgreSQL and Redis from pip wheels,
# run by `manage.py run_embedded` under the var folder (mlm.embedded). The same engine as
# production, so there is one SQL dialect everywhere.
EMBEDDED = EmbeddedPaths(VAR_DIR)
DATABASE_URL = env_str(
    "DATABASE_URL",
    "",
    "Database, e.g. postgres://user:pass@host:5432/mlm. Empty: the embedded PostgreSQL that "
    "`make run` starts under MLM_VAR_DIR.",
    production=True,
)
DATABASES = {
    "default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)
    if DATABASE_URL
    else EMBEDDED.database_settings()
}
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured(
        f"DATABASE_URL must name a PostgreSQL database (postgres://...), not {DATABASE_URL!r}: "
        "MLM speaks one SQL dialect. Leave it empty for the embedded PostgreSQL."
    )
DATABASES["default"]["CONN_MAX_AGE"] = env_int(
    "CONN_MAX_AGE", 60, "Seconds a database connection is kept for reuse."
)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
ONE_CLICK_PREPARED = env_bool(
    "ONE_CLICK_PREPARED",
    True,
    "Keep the one-click statement PREPAREd on each database connection (off behind a pooler "
    "in transaction mode).",
)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = (
    env_str(
        "REDIS_URL",
        "",
        "Redis for the Celery broker, rate limits, the dispatch throttle and caches. Empty: the "
        "embedded Redis that `make run` starts under MLM_VAR_DIR.",
        production=True,
    )
    or EMBEDDED.redis_url()
)
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
}

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hant", "繁體中文"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env_str("TIME_ZONE", "UTC", "Server time zone; each unit has its own for display.")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_MANIFEST = env_bool(
    "STATIC_MANIFEST",
    False,
    "Serve collected, hashed static files (run collectstatic first); the container image sets it.",
)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if STATIC_MANIFEST
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Without the manifest, files are served straight from the source folders (no collectstatic).
STATIC_ROOT = VAR_DIR / "static" if STATIC_MANIFEST else None
WHITENOISE_USE_FINDERS = not STATIC_MANIFEST
WHITENOISE_AUTOREFRESH = DEBUG

LOG_LEVEL = env_str("LOG_LEVEL", "INFO", "Log level of the mlm loggers.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        name: {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False}
        for name in ("mlm", "consent", "recipients", "campaigns", "outbound", "api")
    },
}
