from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = "Campaigns"

    def ready(self) -> None:
        from anymail.signals import tracking

        from campaigns import webhooks

        tracking.connect(webhooks.on_tracking, dispatch_uid="campaigns.webhooks.on_tracking")
