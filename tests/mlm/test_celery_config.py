"""The Celery app carries the reliability settings that mail needs."""

from django.conf import settings

from mlm.celery import app


def test_it_acknowledges_late_and_takes_one_task_at_a_time():
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_serializer == "json"
    assert conf.accept_content == ["json"]


def test_the_visibility_timeout_outlasts_every_task():
    visibility = app.conf.broker_transport_options["visibility_timeout"]
    assert app.conf.task_time_limit < visibility
    assert app.conf.task_soft_time_limit < app.conf.task_time_limit


def test_tests_use_redis():
    assert settings.CELERY_BROKER_URL.startswith("redis://")


def test_beat_runs_the_health_task():
    assert any(e["task"] == "mlm.tasks.health" for e in settings.CELERY_BEAT_SCHEDULE.values())
