"""Drop indexes that every import paid an entry per row for and no query uses
(bench/import_csv.py):

- recipients_recipient.unit_id: recipient_email_unique_per_unit (unit_id, email) and three
  other indexes lead with it;
- the LIKE (varchar_pattern_ops) index that db_index gave email_hash on PostgreSQL: nobody
  searches hashes by prefix. The B-tree stays, renamed to its Meta name;
- recipients_listmembership.recipient_id: listmember_recipient is the same index;
- recipients_listmembership.recipient_list_id: one_membership_per_list leads with it.

Only the indexes go. AlterField would also drop and re-add each foreign key whose db_index
changed, re-checking every row with the tables locked; the constraints stay as they are.
"""

import django.db.models.deletion
from django.db import migrations, models

FIELD_INDEXES = {
    "recipients_recipient_unit_id_bb322b54": ("recipients_recipient", "unit_id"),
    "recipients_listmembership_recipient_id_2359d0f4": (
        "recipients_listmembership",
        "recipient_id",
    ),
    "recipients_listmembership_recipient_list_id_8d08f8fb": (
        "recipients_listmembership",
        "recipient_list_id",
    ),
}
EMAIL_HASH = "recipients_recipient_email_hash_5d1a8b3e"


def email_hash_btree_only(apps, schema_editor):
    schema_editor.execute(f'DROP INDEX IF EXISTS "{EMAIL_HASH}_like"')
    schema_editor.execute(f'ALTER INDEX "{EMAIL_HASH}" RENAME TO "recipient_email_hash"')


def email_hash_as_before(apps, schema_editor):
    schema_editor.execute(f'ALTER INDEX "recipient_email_hash" RENAME TO "{EMAIL_HASH}"')
    schema_editor.execute(
        f'CREATE INDEX "{EMAIL_HASH}_like" ON "recipients_recipient" '
        '("email_hash" varchar_pattern_ops)'
    )


class Migration(migrations.Migration):
    dependencies = [
        ("mlm", "0002_sending_domain"),
        ("recipients", "0003_importjob"),
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
                migrations.RunPython(email_hash_btree_only, email_hash_as_before),
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="listmembership",
                    name="recipient",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="list_memberships",
                        to="recipients.recipient",
                    ),
                ),
                migrations.AlterField(
                    model_name="listmembership",
                    name="recipient_list",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="memberships",
                        to="recipients.recipientlist",
                    ),
                ),
                migrations.AlterField(
                    model_name="recipient",
                    name="email_hash",
                    field=models.CharField(
                        help_text="Keyed hash of the address (suppression match).", max_length=64
                    ),
                ),
                migrations.AlterField(
                    model_name="recipient",
                    name="unit",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="recipients",
                        to="mlm.senderunit",
                    ),
                ),
                migrations.AddIndex(
                    model_name="recipient",
                    index=models.Index(fields=["email_hash"], name="recipient_email_hash"),
                ),
            ],
        ),
    ]
