"""One identity for an address in every refusal (I1, I6, I9): suppression, erasure, withdrawal
and "already a recipient" match every case variant of an address, local part included, after
IDNA normalisation of the domain; the address is shown as first written."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from consent.models import Channel, Subscription, Suppression, SuppressionReason
from consent.selectors import sendable
from consent.services import grant, suppress, withdraw_everywhere
from recipients.addresses import address_hash, address_key, normalise_address
from recipients.models import Audience, Category, ImportMode, Recipient, RecipientStatus
from recipients.rights import recipient_erase
from recipients.services import (
    ErasedAddress,
    list_add_recipient,
    list_create,
    recipient_upsert,
)
from tests.imports.helpers import csv_bytes, dm_types, run_import
from tests.personas import make_world

ERIN = "Erin.Subject@Example.ORG"
VARIANTS = ["ERIN.SUBJECT@example.org", "erin.subject@example.org", "Erin.Subject@EXAMPLE.org"]


def _case_sensitive_hash(address: str) -> str:
    """The hash as the code made it before addresses matched in any case."""
    key = settings.MLM_ADDRESS_HASH_KEY.encode()
    return hmac.new(key, address.encode(), hashlib.sha256).hexdigest()


@pytest.fixture
def news(world):
    return dm_types(world.unit, "news")[0]


def _mailable(world, dm_type) -> set[str]:
    chosen = sendable(unit=world.unit, dm_type=dm_type, audience=Audience.EXTERNAL)
    return set(chosen.values_list("email", flat=True))


def _grant_by_import(visitors, news, rows, world):
    return run_import(
        visitors,
        csv_bytes([["email"], *([row] for row in rows)]),
        by=world.alice,
        mode=ImportMode.GRANT,
        dm_types=[news],
        attested=True,
        evidence="Signed up at the open day",
        default_category=Category.EXTERNAL,
    )


def test_the_identity_is_the_whole_address_in_lower_case_after_idna():
    assert address_key(normalise_address("Erin.Subject@Exämple.ORG")) == (
        "erin.subject@xn--exmple-cua.org"
    )
    hashes = {address_hash(normalise_address(a)) for a in [ERIN, *VARIANTS]}
    assert len(hashes) == 1


def test_the_hash_is_the_keyed_hmac_sha256_of_the_identity():
    assert address_hash(ERIN) == _case_sensitive_hash(ERIN.lower())
    assert address_hash(ERIN) != _case_sensitive_hash(ERIN)


def test_erasure_refuses_every_case_variant_afterwards(world, visitors, news):
    """The review's case: after erasing Erin.Subject@Example.ORG, imports of case variants
    created and granted new recipients, and both were mailable."""
    recipient, _ = list_add_recipient(
        recipient_list=visitors, email=ERIN, category=Category.EXTERNAL, by=world.alice
    )
    recipient_erase(recipient=recipient, by=world.alice)

    job = _grant_by_import(visitors, news, VARIANTS, world)

    assert job.created_count == 0 and job.granted_count == 0
    assert _mailable(world, news) == set()
    for variant in VARIANTS:
        with pytest.raises(ErasedAddress):
            recipient_upsert(
                unit=world.other_unit, email=variant, category=Category.EXTERNAL, by=None
            )


def test_a_suppression_covers_every_case_variant(world, visitors, news):
    suppress(email="erin.subject@example.org", unit=world.unit, reason=SuppressionReason.MANUAL)
    job = _grant_by_import(visitors, news, [ERIN], world)
    assert job.created_count == 0 and job.suppressed_count == 1
    assert _mailable(world, news) == set()


def test_a_case_variant_is_the_recipient_the_unit_already_has(world, visitors, news):
    first, created = recipient_upsert(
        unit=world.unit, email=ERIN, category=Category.EXTERNAL, by=None
    )
    again, created_again = recipient_upsert(
        unit=world.unit, email=VARIANTS[1], category=Category.EXTERNAL, first_name="Erin", by=None
    )
    assert created and not created_again and again.pk == first.pk
    again.refresh_from_db()
    assert (again.email, again.first_name) == ("Erin.Subject@example.org", "Erin")

    job = _grant_by_import(visitors, news, VARIANTS, world)
    assert job.created_count == 0 and job.granted_count == 1 and job.duplicate_count == 2
    assert Recipient.objects.for_unit(world.unit).count() == 1


def test_a_withdrawal_from_a_case_variant_wins_over_the_grant(world, visitors, news):
    _grant_by_import(visitors, news, [ERIN], world)
    other_news = dm_types(world.other_unit, "news")[0]
    elsewhere, _ = recipient_upsert(
        unit=world.other_unit, email=VARIANTS[0], category=Category.EXTERNAL, by=None
    )
    grant(recipient=elsewhere, dm_types=[other_news], channel=Channel.IMPORT, evidence="Form")
    assert _mailable(world, news) == {"Erin.Subject@example.org"}

    withdraw_everywhere(email=VARIANTS[1], channel=Channel.ADMIN, evidence="Phoned in")

    assert _mailable(world, news) == set()
    assert not sendable(unit=world.other_unit, dm_type=other_news, audience=Audience.EXTERNAL)
    states = Subscription.objects.filter(dm_type__isnull=True).values_list("state", flat=True)
    assert sorted(states) == ["withdrawn", "withdrawn"]


def test_an_opt_out_import_withdraws_a_case_variant(world, visitors, news):
    _grant_by_import(visitors, news, [ERIN], world)
    job = run_import(
        visitors,
        csv_bytes([["email"], [VARIANTS[0]]]),
        by=world.alice,
        mode=ImportMode.OPT_OUT,
        dm_types=[news],
    )
    assert job.withdrawn_count == 1 and job.unknown_count == 0
    assert _mailable(world, news) == set()


# The data migration ----------------------------------------------------------------------------

BEFORE = [("recipients", "0005_import_lease"), ("consent", "0008_bilingual_names")]


def _old_recipient_hashes() -> None:
    """Give recipients the case-sensitive hashes the code made before recipients 0006."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, email FROM recipients_recipient")
        for pk, email in cursor.fetchall():
            cursor.execute(
                "UPDATE recipients_recipient SET email_hash = %s WHERE id = %s",
                [_case_sensitive_hash(email), pk],
            )


@pytest.mark.django_db(transaction=True)
def test_the_migration_rehashes_and_old_suppressions_still_match():
    world = make_world()
    news = dm_types(world.unit, "news")[0]
    visitors = list_create(unit=world.unit, name="Visitors", audience=Audience.EXTERNAL, by=None)
    kept_address = suppress(email="Kept.Address@example.org", unit=None, reason="manual")
    held, _ = list_add_recipient(
        recipient_list=visitors, email="Held.Person@example.org", category="external", by=None
    )
    grant(recipient=held, dm_types=[news], channel=Channel.IMPORT, evidence="Form, 2024")
    hash_only = suppress(email="Held.Person@example.org", unit=world.unit, reason="manual")
    gone = suppress(
        email="Gone.Person@example.org", unit=None, reason="erasure", keep_address=False
    )

    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    _old_recipient_hashes()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE consent_suppression SET email_hash = %s WHERE id = %s",
            [_case_sensitive_hash("Kept.Address@example.org"), kept_address.pk],
        )
        # Erasure keeps a hash alone; this one's address is still held by a recipient.
        cursor.execute(
            "UPDATE consent_suppression SET email = '', email_hash = %s WHERE id = %s",
            [_case_sensitive_hash("Held.Person@example.org"), hash_only.pk],
        )
        cursor.execute(
            "UPDATE consent_suppression SET email_hash = %s WHERE id = %s",
            [_case_sensitive_hash("Gone.Person@example.org"), gone.pk],
        )
        # A case variant of the held person, as the old code let an import create.
        cursor.execute(
            "INSERT INTO recipients_recipient (code, unit_id, email, email_hash, first_name, "
            "last_name, category, locale, attributes, status, created_at, updated_at) "
            "SELECT gen_random_uuid(), unit_id, 'held.person@example.org', %s, 'Variant', '', "
            "category, '', '{}', status, now(), now() FROM recipients_recipient WHERE id = %s "
            "RETURNING id",
            [_case_sensitive_hash("held.person@example.org"), held.pk],
        )
        (variant_id,) = cursor.fetchone()
        cursor.execute(
            "INSERT INTO recipients_listmembership (recipient_list_id, recipient_id, added_at) "
            "VALUES (%s, %s, now())",
            [visitors.pk, variant_id],
        )

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    # Addresses it knows are re-hashed; the variant became the recipient it always was.
    held.refresh_from_db()
    assert held.email_hash == address_hash("held.person@example.org")
    assert not Recipient.objects.filter(pk=variant_id).exists()
    assert list(visitors.memberships.values_list("recipient_id", flat=True)) == [held.pk]
    assert Suppression.objects.get(pk=kept_address.pk).email_hash == address_hash(
        "kept.address@example.org"
    )
    hash_only.refresh_from_db()
    assert hash_only.email_hash == held.email_hash and not hash_only.case_sensitive
    assert _mailable(world, news) == set()  # the held person stays suppressed in their unit

    # An erased address nobody holds any more keeps its hash, and still matches its spelling...
    gone.refresh_from_db()
    assert gone.case_sensitive and gone.email_hash == _case_sensitive_hash(
        "Gone.Person@example.org"
    )
    job = _grant_by_import(visitors, news, ["Gone.Person@example.org"], world)
    assert job.created_count == 0 and job.suppressed_count == 1
    # ...and from then on every case variant of it.
    gone.refresh_from_db()
    assert not gone.case_sensitive
    assert gone.email_hash == address_hash("gone.person@example.org")
    with pytest.raises(ErasedAddress):
        recipient_upsert(
            unit=world.other_unit, email="GONE.PERSON@example.org", category="external", by=None
        )
    assert Recipient.objects.filter(status=RecipientStatus.ACTIVE).count() == 1
