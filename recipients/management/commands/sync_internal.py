"""`manage.py sync_internal <unit> <file>`: the institution's directory export into an internal
list — staff, students and alumni added or updated, people who left taken off the list."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from mlm.models import SenderUnit
from recipients.import_services import directory_sync
from recipients.models import Audience, Category, ImportStatus, RecipientList
from recipients.services import list_create


class Command(BaseCommand):
    help = (
        "Upsert staff, students and alumni from the directory export (CSV or XLSX, with a "
        "header: email, first name, last name, category, …) into an internal list of the unit; "
        "members who are not in the file leave the list, their consent history untouched. "
        "Grants nothing."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("unit", help="The unit's slug, as in /units/<slug>/.")
        parser.add_argument("file", type=Path, help="The directory export (CSV or XLSX).")
        parser.add_argument(
            "--list",
            dest="list_name",
            default="Institution directory",
            help="Name of the internal list to sync (created if missing). Default: %(default)s.",
        )
        parser.add_argument(
            "--category",
            default="",
            choices=["", *Category.of_audience(Audience.INTERNAL)],
            help="Category of rows whose category cell is empty.",
        )

    def handle(self, *args, unit: str, file: Path, list_name: str, category: str, **options):
        sender = SenderUnit.objects.filter(slug=unit).first()
        if sender is None:
            raise CommandError(f"No unit with the slug {unit!r}.")
        if not file.is_file():
            raise CommandError(f"{file} is not a file.")
        recipient_list = RecipientList.objects.for_unit(sender).filter(name=list_name).first()
        if recipient_list is None:
            recipient_list = list_create(
                unit=sender, name=list_name, audience=Audience.INTERNAL, by=None
            )
            self.stdout.write(f"Created the internal list “{list_name}”.")
        try:
            with file.open("rb") as stream:
                job = directory_sync(
                    recipient_list=recipient_list,
                    upload=File(stream, name=file.name),
                    default_category=category,
                )
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from None
        page = settings.SITE_URL + reverse(
            "import_job", args=[sender.slug, recipient_list.code, job.code]
        )
        if job.status != ImportStatus.SUCCEEDED:
            raise CommandError(f"{job.error} ({page})")
        self.stdout.write(
            f"Synced “{recipient_list.name}” of {sender.name}: {job.rows_read} rows read, "
            f"{job.created_count} created, {job.updated_count} updated, {job.added_count} added "
            f"to the list, {job.removed_count} taken off (left), {job.duplicate_count} "
            f"duplicates, {job.suppressed_count} suppressed, {job.invalid_count} invalid."
        )
        if job.rejected_count:
            self.stdout.write(f"Rejected rows: {page}")
