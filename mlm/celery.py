"""The Celery app: settings come from Django's (CELERY_ namespace), tasks from every app."""

import os

from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlm.settings")

app = Celery("mlm")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_ready.connect
def _report_ready(sender, **kwargs) -> None:
    """Send the health task once at start, so the dashboard sees a consuming worker at once."""
    sender.app.send_task("mlm.tasks.health")
