"""Drop foreign-key indexes that every import paid an entry per row for and no query uses
(bench/import_csv.py):

- consent_consentevent.recipient_id: consent_recipient_latest leads with it;
- consent_consentevent.dm_type_id, .notice_id, .actor_id: the ledger is never read by them,
  DM types and notices are never deleted (so no PROTECT looks events up by them), and actor
  has no constraint (DO_NOTHING);
- consent_subscription.dm_type_id: subscription_by_type leads with it;
- consent_subscription.event_id: never read by it; events are never deleted (I4).

Kept: the unit_id indexes (the reports read the ledger and the subscriptions by unit) and
consent_subscription.recipient_id (the partial unique indexes cannot serve `recipient_id = X`).

Only the indexes go. AlterField would also drop and re-add each foreign key whose db_index
changed, re-checking every row with the tables locked; the constraints stay as they are.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

FIELD_INDEXES = {
    "consent_consentevent_recipient_id_bf774ee2": ("consent_consentevent", "recipient_id"),
    "consent_consentevent_dm_type_id_00c3b624": ("consent_consentevent", "dm_type_id"),
    "consent_consentevent_notice_id_fabcd5ea": ("consent_consentevent", "notice_id"),
    "consent_consentevent_actor_id_701fbb20": ("consent_consentevent", "actor_id"),
    "consent_subscription_dm_type_id_51590b08": ("consent_subscription", "dm_type_id"),
    "consent_subscription_event_id_aacbfe07": ("consent_subscription", "event_id"),
}


class Migration(migrations.Migration):
    dependencies = [
        ("consent", "0006_subscription_covering_indexes"),
        ("recipients", "0003_importjob"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    [f'DROP INDEX IF EXISTS "{name}"' for name in FIELD_INDEXES],
                    [
                        f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" ("{column}")'
                        for name, (table, column) in FIELD_INDEXES.items()
                    ],
                ),
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="consentevent",
                    name="actor",
                    field=models.ForeignKey(
                        blank=True,
                        db_constraint=False,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                migrations.AlterField(
                    model_name="consentevent",
                    name="dm_type",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="consent.dmtype",
                    ),
                ),
                migrations.AlterField(
                    model_name="consentevent",
                    name="notice",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="consent.dmtypenotice",
                    ),
                ),
                migrations.AlterField(
                    model_name="consentevent",
                    name="recipient",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="consent_events",
                        to="recipients.recipient",
                    ),
                ),
                migrations.AlterField(
                    model_name="subscription",
                    name="dm_type",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="subscriptions",
                        to="consent.dmtype",
                    ),
                ),
                migrations.AlterField(
                    model_name="subscription",
                    name="event",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="consent.consentevent",
                    ),
                ),
            ],
        ),
    ]
