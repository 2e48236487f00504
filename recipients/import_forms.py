"""Forms of the import pages: parse and label; the rules stay in recipients.import_services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from consent.models import DMType
from mlm.forms import Form
from recipients.importing.choices import (
    ATTESTATION,
    DELIMITERS,
    ENCODING_CHOICES,
    ENCODINGS,
    TARGETS,
)
from recipients.models import Audience, Category, ImportJob, ImportMode

DETECT = [("", "Detect")]


class ImportUploadForm(Form):
    file = forms.FileField(
        label="File (CSV or XLSX)",
        help_text="A spreadsheet saved as .xlsx, or a CSV or Excel “Unicode text” file.",
    )
    encoding = forms.ChoiceField(
        label="Text encoding",
        choices=DETECT + [(e, ENCODINGS[e]) for e in ENCODING_CHOICES],
        required=False,
        help_text="For CSV and text files. Detected from the file unless you choose.",
    )
    delimiter = forms.ChoiceField(
        label="Separator",
        choices=DETECT + list(DELIMITERS.items()),
        required=False,
        help_text="For CSV and text files: comma, semicolon or tab. Detected unless you choose.",
    )


class ImportRereadForm(Form):
    """Read the uploaded file again with another encoding, separator or header row."""

    encoding = forms.ChoiceField(
        label="Text encoding",
        choices=[(e, ENCODINGS[e]) for e in ENCODING_CHOICES],
        required=False,
    )
    delimiter = forms.ChoiceField(
        label="Separator", choices=list(DELIMITERS.items()), required=False
    )
    has_header = forms.BooleanField(label="The first row holds the column names", required=False)

    def __init__(self, *args: Any, job: ImportJob, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        encoding = {"utf-8-sig": "utf-8", "utf-16-le": "utf-16", "utf-16-be": "utf-16"}.get(
            job.encoding, job.encoding
        )
        self.fields["encoding"].initial = encoding
        self.fields["delimiter"].initial = job.delimiter
        self.fields["has_header"].initial = job.has_header
        if job.file_format != "csv":
            del self.fields["encoding"]
            del self.fields["delimiter"]


class ImportOptionsForm(Form):
    """What each column becomes and what the import does; nothing is ticked in advance (I2)."""

    mode = forms.ChoiceField(label="What the import does", widget=forms.RadioSelect)
    dm_types = forms.ModelMultipleChoiceField(
        label="DM types",
        queryset=DMType.objects.none(),
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text=_(
            "Granting (step 2 of the institution's procedure, the step that makes people "
            "mailable): the DM types these people agreed to. Opting out (step 3, after the "
            "grant): every DM type except the one they agreed to."
        ),
    )
    attested = forms.BooleanField(label=ATTESTATION, required=False)
    evidence = forms.CharField(
        label="Evidence of consent",
        widget=forms.Textarea(attrs={"rows": 2}),
        required=False,
        max_length=1000,
        help_text="Where and how they agreed, e.g. “Open-day registration form, consent clause "
        "v3, June 2025”. Stored on every consent event of this import.",
    )
    default_category = forms.ChoiceField(label="Category of rows without one", required=False)

    def __init__(self, *args: Any, job: ImportJob, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.job = job
        self.column_fields = []
        for index, name in enumerate(job.columns):
            key = f"column_{index}"
            self.fields[key] = forms.ChoiceField(
                label=name, choices=list(TARGETS.items()), initial=job.mapping[index]
            )
            self.column_fields.append(key)
        if job.mode == ImportMode.SYNC:
            modes = [ImportMode.SYNC]
        else:
            modes = [ImportMode.ADD, ImportMode.GRANT, ImportMode.OPT_OUT]
        self.fields["mode"].choices = [(m.value, m.label) for m in modes]
        self.fields["mode"].initial = modes[0].value
        self.fields["dm_types"].queryset = DMType.objects.for_unit(job.unit).filter(
            archived_at__isnull=True
        )
        audience = job.recipient_list.audience
        if audience == Audience.EXTERNAL:
            del self.fields["default_category"]
        else:
            self.fields["default_category"].choices = [("", "Use the category column")] + [
                (c, Category(c).label) for c in Category.of_audience(Audience.INTERNAL)
            ]
            del self.fields["attested"]
        if job.mode == ImportMode.SYNC:
            for name in ("dm_types", "evidence"):
                del self.fields[name]

    def columns(self) -> list[forms.BoundField]:
        return [self[key] for key in self.column_fields]

    def choices(self) -> dict[str, Any]:
        """The cleaned choices, named as import_start's arguments."""
        data = self.cleaned_data
        return {
            "mapping": [data[key] for key in self.column_fields],
            "mode": data["mode"],
            "dm_types": list(data.get("dm_types") or []),
            "attested": bool(data.get("attested")),
            "evidence": data.get("evidence", ""),
            "default_category": data.get("default_category", ""),
        }
