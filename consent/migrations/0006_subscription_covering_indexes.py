"""`sendable` (I1) reads subscriptions from indexes alone: state and event join the by-type
index, and on PostgreSQL the "all DM types" unique index carries them too (INCLUDE), with the
same uniqueness. Measured by bench/audience.py."""

from django.db import migrations, models

COVERING = """
DROP INDEX IF EXISTS one_all_types_subscription;
CREATE UNIQUE INDEX one_all_types_subscription ON consent_subscription (recipient_id)
    INCLUDE (event_id, state) WHERE dm_type_id IS NULL;
"""

PLAIN = """
DROP INDEX IF EXISTS one_all_types_subscription;
CREATE UNIQUE INDEX one_all_types_subscription ON consent_subscription (recipient_id)
    WHERE dm_type_id IS NULL;
"""


def covering(apps, schema_editor):
    schema_editor.execute(COVERING)


def plain(apps, schema_editor):
    schema_editor.execute(PLAIN)


class Migration(migrations.Migration):
    dependencies = [("consent", "0005_subscription_request")]

    operations = [
        migrations.RemoveIndex(model_name="subscription", name="subscription_by_type"),
        migrations.AddIndex(
            model_name="subscription",
            index=models.Index(
                fields=["dm_type", "recipient", "event", "state"], name="subscription_by_type"
            ),
        ),
        migrations.RunPython(covering, plain),
    ]
