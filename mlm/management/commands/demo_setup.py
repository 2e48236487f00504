"""Create the demo units and administrator (idempotent) and print the login."""

from django.core.management.base import BaseCommand

from mlm.demo import demo_setup


class Command(BaseCommand):
    help = "Create the demo data once and print the demo administrator's login."

    def handle(self, *args, **options) -> None:
        login = demo_setup()
        state = "created" if login.created else "reused"
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo administrator ({state}): user name {login.username}  "
                f"password {login.password}"
            )
        )
