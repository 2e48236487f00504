"""Who the identity provider says a user is, and the rules that turn its groups into roles."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from mlm.models import Role, SenderUnit


class Provider(models.TextChoices):
    SAML = "saml", "SAML 2.0"
    OIDC = "oidc", "OpenID Connect"


class IdentityGroupRule(models.Model):
    """A group (or any value of the groups attribute or claim) of the identity provider that
    gives its members a role in a unit. The highest role of the matching rules wins."""

    provider = models.CharField(max_length=8, choices=Provider.choices)
    group = models.CharField(
        max_length=255,
        help_text="The value exactly as the identity provider sends it in the groups attribute "
        "or claim, e.g. eng-comms-approvers (letter case counts).",
    )
    unit = models.ForeignKey(SenderUnit, on_delete=models.CASCADE, related_name="+")
    role = models.CharField(max_length=10, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "group", "unit"], name="one_rule_per_provider_group_unit"
            )
        ]
        ordering = ["provider", "group", "unit__name"]
        verbose_name = "group mapping rule"

    def __str__(self) -> str:
        return f"{self.group} → {self.unit} ({self.get_role_display()})"


class Identity(models.Model):
    """The link between a user and the subject an identity provider names them by. A user is
    found by it at each login, never by user name, so that an identity provider cannot take
    over a local account that happens to share a name."""

    provider = models.CharField(max_length=8, choices=Provider.choices)
    subject = models.CharField(
        max_length=255, help_text="The NameID or user name attribute (SAML), or `sub` (OIDC)."
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sso_identities"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_login_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "subject"], name="one_user_per_subject")
        ]
        verbose_name_plural = "identities"

    def __str__(self) -> str:
        return f"{self.get_provider_display()} {self.subject} → {self.user}"
