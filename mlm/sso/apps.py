from django.apps import AppConfig


class SsoConfig(AppConfig):
    name = "mlm.sso"
    label = "sso"
    verbose_name = "Single sign-on"
