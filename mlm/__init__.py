"""MLM: consent-aware, multi-tenant mass mailing."""

from mlm.celery import app as celery_app

__all__ = ["celery_app"]
