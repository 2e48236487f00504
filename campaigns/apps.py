from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = "Campaigns"

    def ready(self) -> None:
        from anymail.signals import tracking

        from campaigns import breaker, rights, webhooks  # noqa: F401 - breaker registers its task
        from recipients.rights import keeper_register

        keeper_register(rights.PROVIDER_EVENTS)

        tracking.connect(webhooks.on_tracking, dispatch_uid="campaigns.webhooks.on_tracking")
