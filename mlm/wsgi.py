"""WSGI entry point (gunicorn mlm.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlm.settings")
application = get_wsgi_application()
