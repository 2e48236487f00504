"""MLM settings: one module, driven by environment variables (see the README's table)."""

from __future__ import annotations

import base64
import os
import re
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from mlm.embedded import Paths as EmbeddedPaths
from mlm.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
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

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Two-factor authentication (mlm.two_factor): roles that must use an authenticator app.
MLM_REQUIRE_2FA_FOR = [
    role.strip().lower()
    for role in env_list(
        "MLM_REQUIRE_2FA_FOR",
        [],
        "Roles that must log in with a second factor (a TOTP authenticator app), comma-separated: "
        "admin, approver, editor, viewer, and staff for Django admin (empty: optional for all).",
    )
]
if set(MLM_REQUIRE_2FA_FOR) - {"admin", "approver", "editor", "viewer", "staff"}:
    raise ImproperlyConfigured(
        f"MLM_REQUIRE_2FA_FOR: {MLM_REQUIRE_2FA_FOR!r} names no role (admin, approver, editor, "
        "viewer, staff)."
    )
OTP_TOTP_ISSUER = "MLM"
# Django's backend, which first refuses a locked-out login (mlm.logins); the single sign-on
# backends follow when their protocol is set up (below).
AUTHENTICATION_BACKENDS = ["mlm.logins.ThrottledModelBackend"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Single sign-on for staff (mlm.sso): SAML 2.0 and OpenID Connect, each off until configured.
# Users are created at their first login; their memberships follow the group mapping rules.
MLM_SAML_IDP_METADATA = env_str(
    "MLM_SAML_IDP_METADATA",
    "",
    "SAML 2.0 single sign-on: the identity provider's metadata, a URL (fetched again every 10 "
    "minutes) or a file path. Empty: SAML is off.",
)
MLM_SAML_ENABLED = bool(MLM_SAML_IDP_METADATA)
# How long a SAML metadata URL's answer is kept before it is fetched again (mlm.sso.config).
MLM_SAML_METADATA_SECONDS = 600
_saml_entity_id = env_str(
    "MLM_SAML_ENTITY_ID",
    "",
    "MLM's SAML entity ID, given to the identity provider (default: SITE_URL/sso/saml2/metadata/).",
)
_saml_key_file = env_str(
    "MLM_SAML_KEY_FILE",
    "",
    "PEM private key with which MLM signs its SAML requests (and reads encrypted assertions); "
    "with MLM_SAML_CERT_FILE. Empty: requests are not signed.",
)
_saml_cert_file = env_str(
    "MLM_SAML_CERT_FILE",
    "",
    "PEM certificate of MLM_SAML_KEY_FILE, published in MLM's SAML metadata.",
)
if bool(_saml_key_file) != bool(_saml_cert_file):
    raise ImproperlyConfigured(
        "MLM_SAML_KEY_FILE and MLM_SAML_CERT_FILE go together: set both (to sign SAML "
        "requests) or neither."
    )
MLM_SAML_USERNAME_ATTRIBUTE = env_str(
    "MLM_SAML_USERNAME_ATTRIBUTE",
    "uid",
    "SAML attribute that names the person (their MLM user name and the key that finds them "
    "again). Empty: the assertion's NameID.",
)
MLM_SAML_EMAIL_ATTRIBUTE = env_str(
    "MLM_SAML_EMAIL_ATTRIBUTE", "mail", "SAML attribute of the person's mail address."
)
MLM_SAML_GROUPS_ATTRIBUTE = env_str(
    "MLM_SAML_GROUPS_ATTRIBUTE",
    "groups",
    "SAML attribute whose values the group mapping rules match, e.g. isMemberOf, "
    "eduPersonEntitlement, or http://schemas.microsoft.com/ws/2008/06/identity/claims/groups.",
)
if MLM_SAML_ENABLED:
    from mlm.sso.config import saml_config

    SAML_CONFIG = saml_config(
        site_url=SITE_URL,
        idp_metadata=MLM_SAML_IDP_METADATA,
        entity_id=_saml_entity_id,
        key_file=_saml_key_file,
        cert_file=_saml_cert_file,
    )
    AUTHENTICATION_BACKENDS.append("mlm.sso.backends.SamlBackend")
# Authentication requests go by redirect (no form, no script under our CSP); the identity
# provider posts its answer back, a cross-site POST that must carry the SAML session cookie.
SAML_DEFAULT_BINDING = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
SAML_LOGOUT_REQUEST_PREFERRED_BINDING = SAML_DEFAULT_BINDING
SAML_SESSION_COOKIE_SAMESITE = "None" if _site.scheme == "https" else "Lax"
SAML_CSP_HANDLER = ""
SAML_CONFIG_LOADER = "mlm.sso.config.saml_config_loader"
SAML_ACS_FAILURE_RESPONSE_FUNCTION = "mlm.sso.views.saml_failure"
SAML_IGNORE_LOGOUT_ERRORS = True

_oidc_client_id = env_str(
    "MLM_OIDC_CLIENT_ID",
    "",
    "OpenID Connect single sign-on: the client ID the provider gave MLM. Empty: OIDC is off.",
)
_oidc = {
    name: env_str(f"MLM_OIDC_{name.upper()}", "", help)
    for name, help in (
        ("client_secret", "The client secret of MLM_OIDC_CLIENT_ID."),
        (
            "authorization_endpoint",
            "The provider's authorization endpoint (its discovery "
            "document, /.well-known/openid-configuration, lists its endpoints).",
        ),
        ("token_endpoint", "The provider's token endpoint."),
        ("userinfo_endpoint", "The provider's UserInfo endpoint."),
        ("jwks_endpoint", "The provider's JWKS URI: the keys of its ID token signatures."),
        (
            "end_session_endpoint",
            "The provider's end-session endpoint: logging out of MLM "
            "logs out there too. Empty: only MLM's session ends.",
        ),
    )
}
MLM_OIDC_SCOPES = env_str(
    "MLM_OIDC_SCOPES", "openid email profile", "OpenID Connect scopes MLM asks for."
)
MLM_OIDC_USERNAME_CLAIM = env_str(
    "MLM_OIDC_USERNAME_CLAIM",
    "preferred_username",
    "OpenID Connect claim of the person's MLM user name (the email claim if absent); the `sub` "
    "claim is what finds them again.",
)
MLM_OIDC_GROUPS_CLAIM = env_str(
    "MLM_OIDC_GROUPS_CLAIM",
    "groups",
    "OpenID Connect claim (in the ID token or UserInfo) whose values the group mapping rules "
    "match.",
)
MLM_OIDC_ENABLED = bool(_oidc_client_id)
if MLM_OIDC_ENABLED:
    _missing = [
        f"MLM_OIDC_{name.upper()}"
        for name, value in _oidc.items()
        if not value and name != "end_session_endpoint"
    ]
    if _missing:
        raise ImproperlyConfigured(
            f"MLM_OIDC_CLIENT_ID is set but {', '.join(_missing)} not: OpenID Connect needs "
            "them all (see the provider's /.well-known/openid-configuration)."
        )
    from mlm.sso.config import oidc_settings

    globals().update(oidc_settings(client_id=_oidc_client_id, scopes=MLM_OIDC_SCOPES, **_oidc))
    AUTHENTICATION_BACKENDS.append("mlm.sso.backends.OidcBackend")
MLM_LOCAL_LOGIN_STAFF_ONLY = env_bool(
    "MLM_LOCAL_LOGIN_STAFF_ONLY",
    False,
    "Once single sign-on is on: only staff and superusers may log in with a password "
    "(break-glass); everyone else logs in through the identity provider.",
)
if MLM_LOCAL_LOGIN_STAFF_ONLY and not (MLM_SAML_ENABLED or MLM_OIDC_ENABLED):
    raise ImproperlyConfigured(
        "MLM_LOCAL_LOGIN_STAFF_ONLY needs single sign-on (MLM_SAML_IDP_METADATA or "
        "MLM_OIDC_CLIENT_ID): without it nobody but staff could log in."
    )

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

# Uploaded import files and rejected-rows reports: the default storage, in a folder that the web
# process and the workers share (a shared volume in docker-compose.yml). Never served directly:
# downloads go through unit-scoped views.
MEDIA_ROOT = VAR_DIR / "media"
MLM_IMPORT_MAX_BYTES = env_int(
    "MLM_IMPORT_MAX_BYTES",
    200 * 1024 * 1024,
    "Largest recipient file (CSV or XLSX) an import accepts, in bytes.",
)
MLM_IMPORT_MAX_UNCOMPRESSED_BYTES = env_int(
    "MLM_IMPORT_MAX_UNCOMPRESSED_BYTES",
    100 * 1024 * 1024,
    "Largest size an XLSX workbook may unpack to (all its parts), in bytes.",
)
MLM_IMPORT_MAX_COMPRESSION_RATIO = env_int(
    "MLM_IMPORT_MAX_COMPRESSION_RATIO",
    100,
    "Largest ratio of an XLSX workbook's unpacked to packed size: past it, it is a zip bomb.",
)
MLM_IMPORT_PREVIEW_SECONDS = env_int(
    "MLM_IMPORT_PREVIEW_SECONDS",
    10,
    "Seconds the upload request may spend reading a workbook's first rows for the preview; past "
    "them the person is told to save it as CSV (the web server's own timeout is longer).",
)
MLM_IMPORT_LEASE_SECONDS = env_int(
    "MLM_IMPORT_LEASE_SECONDS",
    300,
    "Seconds a running import may go without progress before it is taken for dead (its worker "
    "killed or out of memory), marked failed and its files removed.",
)
MLM_IMPORT_RETENTION_DAYS = env_int(
    "MLM_IMPORT_RETENTION_DAYS",
    30,
    "Days a finished import's rejected-rows report is kept; uploads never started are deleted "
    "after a day.",
)

# Security. Production (DEBUG off) gets HTTPS-only cookies, HSTS and redirects by default.
_https = _site.scheme == "https"
SECURE_SSL_REDIRECT = env_bool(
    "SECURE_SSL_REDIRECT",
    not DEBUG and _https,
    "Redirect plain HTTP to HTTPS (default: on when DEBUG is off and SITE_URL is https).",
)
SECURE_REDIRECT_EXEMPT = [r"^health/$"]
if env_bool(
    "TRUST_X_FORWARDED_PROTO",
    False,
    "Behind a TLS-terminating proxy that sets X-Forwarded-Proto: trust it.",
):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = not DEBUG and _https
SECURE_HSTS_SECONDS = env_int(
    "SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, "HSTS max-age in seconds (0 turns it off)."
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = env_bool(
    "SECURE_HSTS_PRELOAD", not DEBUG, "Ask browsers to preload HSTS for the domain."
)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
TRUST_X_FORWARDED_FOR = env_bool(
    "TRUST_X_FORWARDED_FOR",
    False,
    "Behind one proxy that appends the client's address to X-Forwarded-For: take the last entry "
    "as the client's address (public rate limits, consent evidence).",
)

# Public recipient pages (consent.public_views): rate limits per client address, per one-click
# token and per address typed into the subscription form. Counted in the cache (Redis).
MLM_RATE_LIMITS = {
    "page_ip": "120/m",
    "action_ip": "30/m",
    "one_click_ip": "1200/m",
    "one_click_token": "10/m",
    "subscribe_ip": "10/h",
    "subscribe_address": "3/h",
    # Failed staff logins (mlm.logins): past these, logins are refused until the window ends.
    "login_account": "10/15m",
    "login_ip": "50/15m",
}
for _item in env_list(
    "MLM_RATE_LIMITS",
    [],
    "Overrides of the public pages' rate limits, comma-separated name=count/period, e.g. "
    "one_click_ip=1200/m,subscribe_ip=10/h (names: " + ", ".join(MLM_RATE_LIMITS) + ").",
):
    _name, _, _rate = _item.partition("=")
    if _name.strip() not in MLM_RATE_LIMITS or not re.fullmatch(r"\d+/\d*[smhd]", _rate.strip()):
        raise ImproperlyConfigured(f"MLM_RATE_LIMITS: cannot read {_item!r} (e.g. page_ip=120/m).")
    MLM_RATE_LIMITS[_name.strip()] = _rate.strip()
MLM_SUBSCRIPTION_REQUEST_DAYS = 7  # unconfirmed double opt-in requests expire after this

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "object-src": [NONE],
        "base-uri": [NONE],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    }
}

# Mail. The embedded default keeps every message in the Outbox, readable in the browser.
_EMAIL_BACKENDS = {
    "outbox": "mlm.mail.OutboxBackend",
    "smtp": "django.core.mail.backends.smtp.EmailBackend",
    "console": "django.core.mail.backends.console.EmailBackend",
    # ESPs through anymail: they build the MIME and sign it themselves.
    "amazon_ses": "anymail.backends.amazon_ses.EmailBackend",
    "mailgun": "anymail.backends.mailgun.EmailBackend",
    "sendgrid": "anymail.backends.sendgrid.EmailBackend",
    "postmark": "anymail.backends.postmark.EmailBackend",
}
_email_backend = env_str(
    "EMAIL_BACKEND",
    "outbox",
    "outbox (keep mail in the browser's Outbox), smtp, console, or a dotted path such as "
    "anymail.backends.amazon_ses.EmailBackend.",
    production=True,
)
EMAIL_BACKEND = _EMAIL_BACKENDS.get(_email_backend, _email_backend)
# The backends a unit may choose for its campaigns (campaign settings): name -> dotted path.
MLM_MAIL_BACKENDS: dict[str, str] = {}
for _item in env_list(
    "MLM_MAIL_BACKENDS",
    [],
    "Mail backends a unit may choose for its campaigns instead of EMAIL_BACKEND, "
    "comma-separated: known names (" + ", ".join(_EMAIL_BACKENDS) + ") or name=dotted.path, "
    "e.g. smtp,amazon_ses,relay2=myapp.backends.Relay (empty: every unit uses EMAIL_BACKEND).",
):
    _name, _, _path = (part.strip() for part in _item.partition("="))
    _path = _path or _EMAIL_BACKENDS.get(_name, "")
    if not re.fullmatch(r"[a-z0-9_-]{1,20}", _name) or not re.fullmatch(r"\w+(\.\w+)+", _path):
        raise ImproperlyConfigured(
            f"MLM_MAIL_BACKENDS: cannot read {_item!r}: use a known name ("
            + ", ".join(_EMAIL_BACKENDS)
            + ") or name=dotted.path, the name of at most 20 lower-case letters, digits, - or _."
        )
    MLM_MAIL_BACKENDS[_name] = _path
# ESP credentials, read by anymail as ANYMAIL_<ESP>_<NAME>; set only when given, so that an
# ESP nobody configured fails as "not configured" rather than with an empty key. Amazon SES
# takes the usual AWS_* variables (boto3, `pip install django-anymail[amazon-ses]`).
if _mailgun_key := env_str("MAILGUN_API_KEY", None, "Mailgun API key (the mailgun backend)."):
    ANYMAIL_MAILGUN_API_KEY = _mailgun_key
if _mailgun_url := env_str(
    "MAILGUN_API_URL", None, "Mailgun API base URL, e.g. https://api.eu.mailgun.net/v3 (EU)."
):
    ANYMAIL_MAILGUN_API_URL = _mailgun_url
if _sendgrid_key := env_str("SENDGRID_API_KEY", None, "SendGrid API key (the sendgrid backend)."):
    ANYMAIL_SENDGRID_API_KEY = _sendgrid_key
if _postmark_token := env_str(
    "POSTMARK_SERVER_TOKEN", None, "Postmark server token (the postmark backend)."
):
    ANYMAIL_POSTMARK_SERVER_TOKEN = _postmark_token
# Sender checks (mlm.sender_checks, "Check DNS" in the admin): what each sending domain's DNS
# must name for our relay, and where its bounces must go.
MLM_SPF_MECHANISMS = env_list(
    "MLM_SPF_MECHANISMS",
    [],
    "SPF mechanisms that authorise our relay or ESP, comma-separated, e.g. "
    "ip4:192.0.2.25,include:amazonses.com: the sender checks want each in every sending "
    "domain's SPF record (empty: any SPF record that is not +all passes).",
)
MLM_RETURN_PATH_MX = env_str(
    "MLM_RETURN_PATH_MX",
    "",
    "Host that receives bounces (the mailbox process_bounces reads): the sender checks want "
    "each sending domain's MX to point at it (empty: any MX or address record passes).",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost", "SMTP relay host.")
EMAIL_PORT = env_int("EMAIL_PORT", 25, "SMTP relay port.")
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "", "SMTP user name.")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "", "SMTP password.")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False, "Use STARTTLS with the SMTP relay.")
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False, "Use implicit TLS with the SMTP relay.")
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 30, "SMTP timeout in seconds.")
DEFAULT_FROM_EMAIL = env_str(
    "DEFAULT_FROM_EMAIL",
    "mlm@example.edu",
    "Sender of system mail (login, confirmations); its domain also names their Message-IDs.",
    production=True,
)
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# Celery, on Redis (the embedded one by default).
CELERY_BROKER_URL = env_str(
    "CELERY_BROKER_URL",
    REDIS_URL if os.environ.get("REDIS_URL") else EMBEDDED.broker_url(),
    "Celery broker (default: REDIS_URL, else the embedded Redis).",
)
CELERY_VISIBILITY_TIMEOUT = env_int(
    "CELERY_VISIBILITY_TIMEOUT",
    3 * 3600,
    "Seconds before Redis re-delivers an unacknowledged task; must exceed the task time limit.",
)
CELERY_TASK_TIME_LIMIT = env_int(
    "CELERY_TASK_TIME_LIMIT", 15 * 60, "Hard time limit of any task, in seconds."
)
if CELERY_TASK_TIME_LIMIT >= CELERY_VISIBILITY_TIMEOUT:
    raise ImproperlyConfigured(
        f"CELERY_TASK_TIME_LIMIT ({CELERY_TASK_TIME_LIMIT} s) must be below "
        f"CELERY_VISIBILITY_TIMEOUT ({CELERY_VISIBILITY_TIMEOUT} s): otherwise the broker hands a "
        "running task to a second worker and mail could be sent twice."
    )
CELERY_TASK_SOFT_TIME_LIMIT = max(CELERY_TASK_TIME_LIMIT - 30, 1)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
# Dispatch (campaigns.dispatch): batches claimed by workers, their lease, retries, limits.
MLM_DISPATCH_BATCH_SIZE = env_int(
    "MLM_DISPATCH_BATCH_SIZE", 50, "Deliveries a worker claims and sends over one connection."
)
MLM_DISPATCH_PARALLEL = env_int(
    "MLM_DISPATCH_PARALLEL", 4, "Batch tasks of one campaign in flight at once (across workers)."
)
MLM_DISPATCH_LEASE_SECONDS = env_int(
    "MLM_DISPATCH_LEASE_SECONDS",
    300,
    "Seconds a claimed batch may take; after that its rows are taken for lost and marked in doubt.",
)
MLM_DISPATCH_MAX_ATTEMPTS = env_int(
    "MLM_DISPATCH_MAX_ATTEMPTS",
    5,
    "Attempts of a delivery deferred by transient errors (4xx, timeouts) before it fails.",
)
MLM_DISPATCH_RETRY_SECONDS = env_int(
    "MLM_DISPATCH_RETRY_SECONDS",
    60,
    "First retry delay of a deferred delivery, in seconds; it doubles with every attempt.",
)
MLM_DISPATCH_PAUSE_AFTER_FAILURES = env_int(
    "MLM_DISPATCH_PAUSE_AFTER_FAILURES",
    200,
    "A sending campaign pauses itself after this many transient failures in a row (0: never).",
)
MLM_DISPATCH_UNIT_RATE = env_int(
    "MLM_DISPATCH_UNIT_RATE", 0, "Messages per second one unit may send (0: no limit)."
)
MLM_DISPATCH_BACKEND_RATE = env_int(
    "MLM_DISPATCH_BACKEND_RATE",
    0,
    "Messages per second through the mail backend, all units together (0: no limit).",
)
MLM_DISPATCH_DOMAIN_CONCURRENCY = env_int(
    "MLM_DISPATCH_DOMAIN_CONCURRENCY",
    0,
    "Messages in flight at once to one recipient domain, all workers together (0: no limit).",
)
MLM_DISPATCH_SWEEP_SECONDS = env_int(
    "MLM_DISPATCH_SWEEP_SECONDS",
    15,
    "How often beat starts due campaigns and recovers lost batches, in seconds.",
)
if MLM_DISPATCH_LEASE_SECONDS >= CELERY_VISIBILITY_TIMEOUT:
    raise ImproperlyConfigured(
        "MLM_DISPATCH_LEASE_SECONDS must be below CELERY_VISIBILITY_TIMEOUT: a batch whose lease "
        "ran out is in doubt before the broker could hand its task to another worker."
    )
if MLM_DISPATCH_LEASE_SECONDS <= EMAIL_TIMEOUT + 10:
    raise ImproperlyConfigured(
        "MLM_DISPATCH_LEASE_SECONDS must exceed EMAIL_TIMEOUT by more than 10 s: a batch whose "
        "server hangs must hit the SMTP timeout before its lease runs out."
    )

# Outbound events (outbound/): signed POSTs to the HTTPS endpoints a unit registers.
MLM_OUTBOUND_ALLOW_PRIVATE = env_bool(
    "MLM_OUTBOUND_ALLOW_PRIVATE",
    False,
    "Allow outbound event endpoints on private, loopback or link-local addresses (and plain "
    "http). Off in production: a unit admin could otherwise make MLM call internal services.",
)
MLM_OUTBOUND_TIMEOUT_MS = env_int(
    "MLM_OUTBOUND_TIMEOUT_MS", 5000, "How long one outbound event POST may take, in ms."
)
MLM_OUTBOUND_RETRY_HOURS = env_int(
    "MLM_OUTBOUND_RETRY_HOURS",
    24,
    "An outbound event not delivered this many hours after it happened is marked failed.",
)
MLM_OUTBOUND_RETRY_BASE_MS = env_int(
    "MLM_OUTBOUND_RETRY_BASE_MS",
    10000,
    "The first retry of an outbound event comes after about this many ms; each next one "
    "after twice as long (with jitter), at most an hour.",
)
MLM_OUTBOUND_PAUSE_HOURS = env_int(
    "MLM_OUTBOUND_PAUSE_HOURS",
    24,
    "An endpoint whose deliveries have all failed for this many hours is paused.",
)
MLM_OUTBOUND_LEASE_SECONDS = env_int(
    "MLM_OUTBOUND_LEASE_SECONDS",
    60,
    "A worker's claim on outbound events; a worker that dies leaves them to others after it.",
)
MLM_OUTBOUND_CONCURRENCY = env_int(
    "MLM_OUTBOUND_CONCURRENCY",
    64,
    "Outbound event POSTs in flight at once per worker (and connections kept open to the "
    "receivers); lower it for receivers that take fewer.",
)
MLM_OUTBOUND_SWEEP_SECONDS = env_int(
    "MLM_OUTBOUND_SWEEP_SECONDS", 15, "How often beat looks for outbound events due a retry."
)

CELERY_BEAT_SCHEDULE = {
    "health": {"task": "mlm.tasks.health", "schedule": 60.0},
    "dispatch-start-due": {
        "task": "campaigns.tasks.start_due_campaigns",
        "schedule": float(MLM_DISPATCH_SWEEP_SECONDS),
    },
    "dispatch-recover": {
        "task": "campaigns.tasks.recover_deliveries",
        "schedule": float(MLM_DISPATCH_SWEEP_SECONDS),
    },
    "purge-subscription-requests": {
        "task": "consent.tasks.purge_subscription_requests",
        "schedule": 3600.0,
    },
    "imports-recover": {"task": "recipients.tasks.recover_imports", "schedule": 60.0},
    "imports-purge": {"task": "recipients.tasks.purge_imports", "schedule": 3600.0},
    "outbound-deliver": {
        "task": "outbound.tasks.deliver_events",
        "schedule": float(MLM_OUTBOUND_SWEEP_SECONDS),
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# Campaigns: the institution-wide frequency cap, set by operations; it counts the DM mail of
# every unit to the same address. Each unit may set its own cap too. 0 mails: no cap.
MLM_FREQUENCY_CAP_MAILS = env_int(
    "MLM_FREQUENCY_CAP_MAILS",
    0,
    "Institution-wide frequency cap: at most this many DM mails from all units to one address "
    "per MLM_FREQUENCY_CAP_DAYS (0: no cap).",
)
MLM_FREQUENCY_CAP_DAYS = env_int(
    "MLM_FREQUENCY_CAP_DAYS", 7, "The period of the institution-wide frequency cap, in days."
)

# Tracking webhooks (campaigns.webhooks, under /webhooks/anymail/<esp>/tracking/): anymail checks
# HTTP basic auth against this secret for Amazon SES, SendGrid and Postmark (put it in the URL
# you give the provider, https://user:password@host/...) and Mailgun's signature against its
# key. Without the secret those webhooks answer 403 (anymail alone would accept anyone's calls).
if _webhook_secret := env_str(
    "ANYMAIL_WEBHOOK_SECRET",
    None,
    "user:password that mail providers must send (HTTP basic auth) to the tracking webhooks; "
    "several separated by commas while you rotate it. Unset: those webhooks answer 403.",
):
    ANYMAIL_WEBHOOK_SECRET = [part.strip() for part in _webhook_secret.split(",") if part.strip()]
if _mailgun_signing_key := env_str(
    "MAILGUN_WEBHOOK_SIGNING_KEY",
    None,
    "Mailgun's HTTP webhook signing key: the Mailgun tracking webhook checks each call's "
    "signature with it.",
):
    ANYMAIL_MAILGUN_WEBHOOK_SIGNING_KEY = _mailgun_signing_key

LOG_LEVEL = env_str("LOG_LEVEL", "INFO", "Log level of the mlm loggers.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        name: {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False}
        for name in ("mlm", "consent", "recipients", "campaigns")
    },
}
