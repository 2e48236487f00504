"""PostgreSQL refuses UPDATE, DELETE and TRUNCATE of consent events (I4, second line of defence)."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION consent_event_is_append_only() RETURNS trigger AS $$
BEGIN
    -- TRUNCATE only under an explicit maintenance flag, which the application never sets:
    -- test databases are emptied this way between transactional tests.
    IF TG_OP = 'TRUNCATE' AND current_setting('mlm.ledger_maintenance', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'consent events are append-only: %% refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER consent_event_no_update_delete
    BEFORE UPDATE OR DELETE ON consent_consentevent
    FOR EACH ROW EXECUTE FUNCTION consent_event_is_append_only();

CREATE TRIGGER consent_event_no_truncate
    BEFORE TRUNCATE ON consent_consentevent
    FOR EACH STATEMENT EXECUTE FUNCTION consent_event_is_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS consent_event_no_truncate ON consent_consentevent;
DROP TRIGGER IF EXISTS consent_event_no_update_delete ON consent_consentevent;
DROP FUNCTION IF EXISTS consent_event_is_append_only();
"""


def create(apps, schema_editor):
    schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("consent", "0002_initial")]

    operations = [migrations.RunPython(create, drop)]
