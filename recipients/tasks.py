"""Celery entry points of recipients: imports run here, away from the web request."""

from __future__ import annotations

from celery import shared_task

from recipients.import_services import import_run, imports_purge, imports_recover


@shared_task(name="recipients.tasks.run_import")
def run_import(job_id: int) -> None:
    """Run one queued import; its outcome, failure included, is recorded on the job."""
    import_run(job_id=job_id)


@shared_task(name="recipients.tasks.recover_imports")
def recover_imports() -> int:
    """Beat: give up imports whose worker died (their lease ran out)."""
    return imports_recover()


@shared_task(name="recipients.tasks.purge_imports")
def purge_imports() -> int:
    """Beat: delete old rejected-rows reports and uploads that were never started."""
    return imports_purge()
