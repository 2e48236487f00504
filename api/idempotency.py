"""`Idempotency-Key`: the same key and body get the first answer again, not a second write;
the same key with another body is refused (422)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import exceptions

from api.models import ApiKey, IdempotentRequest

KEEP = timedelta(hours=24)
MAX_KEY_LENGTH = 255


class IdempotencyKeyReused(exceptions.APIException):
    status_code = 422
    default_detail = (
        "This Idempotency-Key was used with a different body: use a new key for a new request."
    )


def _fingerprint(body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # Keyed: the body names a person, and only keyed hashes of an address may outlive erasure.
    return hmac.new(settings.SECRET_KEY.encode(), canonical.encode(), hashlib.sha256).hexdigest()


def check_key(value: str | None) -> str | None:
    """The header's value, or a 400 if it cannot be one."""
    if value is None:
        return None
    if not value or len(value) > MAX_KEY_LENGTH or not value.isprintable() or not value.isascii():
        raise exceptions.ValidationError(
            {"Idempotency-Key": f"Use 1 to {MAX_KEY_LENGTH} printable ASCII characters."}
        )
    return value


@transaction.atomic
def once(
    *, api_key: ApiKey, key: str, body: Any, run: Callable[[], tuple[int, dict]]
) -> tuple[int, dict, bool]:
    """`run()`'s (status, body) the first time, the stored answer after; True if replayed.

    The row is inserted before `run` writes: a concurrent twin waits on the unique index until
    this transaction ends, then replays its answer. If `run` fails, nothing is kept.
    """
    fingerprint = _fingerprint(body)
    try:
        with transaction.atomic():
            row = IdempotentRequest.objects.create(
                api_key=api_key, key=key, fingerprint=fingerprint, status=0, body={}
            )
    except IntegrityError:
        row = IdempotentRequest.objects.get(api_key=api_key, key=key)
        if not hmac.compare_digest(row.fingerprint, fingerprint):
            raise IdempotencyKeyReused() from None
        return row.status, row.body, True
    status, answer = run()
    IdempotentRequest.objects.filter(pk=row.pk).update(status=status, body=answer)
    return status, answer, False


def purge(*, now=None) -> int:
    """Forget answers older than a day; returns how many."""
    deleted, _ = IdempotentRequest.objects.filter(
        created_at__lt=(now or timezone.now()) - KEEP
    ).delete()
    return deleted
