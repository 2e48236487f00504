"""The unit's campaign settings: self-approval, frequency cap, banned words, breaker limits."""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from mlm.models import SenderUnit

# The circuit breaker judges a campaign's complaint and hard-bounce rates only after this many
# attempts (sent, failed or deferred deliveries): before, a few events would swing the rate.
BREAKER_MIN_ATTEMPTS = 1000

# The default banned-words list of a unit: the absolute terms China's Advertising Law (art. 9(3))
# forbids in advertising, and English claims that mislead or trip spam filters. A unit edits its
# own copy on the campaign settings page.
DEFAULT_BANNED_WORDS = [
    "最佳",
    "最高级",
    "最高級",
    "最优",
    "最優",
    "最好",
    "国家级",
    "國家級",
    "世界级",
    "世界級",
    "第一品牌",
    "顶级",
    "頂級",
    "极品",
    "極品",
    "独一无二",
    "獨一無二",
    "绝无仅有",
    "絕無僅有",
    "史无前例",
    "史無前例",
    "万能",
    "萬能",
    "guaranteed",
    "risk-free",
    "risk free",
    "100% free",
    "no obligation",
    "act now",
    "once in a lifetime",
    "best in the world",
    "number one",
]


class UnitCampaignSettings(models.Model):
    """A unit's rules for its campaigns: self-approval, its frequency cap, its banned words,
    tracking and web versions."""

    unit = models.OneToOneField(
        SenderUnit, on_delete=models.CASCADE, related_name="campaign_settings"
    )
    allow_self_approval = models.BooleanField(
        default=False, help_text="An approver may approve a campaign they wrote themselves."
    )
    frequency_cap_mails = models.PositiveIntegerField(
        default=0, help_text="At most this many DM mails per recipient (0: no cap)…"
    )
    frequency_cap_days = models.PositiveIntegerField(default=7, help_text="…per this many days.")
    banned_words = models.TextField(
        blank=True,
        default="\n".join(DEFAULT_BANNED_WORDS),
        help_text="One word or phrase per line; matched without regard to case.",
    )
    mail_backend = models.CharField(
        max_length=20,
        blank=True,
        help_text="The unit's mail backend, a name from settings.MLM_MAIL_BACKENDS; empty: the "
        "default (EMAIL_BACKEND).",
    )
    complaint_rate_limit = models.DecimalField(
        max_digits=5,
        decimal_places=3,
        default=Decimal("0.300"),
        validators=[MinValueValidator(Decimal("0.001")), MaxValueValidator(Decimal("0.300"))],
        help_text="Pause a campaign whose complaint rate passes this percentage after "
        f"{BREAKER_MIN_ATTEMPTS:,} attempts (at most 0.3%).",
    )
    hard_bounce_rate_limit = models.DecimalField(
        max_digits=5,
        decimal_places=3,
        default=Decimal("5.000"),
        validators=[MinValueValidator(Decimal("0.001")), MaxValueValidator(Decimal("5.000"))],
        help_text="Pause a campaign whose hard-bounce rate passes this percentage after "
        f"{BREAKER_MIN_ATTEMPTS:,} attempts (at most 5%).",
    )
    tracking_enabled = models.BooleanField(
        default=False,
        help_text="Track opens and clicks (off by default; the preference centre says so).",
    )
    web_version_enabled = models.BooleanField(
        default=True,
        help_text="Every mail links to its web version (on by default); off, the links of "
        "mails already sent show the page of an invalid link.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "unit campaign settings"

    def __str__(self) -> str:
        return f"campaign settings of {self.unit}"

    @property
    def banned_word_list(self) -> list[str]:
        return [w.strip() for w in self.banned_words.splitlines() if w.strip()]
