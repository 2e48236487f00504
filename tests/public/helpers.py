"""A person's browser for the public pages: CSRF enforced, forms posted like a browser would."""

from __future__ import annotations

from django.test import Client


class Browser(Client):
    """A client that enforces CSRF: it must load a page before it can post its form."""

    def __init__(self, **kwargs) -> None:
        super().__init__(enforce_csrf_checks=True, **kwargs)

    def submit(self, url: str, data: dict | None = None, *, page: str | None = None, **extra):
        """Load `page` (default: `url`) for its CSRF cookie, then post `data` to `url`."""
        shown = self.get(page or url, **extra)
        assert shown.status_code == 200, shown.status_code
        token = self.cookies["csrftoken"].value
        return self.post(url, {**(data or {}), "csrfmiddlewaretoken": token}, **extra)
