"""Signed outbound events: what a unit's other systems learn of consent, suppressions,
bounces, complaints and erasures, through an outbox delivered by Celery."""
