"""Sending: one package from a campaign's start to the mail backend (DESIGN §5).

`start` (snapshot, start, due campaigns) → `batches` (claim, re-check, send one batch, record) →
`transport` (backends, connection, throttle, error classification); `recovery` (leases, in-doubt
rows, finishing). It calls the campaign status machine (campaigns.services.status), never the
reverse; its Celery entry points are campaigns.tasks.
"""
