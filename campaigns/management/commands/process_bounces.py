"""Read bounce messages (delivery status notifications) from a Maildir or an IMAP folder and
record them: hard bounces suppress the address for every unit, soft ones are counted."""

from __future__ import annotations

import imaplib
import mailbox
import os
import ssl

from django.core.management.base import BaseCommand, CommandError, CommandParser

from campaigns.bounces import BounceSource, ImapSource, MaildirSource, bounces_process


class Command(BaseCommand):
    help = (
        "Record the bounces (RFC 3464 delivery status notifications) in a Maildir or an IMAP "
        "folder; processed messages are marked seen, anything else is left unread."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--maildir", help="Path of the Maildir that receives the bounces.")
        parser.add_argument("--imap-host", help="IMAP server (TLS, port 993 unless --imap-port).")
        parser.add_argument("--imap-port", type=int, default=993)
        parser.add_argument("--imap-user", help="IMAP user name.")
        parser.add_argument(
            "--imap-password-env",
            default="MLM_BOUNCE_IMAP_PASSWORD",
            help="Name of the environment variable that holds the IMAP password (never on the "
            "command line). Default: MLM_BOUNCE_IMAP_PASSWORD.",
        )
        parser.add_argument("--imap-folder", default="INBOX", help="Folder to read (INBOX).")
        parser.add_argument(
            "--imap-move-to", default="", help="Move processed messages to this folder."
        )
        parser.add_argument(
            "--imap-cafile",
            default="",
            help="PEM file of the CA certificates to trust for the IMAP server (default: the "
            "system's), e.g. the institution's own CA.",
        )

    def handle(self, *args, **options) -> None:
        source = self._source(options)
        try:
            run = bounces_process(source=source)
        finally:
            source.close()
        for warning in run.warnings:
            self.stderr.write(self.style.WARNING(warning))
        self.stdout.write(
            f"{source.name}: {run.read} read, {run.reports} delivery reports with "
            f"{run.bounces} bounces ({run.stored} new, {run.duplicates} seen before, "
            f"{run.unmatched} not ours), {run.left} other messages left unread."
        )

    def _source(self, options) -> BounceSource:
        if bool(options["maildir"]) == bool(options["imap_host"]):
            raise CommandError("Give either --maildir PATH or --imap-host HOST.")
        if options["maildir"]:
            try:
                return MaildirSource(options["maildir"])
            except mailbox.NoSuchMailboxError as error:
                raise CommandError(f"No Maildir at {error}.") from None
        if not options["imap_user"]:
            raise CommandError("--imap-host needs --imap-user.")
        password = os.environ.get(options["imap_password_env"], "")
        if not password:
            raise CommandError(
                f"Set the IMAP password in the environment variable {options['imap_password_env']}."
            )
        try:
            context = ssl.create_default_context(cafile=options["imap_cafile"] or None)
            return ImapSource(
                host=options["imap_host"],
                port=options["imap_port"],
                user=options["imap_user"],
                password=password,
                folder=options["imap_folder"],
                move_to=options["imap_move_to"],
                ssl_context=context,
            )
        except (OSError, ssl.SSLError, imaplib.IMAP4.error) as error:
            raise CommandError(f"IMAP {options['imap_host']}: {error}") from None
