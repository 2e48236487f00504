"""Create the demo units, administrator and approver (idempotent) and print their logins."""

from django.core.management.base import BaseCommand

from mlm.demo import demo_setup


class Command(BaseCommand):
    help = "Create the demo data once and print the demo logins (editor, then approver)."

    def handle(self, *args, **options) -> None:
        # The first line keeps the format `make run` and its test read the login from.
        for login in demo_setup():
            state = "created" if login.created else "reused"
            self.stdout.write(
                self.style.SUCCESS(
                    f"{login.label} ({state}): user name {login.username}  "
                    f"password {login.password}"
                )
            )
