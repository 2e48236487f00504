"""MLM settings, driven by environment variables (see the README's table), one module per idea:
core (paths, keys, site, apps, database, Redis, languages, logging), security (logins, single
sign-on, HTTPS, rate limits, CSP), mail (backends, ESPs, sender checks, webhooks), work
(imports, Celery, dispatch, frequency caps) and api (the REST API's pages, errors and rate).
DJANGO_SETTINGS_MODULE is mlm.settings."""

from mlm.settings.api import *  # noqa: F403
from mlm.settings.core import *  # noqa: F403
from mlm.settings.mail import *  # noqa: F403
from mlm.settings.security import *  # noqa: F403
from mlm.settings.work import *  # noqa: F403
