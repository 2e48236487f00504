"""The REST API for other systems: per-unit keys, consent, recipients (Django REST framework).

How an endpoint is built here:
- a viewset deriving from `api.scoping.UnitScopedViewSet` (or `UnitScopedAPIView`) with
  `model = <a model with objects.for_unit>`: its queryset is the key's unit's rows (I8), objects
  are looked up by `code` (UUID), another unit's are 404;
- roles on the view: `read_roles`, `write_roles` or `action_roles = {"action": (ApiRole...)}`
  (defaults: viewer reads, editor writes; a consent-writer key only what names it);
- writes call the apps' services (keyword arguments, `by=None`, the key's prefix in the audit
  data); a service's ValidationError becomes a 400 problem with its message;
- registered on `api.urls.router` (or a path in `v1_patterns`); the isolation walk
  (tests/api/test_isolation.py) and Schemathesis then cover it.
"""
