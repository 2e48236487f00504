"""Celery entry points of recipients: imports run here, away from the web request."""

from __future__ import annotations

from celery import shared_task

from recipients.import_services import import_run


@shared_task(name="recipients.tasks.run_import")
def run_import(job_id: int) -> None:
    """Run one queued import; its outcome, failure included, is recorded on the job."""
    import_run(job_id=job_id)
