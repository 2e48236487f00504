"""One identity for an address: its keyed hash is made of the address in lower case, local part
included (recipients.addresses), and a unit holds one recipient per identity.

Data, in one transaction, before the constraint changes:

1. Suppressions are re-hashed. One kept as a hash alone (erasure keeps no address) gets its
   address back from a recipient whose hash still matches it; if none does, its address is gone
   for good, so it keeps its hash and is marked `case_sensitive`: it is re-hashed the day its
   address is seen again (consent.services.carry_case_sensitive_suppressions). Two suppressions
   of one scope that now share a hash become one; an erasure one wins, else the oldest.
2. Recipients are re-hashed; only addresses with a capital letter change.
3. Recipients of one unit that were case variants of one address become one, the oldest: the
   others' list memberships, consent events (the facts unchanged: the ledger trigger is lifted
   for this statement alone), current states (the later event wins, as it did for each) and
   deliveries move to it. A delivery of a campaign both variants received stays the oldest's;
   the other copy's row and its provider events go, as the person is one.
4. Deliveries and their events take the new hash of their recipient, unless it was erased.

The hash is computed here, not imported, so that this migration does not change with the code.
"""

import hashlib
import hmac

from django.conf import settings
from django.db import migrations, models

CHUNK = 5_000


def _hash(text: str) -> str:
    key = settings.MLM_ADDRESS_HASH_KEY.encode()
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def _rehash_suppressions(apps, cursor) -> None:
    Suppression = apps.get_model("consent", "Suppression")
    Recipient = apps.get_model("recipients", "Recipient")
    strength = {"erasure": 0}
    for suppression in Suppression.objects.order_by("created_at", "pk").iterator(CHUNK):
        address = suppression.email
        if not address:
            holder = Recipient.objects.filter(email_hash=suppression.email_hash).first()
            address = holder.email if holder is not None else ""
        if not address:
            Suppression.objects.filter(pk=suppression.pk).update(case_sensitive=True)
            continue
        digest = _hash(address.lower())
        if digest == suppression.email_hash:
            continue
        twin = (
            Suppression.objects.filter(unit_id=suppression.unit_id, email_hash=digest)
            .exclude(pk=suppression.pk)
            .first()
        )
        if twin is None:
            Suppression.objects.filter(pk=suppression.pk).update(email_hash=digest)
            continue
        keep, drop = sorted(
            (twin, suppression), key=lambda s: (strength.get(s.reason, 1), s.created_at, s.pk)
        )
        if keep.reason == "erasure":
            keep.email = ""
        keep.email_hash = digest
        drop.delete()
        keep.save(update_fields=["email", "email_hash"])


def _rehash_recipients(apps, cursor) -> None:
    Recipient = apps.get_model("recipients", "Recipient")
    changed = Recipient.objects.extra(where=["email <> lower(email)"]).only("pk", "email")
    batch = []
    for recipient in changed.iterator(CHUNK):
        recipient.email_hash = _hash(recipient.email.lower())
        batch.append(recipient)
        if len(batch) == CHUNK:
            Recipient.objects.bulk_update(batch, ["email_hash"])
            batch = []
    Recipient.objects.bulk_update(batch, ["email_hash"])


MERGES = """
CREATE TEMP TABLE mlm_person ON COMMIT DROP AS
SELECT r.id AS recipient_id, k.keep AS person, r.id <> k.keep AS gone
FROM recipients_recipient r
JOIN (SELECT unit_id, email_hash, min(id) AS keep FROM recipients_recipient
      GROUP BY unit_id, email_hash HAVING count(*) > 1) k
  ON r.unit_id = k.unit_id AND r.email_hash = k.email_hash
"""

GONE = "(SELECT recipient_id FROM mlm_person WHERE gone)"

MERGE_STEPS = [
    # List memberships: the kept recipient joins the lists the others were on.
    """INSERT INTO recipients_listmembership (recipient_list_id, recipient_id, added_at)
       SELECT m.recipient_list_id, p.person, min(m.added_at)
       FROM recipients_listmembership m JOIN mlm_person p ON m.recipient_id = p.recipient_id
       WHERE p.gone GROUP BY m.recipient_list_id, p.person
       ON CONFLICT DO NOTHING""",
    f"DELETE FROM recipients_listmembership WHERE recipient_id IN {GONE}",
    # Current states: per DM type (or "all"), the row with the later event is the state.
    """DELETE FROM consent_subscription s
       USING mlm_person ps, consent_subscription o, mlm_person po
       WHERE s.recipient_id = ps.recipient_id AND o.recipient_id = po.recipient_id
         AND ps.person = po.person AND o.id <> s.id
         AND o.dm_type_id IS NOT DISTINCT FROM s.dm_type_id AND o.event_id > s.event_id""",
    """UPDATE consent_subscription s SET recipient_id = p.person FROM mlm_person p
       WHERE s.recipient_id = p.recipient_id AND p.gone""",
    # Consent events keep every fact; only the recipient they name becomes the kept one.
    "ALTER TABLE consent_consentevent DISABLE TRIGGER consent_event_no_update_delete",
    """UPDATE consent_consentevent e SET recipient_id = p.person FROM mlm_person p
       WHERE e.recipient_id = p.recipient_id AND p.gone""",
    "ALTER TABLE consent_consentevent ENABLE TRIGGER consent_event_no_update_delete",
    # Deliveries: one per campaign and person, the kept recipient's or else the first.
    """CREATE TEMP TABLE mlm_extra_delivery ON COMMIT DROP AS
       SELECT d.id FROM campaigns_delivery d JOIN mlm_person p ON d.recipient_id = p.recipient_id
       WHERE p.gone AND EXISTS (
         SELECT 1 FROM campaigns_delivery k JOIN mlm_person q ON k.recipient_id = q.recipient_id
         WHERE k.campaign_id = d.campaign_id AND q.person = p.person AND k.id <> d.id
           AND (NOT q.gone OR k.id < d.id))""",
    """DELETE FROM campaigns_deliveryevent
       WHERE delivery_id IN (SELECT id FROM mlm_extra_delivery)""",
    "DELETE FROM campaigns_delivery WHERE id IN (SELECT id FROM mlm_extra_delivery)",
    """UPDATE campaigns_delivery d SET recipient_id = p.person FROM mlm_person p
       WHERE d.recipient_id = p.recipient_id AND p.gone""",
    f"DELETE FROM recipients_recipient WHERE id IN {GONE}",
]

DELIVERY_HASHES = [
    """UPDATE campaigns_delivery d SET email_hash = r.email_hash FROM recipients_recipient r
       WHERE d.recipient_id = r.id AND r.status <> 'erased' AND d.email_hash <> r.email_hash""",
    """UPDATE campaigns_deliveryevent e SET email_hash = d.email_hash FROM campaigns_delivery d
       WHERE e.delivery_id = d.id AND e.email_hash <> '' AND e.email_hash <> d.email_hash""",
]


def one_identity(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        _rehash_suppressions(apps, cursor)
        _rehash_recipients(apps, cursor)
        cursor.execute(MERGES)
        for statement in MERGE_STEPS:
            cursor.execute(statement)
        for statement in DELIVERY_HASHES:
            cursor.execute(statement)
        # Check the deferred foreign keys now: the table cannot be altered with checks pending.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


class Migration(migrations.Migration):
    dependencies = [
        ("mlm", "0004_bilingual_unit"),
        ("recipients", "0005_import_lease"),
        ("consent", "0009_suppression_case_sensitive"),
        ("campaigns", "0007_body_format"),
    ]

    operations = [
        # Backwards, hashes stay as they are: a case-sensitive hash cannot be made again.
        migrations.RunPython(one_identity, migrations.RunPython.noop),
        migrations.RemoveConstraint(
            model_name="recipient",
            name="recipient_email_unique_per_unit",
        ),
        migrations.AlterField(
            model_name="recipient",
            name="email",
            field=models.CharField(help_text="As first written (the display form).", max_length=320),
        ),
        migrations.AlterField(
            model_name="recipient",
            name="email_hash",
            field=models.CharField(
                help_text="Keyed hash of the address in any case: its identity (unique per "
                "unit, and the suppression match).",
                max_length=64,
            ),
        ),
        migrations.AddIndex(
            model_name="recipient",
            index=models.Index(fields=["unit", "email"], name="recipient_unit_email"),
        ),
        migrations.AddConstraint(
            model_name="recipient",
            constraint=models.UniqueConstraint(
                fields=("unit", "email_hash"), name="recipient_address_unique_per_unit"
            ),
        ),
    ]
