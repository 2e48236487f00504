"""A real `celery worker` on Redis consumes our tasks against the real database."""

from django.conf import settings

from mlm.models import Heartbeat, OutboxMessage
from mlm.services import unit_send_test_mail
from mlm.tasks import WORKER_HEARTBEAT, health
from tests.personas import make_world
from tests.processes import wait_for


def test_it_runs_the_health_task(celery_worker):
    health.delay()
    wait_for(
        lambda: Heartbeat.objects.filter(name=WORKER_HEARTBEAT).exists(),
        message=f"no heartbeat; worker log:\n{celery_worker.log()[-3000:]}",
    )


def test_the_test_mail_reaches_the_outbox_through_the_worker(celery_worker):
    assert settings.CELERY_BROKER_URL.startswith("redis://")
    world = make_world()
    unit_send_test_mail(unit=world.unit, by=world.bob)  # outside atomic: on_commit runs now
    wait_for(
        lambda: OutboxMessage.objects.for_unit(world.unit).exists(),
        message=f"nothing in the outbox; worker log:\n{celery_worker.log()[-3000:]}",
    )
    message = OutboxMessage.objects.for_unit(world.unit).get()
    assert message.recipients == world.bob.email
