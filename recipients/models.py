"""Recipients of a unit and their lists; a list holds one audience only (I3)."""

from __future__ import annotations

import re
import uuid

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.db import models

from mlm.models import SenderUnit, UnitScopedQuerySet


class Audience(models.TextChoices):
    INTERNAL = "internal", "Internal (staff, students, alumni)"
    EXTERNAL = "external", "External"


class Category(models.TextChoices):
    STAFF = "staff", "Staff"
    STUDENT = "student", "Student"
    ALUMNI = "alumni", "Alumni"
    EXTERNAL = "external", "External"

    @property
    def audience(self) -> Audience:
        return Audience.EXTERNAL if self is Category.EXTERNAL else Audience.INTERNAL

    @classmethod
    def of_audience(cls, audience: str) -> list[str]:
        return [c.value for c in cls if c.audience == audience]


class RecipientStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    BOUNCED = "bounced", "Bounced"
    COMPLAINED = "complained", "Complained"
    ERASED = "erased", "Erased"


class Recipient(models.Model):
    """An address a unit can write to; the address is normalised (see recipients.addresses)."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # The unique (unit, email_hash) index leads with the unit, as do those of Meta and migration
    # 0002: the foreign key's own index would only cost every import an entry per row.
    unit = models.ForeignKey(
        SenderUnit, on_delete=models.PROTECT, related_name="recipients", db_index=False
    )
    email = models.CharField(max_length=320, help_text="As first written (the display form).")
    email_hash = models.CharField(
        max_length=64,
        help_text="Keyed hash of the address in any case: its identity (unique per unit, and "
        "the suppression match).",
    )
    first_name = models.CharField(max_length=150, blank=True)
    last_name = models.CharField(max_length=150, blank=True)
    category = models.CharField(max_length=10, choices=Category.choices)
    locale = models.CharField(max_length=10, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=10, choices=RecipientStatus.choices, default=RecipientStatus.ACTIVE
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = UnitScopedQuerySet.as_manager()

    class Meta:
        constraints = [
            # One recipient per address of a unit, whatever the case of its letters.
            models.UniqueConstraint(
                fields=["unit", "email_hash"], name="recipient_address_unique_per_unit"
            )
        ]
        indexes = [
            # The unit's recipients in address order (the recipients page pages through it).
            models.Index(fields=["unit", "email"], name="recipient_unit_email"),
            models.Index(fields=["unit", "category", "status"], name="recipient_unit_cat_status"),
            # A plain B-tree: db_index on a CharField adds a LIKE index no hash is searched with.
            models.Index(fields=["email_hash"], name="recipient_email_hash"),
            # Segments test attributes for equality by containment (`@>`), which this answers.
            GinIndex(
                fields=["attributes"], opclasses=["jsonb_path_ops"], name="recipient_attributes"
            ),
        ]
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email

    @property
    def audit_label(self) -> str:
        # Audit entries never carry personal data (I9): name the recipient by code.
        return f"recipient {self.code}"

    @property
    def audience(self) -> Audience:
        return Category(self.category).audience

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class RecipientList(models.Model):
    """A named set of recipients of one audience."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    unit = models.ForeignKey(SenderUnit, on_delete=models.PROTECT, related_name="lists")
    name = models.CharField(max_length=200)
    audience = models.CharField(max_length=10, choices=Audience.choices)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = UnitScopedQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["unit", "name"], name="list_name_unique_per_unit")
        ]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ListMembership(models.Model):
    """A recipient on a list."""

    # Indexed by one_membership_per_list (list first) and listmember_recipient, not on their own.
    recipient_list = models.ForeignKey(
        RecipientList, on_delete=models.CASCADE, related_name="memberships", db_index=False
    )
    recipient = models.ForeignKey(
        Recipient, on_delete=models.CASCADE, related_name="list_memberships", db_index=False
    )
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["recipient_list", "recipient"], name="one_membership_per_list"
            )
        ]
        indexes = [models.Index(fields=["recipient"], name="listmember_recipient")]

    def __str__(self) -> str:
        return f"recipient {self.recipient_id} on list {self.recipient_list_id}"


class Segment(models.Model):
    """A saved audience of a unit: lists of one audience (I3) narrowed by conditions on
    recipient fields and attributes (see recipients.segments for their form)."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    unit = models.ForeignKey(SenderUnit, on_delete=models.PROTECT, related_name="segments")
    name = models.CharField(max_length=200)
    audience = models.CharField(max_length=10, choices=Audience.choices)
    lists = models.ManyToManyField(RecipientList, related_name="segments")
    conditions = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = UnitScopedQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["unit", "name"], name="segment_name_unique_per_unit")
        ]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def audit_label(self) -> str:
        return f"segment {self.code}"


# Imports -------------------------------------------------------------------------------------


class ImportMode(models.TextChoices):
    ADD = "add", "Add to the list, granting nothing"
    GRANT = "grant", "Add or update recipients and grant the DM types ticked"
    OPT_OUT = "opt_out", "Opt out: withdraw the DM types ticked for the addresses in the file"
    SYNC = "sync", "Directory sync: the list becomes the people in the file"


class ImportStatus(models.TextChoices):
    UPLOADED = "uploaded", "Uploaded, not started"
    QUEUED = "queued", "Waiting for a worker"
    READING = "reading", "Reading the file"
    APPLYING = "applying", "Saving"
    SUCCEEDED = "succeeded", "Done"
    FAILED = "failed", "Failed: nothing was changed"

    @classmethod
    def running(cls) -> list[str]:
        return [cls.QUEUED, cls.READING, cls.APPLYING]


def _import_upload_to(job: ImportJob, filename: str) -> str:
    # Not the file's own name, which may name a person (I9): it is kept in `file_name` alone,
    # where erasure finds it.
    suffix = (
        re.sub(r"[^a-z0-9]", "", filename.rpartition(".")[2].lower())[:8] if "." in filename else ""
    )
    return f"imports/{job.unit_id}/{job.code}/upload" + (f".{suffix}" if suffix else "")


class ImportJob(models.Model):
    """One import of a file into a list: who, when, which file, mode, DM types, evidence, counts.

    The uploaded file is kept only until the import has run; the rejected rows stay downloadable.
    """

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    unit = models.ForeignKey(SenderUnit, on_delete=models.PROTECT, related_name="+")
    recipient_list = models.ForeignKey(
        RecipientList, on_delete=models.CASCADE, related_name="import_jobs"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    file = models.FileField(upload_to=_import_upload_to, max_length=400, blank=True)
    file_name = models.CharField(max_length=255)
    file_size = models.BigIntegerField(default=0)
    file_format = models.CharField(max_length=4, help_text="csv or xlsx")
    encoding = models.CharField(max_length=20, blank=True)
    encoding_detected = models.BooleanField(default=True)
    delimiter = models.CharField(max_length=1, blank=True)
    has_header = models.BooleanField(default=True)
    columns = models.JSONField(default=list, blank=True, help_text="Column names of the file.")
    mapping = models.JSONField(default=list, blank=True, help_text="What each column becomes.")
    default_category = models.CharField(max_length=10, blank=True)

    mode = models.CharField(max_length=10, choices=ImportMode.choices, default=ImportMode.ADD)
    dm_types = models.ManyToManyField("consent.DMType", blank=True, related_name="+")
    attested = models.BooleanField(default=False)
    evidence = models.TextField(blank=True)

    status = models.CharField(
        max_length=10, choices=ImportStatus.choices, default=ImportStatus.UPLOADED
    )
    error = models.TextField(blank=True)
    lease_until = models.DateTimeField(
        null=True,
        blank=True,
        help_text="While it runs: when the worker must next show life, or the job is given up.",
    )
    rows_total = models.PositiveIntegerField(null=True, blank=True)
    rows_read = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    updated_count = models.PositiveIntegerField(default=0)
    added_count = models.PositiveIntegerField(default=0)
    removed_count = models.PositiveIntegerField(default=0)
    granted_count = models.PositiveIntegerField(default=0)
    withdrawn_count = models.PositiveIntegerField(default=0)
    duplicate_count = models.PositiveIntegerField(default=0)
    invalid_count = models.PositiveIntegerField(default=0)
    suppressed_count = models.PositiveIntegerField(default=0)
    unknown_count = models.PositiveIntegerField(default=0)
    rejected_file = models.FileField(upload_to=_import_upload_to, max_length=400, blank=True)

    objects = UnitScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["recipient_list", "-created_at"], name="importjob_list")]

    def __str__(self) -> str:
        return f"import {self.code} ({self.get_status_display()})"

    @property
    def audit_label(self) -> str:
        return f"import {self.code}"

    @property
    def is_running(self) -> bool:
        return self.status in ImportStatus.running()

    @property
    def delimiter_name(self) -> str:
        return {"\t": "tabs", ";": "semicolons"}.get(self.delimiter, "commas")

    @property
    def rejected_count(self) -> int:
        return (
            self.duplicate_count + self.invalid_count + self.suppressed_count + self.unknown_count
        )
