"""Dispatch's settings: the beat schedule, and the time limits the worker refuses to start with."""

from __future__ import annotations

import pytest
from django.conf import settings

from tests.mlm.test_settings import production_env, run


def test_beat_starts_due_campaigns_and_recovers_lost_batches():
    """I7: both dispatch beat tasks are scheduled."""
    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"campaigns.tasks.start_due_campaigns", "campaigns.tasks.recover_deliveries"} <= tasks


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"MLM_DISPATCH_LEASE_SECONDS": "4000", "CELERY_VISIBILITY_TIMEOUT": "3600"},
            "MLM_DISPATCH_LEASE_SECONDS must be below CELERY_VISIBILITY_TIMEOUT",
        ),
        (
            {"MLM_DISPATCH_LEASE_SECONDS": "30", "EMAIL_TIMEOUT": "30"},
            "must exceed EMAIL_TIMEOUT",
        ),
    ],
)
def test_it_refuses_a_lease_that_does_not_fit_the_timeouts(tmp_path, env, message):
    """I7: a batch's lease ends before the broker could re-deliver its task, and after the SMTP
    timeout of a hanging server."""
    result = run(["manage.py", "check"], production_env(tmp_path, **env))
    assert result.returncode != 0
    assert message in result.stderr


def test_the_batch_task_ends_before_its_lease():
    """I7: the batch task's hard time limit is below the lease, so no task outlives it."""
    from campaigns.tasks import send_batch

    assert send_batch.time_limit < settings.MLM_DISPATCH_LEASE_SECONDS
    assert settings.CELERY_TASK_TIME_LIMIT < settings.CELERY_VISIBILITY_TIMEOUT
