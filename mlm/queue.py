"""Enqueue a Celery task by the name it registers with, once the transaction commits.

A service that sets work going in a worker names its task instead of importing the tasks
module, which imports the service back: services stand below their tasks, with no import
cycle. The name is the task's `name=`, kept across upgrades, so a message queued before one
still finds its task after it.
"""

from __future__ import annotations

from celery import current_app
from django.db import transaction


def enqueue_on_commit(name: str, *args: object, robust: bool = False) -> None:
    """Send the task registered as `name` with `args` once the current transaction commits
    (at once outside a transaction). `robust`: a broker that fails then is logged, not raised,
    for work that must not undo what committed."""
    transaction.on_commit(lambda: current_app.send_task(name, args), robust=robust)
