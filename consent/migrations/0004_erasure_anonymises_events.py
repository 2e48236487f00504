"""The ledger trigger lets erasure (I9) anonymise an erased recipient's events, and nothing else.

Under the transaction-local flag `mlm.erasure = 'on'` (set only by
consent.erasure.anonymise_events) an UPDATE may clear the IP address and user agent and replace
the evidence by the fixed marker '[erased]', for events of a recipient already marked erased;
every other column must stay as it was. DELETE is always refused, TRUNCATE only passes under the
test-only maintenance flag of 0003 (I4).
"""

from django.db import migrations

FUNCTION = """
CREATE OR REPLACE FUNCTION consent_event_is_append_only() RETURNS trigger AS $$
BEGIN
    -- TRUNCATE only under an explicit maintenance flag, which the application never sets:
    -- test databases are emptied this way between transactional tests.
    IF TG_OP = 'TRUNCATE' AND current_setting('mlm.ledger_maintenance', true) = 'on' THEN
        RETURN NULL;
    END IF;
    -- Erasure (I9): personal data leaves an erased recipient's events; the facts stay.
    IF TG_OP = 'UPDATE'
        AND current_setting('mlm.erasure', true) = 'on'
        AND NEW.ip_address IS NULL
        AND NEW.user_agent = ''
        AND (NEW.evidence = OLD.evidence OR NEW.evidence = '[erased]')
        AND to_jsonb(NEW) - 'ip_address' - 'user_agent' - 'evidence'
            = to_jsonb(OLD) - 'ip_address' - 'user_agent' - 'evidence'
        AND EXISTS (
            SELECT 1 FROM recipients_recipient r
            WHERE r.id = OLD.recipient_id AND r.status = 'erased'
        )
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'consent events are append-only: %% refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""

PREVIOUS = """
CREATE OR REPLACE FUNCTION consent_event_is_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' AND current_setting('mlm.ledger_maintenance', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'consent events are append-only: %% refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""


def forward(apps, schema_editor):
    schema_editor.execute(FUNCTION)


def backward(apps, schema_editor):
    schema_editor.execute(PREVIOUS)


class Migration(migrations.Migration):
    dependencies = [
        ("consent", "0003_ledger_triggers"),
        ("recipients", "0001_initial"),
    ]

    operations = [migrations.RunPython(forward, backward)]
