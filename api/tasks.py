"""Celery entry points of the API."""

from celery import shared_task

from api import idempotency


@shared_task
def purge_idempotent_requests() -> int:
    """Forget stored answers of idempotent requests after a day."""
    return idempotency.purge()
