"""Indexes for the recipient search pages (recipients.selectors), on a million recipients.

- Trigram GIN indexes for part of the address or a name in any case: `icontains` on PostgreSQL
  compiles to UPPER(column::text) LIKE UPPER('%term%'), so they are on exactly that expression.
- B-tree indexes that give the address order within one category or one status: pages are
  read in address order, and a rare status (bounced) would otherwise walk every address.

Built CONCURRENTLY, so that a large installation keeps importing and sending.
"""

from django.db import migrations

TRIGRAM_COLUMNS = ("email", "first_name", "last_name")
ORDERED = {
    "recipient_unit_cat_email": "(unit_id, category, email)",
    "recipient_unit_status_email": "(unit_id, status, email)",
}


def create(apps, schema_editor):
    for name, columns in ORDERED.items():
        schema_editor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON recipients_recipient {columns}"
        )
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for column in TRIGRAM_COLUMNS:
        schema_editor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS recipient_{column}_trgm "
            f"ON recipients_recipient USING gin (UPPER({column}::text) gin_trgm_ops)"
        )


def drop(apps, schema_editor):
    names = [*ORDERED, *(f"recipient_{column}_trgm" for column in TRIGRAM_COLUMNS)]
    for name in names:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("recipients", "0001_initial")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
