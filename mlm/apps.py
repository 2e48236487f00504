"""The core app: sender units, memberships, the audit log and the browser shell."""

from django.apps import AppConfig


class MlmConfig(AppConfig):
    name = "mlm"
    verbose_name = "MLM core"

    def ready(self) -> None:
        from mlm import checks, logins  # noqa: F401  (system checks; login signal receivers)
