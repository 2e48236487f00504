"""Who may log in and how (passwords, two factors, single sign-on), and what protects the
pages: HTTPS, cookies, rate limits, the content security policy."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from mlm.env import env_bool, env_int, env_list, env_str
from mlm.settings.core import DEBUG, SITE_URL

_site = urlsplit(SITE_URL)

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
