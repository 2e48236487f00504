from django.apps import AppConfig


class ApiConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "api"
    verbose_name = "REST API"

    def ready(self) -> None:
        # The system check of API scoping, the OpenAPI extension of the key authentication.
        from api import checks, schema  # noqa: F401
