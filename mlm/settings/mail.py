"""Mail: the backends (the Outbox, SMTP, ESPs through anymail), their credentials, the sender
checks of sending domains, and the secrets of the providers' tracking webhooks."""

from __future__ import annotations

import re

from django.core.exceptions import ImproperlyConfigured

from mlm.env import env_bool, env_int, env_list, env_str

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
