"""Applying a staged import in one transaction, with set-based statements: a failed import
changes nothing.

Consent is written exactly as consent.services.grant / withdraw would, row by row: one event per
(recipient, DM type) with its evidence and notice version, and the subscription row of each pair
set to that event (consent.ledger.record_bulk). Recipients are locked before their events are
written, so a recipient's event ids grow in commit order and "the latest event" stays the
highest id (I4).
"""

# ruff: noqa: S608
# The SQL here is assembled from model table names and constants; every value is a parameter.

from __future__ import annotations

import datetime

from django.db import connection

from consent.ledger import Who, record_bulk
from consent.models import Action, Channel
from mlm.inserts import insert_parts, table
from recipients.importing.limits import ImportFileError
from recipients.importing.staging import IDS, STAGE, StagedImport
from recipients.models import ImportMode, ListMembership, Recipient, RecipientStatus

_RECIPIENTS = table(Recipient)
_MEMBERSHIPS = table(ListMembership)

# A UUIDv7-style code (RFC 9562): the creation millisecond, then 74 random bits. A million new
# recipients then append to the end of the code index instead of touching random pages all over
# it, which thrashes PostgreSQL's buffers; the codes stay unguessable.
TIME_ORDERED_UUID = (
    "encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) placing "
    "substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3) "
    "FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid"
)

# The unit's recipients named in the file, locked in id order and noted as existing.
LOCK_EXISTING = (
    f"WITH locked AS (SELECT r.id FROM {_RECIPIENTS} AS r JOIN {STAGE} AS s "
    "ON r.unit_id = %s AND r.email_hash = s.email_hash WHERE s.problem IS NULL "
    "ORDER BY r.id FOR UPDATE OF r) "
    f"INSERT INTO {IDS} (recipient_id, created) SELECT id, false FROM locked"
)
# The same for those someone else added after LOCK_EXISTING looked.
LOCK_ADDED_MEANWHILE = (
    f"WITH locked AS (SELECT r.id FROM {_RECIPIENTS} AS r JOIN {STAGE} AS s "
    "ON r.unit_id = %s AND r.email_hash = s.email_hash WHERE s.problem IS NULL AND NOT "
    f"EXISTS (SELECT 1 FROM {IDS} AS i WHERE i.recipient_id = r.id) ORDER BY r.id "
    f"FOR UPDATE OF r) INSERT INTO {IDS} (recipient_id, created) "
    "SELECT id, false FROM locked"
)
# A profile's new values: a blank cell keeps what is there.
_PROFILE = {
    "first_name": "CASE WHEN s.first_name <> '' THEN s.first_name ELSE r.first_name END",
    "last_name": "CASE WHEN s.last_name <> '' THEN s.last_name ELSE r.last_name END",
    "locale": "CASE WHEN s.locale <> '' THEN s.locale ELSE r.locale END",
    "category": "s.category",
    "attributes": "r.attributes || s.attributes::jsonb",
}
_PROFILE_SET = ", ".join(f"{c} = {e}" for c, e in _PROFILE.items())
_PROFILE_CHANGED = " OR ".join(f"r.{c} IS DISTINCT FROM {e}" for c, e in _PROFILE.items())
UPDATE_EXISTING = (
    f"UPDATE {_RECIPIENTS} AS r SET {_PROFILE_SET}, updated_at = %s "
    f"FROM {STAGE} AS s WHERE r.unit_id = %s AND r.email_hash = s.email_hash "
    f"AND s.problem IS NULL AND ({_PROFILE_CHANGED})"
)
# {columns} and {expressions}: mlm.inserts.insert_parts of Recipient.
CREATE_NEW = (
    f"WITH made AS (INSERT INTO {_RECIPIENTS} ({{columns}}) "
    f"SELECT {{expressions}} FROM {STAGE} AS s WHERE s.problem IS NULL AND NOT EXISTS "
    f"(SELECT 1 FROM {_RECIPIENTS} AS r "
    "WHERE r.unit_id = %s AND r.email_hash = s.email_hash) ORDER BY s.email "
    "ON CONFLICT (unit_id, email_hash) DO NOTHING RETURNING id) "
    f"INSERT INTO {IDS} (recipient_id, created) SELECT id, true FROM made"
)
# {columns} and {expressions}: mlm.inserts.insert_parts of ListMembership. New recipients
# cannot be on the list yet: a plain insert, cheaper than an upsert.
ADD_NEW_TO_LIST = (
    f"INSERT INTO {_MEMBERSHIPS} ({{columns}}) SELECT {{expressions}} FROM {IDS} AS i "
    "WHERE i.created"
)
ADD_EXISTING_TO_LIST = (
    f"INSERT INTO {_MEMBERSHIPS} ({{columns}}) SELECT {{expressions}} FROM {IDS} AS i "
    "WHERE NOT i.created ON CONFLICT (recipient_list_id, recipient_id) DO NOTHING"
)
# Directory sync: members not in the file leave the list, except those whose address is in
# the file but suppressed (they have not left).
REMOVE_LEAVERS = (
    f"DELETE FROM {_MEMBERSHIPS} WHERE recipient_list_id = %s "
    f"AND recipient_id NOT IN (SELECT recipient_id FROM {IDS}) "
    f"AND recipient_id NOT IN (SELECT r.id FROM {_RECIPIENTS} AS r JOIN {STAGE} AS s "
    "ON r.unit_id = %s AND r.email_hash = s.email_hash WHERE s.kind = 'suppressed')"
)


class ImportRun(StagedImport):
    """One run of an import job on this process's database connection: its file staged and
    checked (StagedImport), then applied."""

    def apply(
        self,
        *,
        now: datetime.datetime,
        dm_types: list[tuple[int, int | None]],
        evidence: str,
        actor_id: int | None,
        actor_label: str,
    ) -> None:
        """Write recipients, memberships and consent: all of it, or (on any error) nothing."""
        mode = self.job.mode
        self.now = connection.ops.adapt_datetimefield_value(now)
        self._execute("SET LOCAL work_mem = '64MB'")
        if mode == ImportMode.SYNC and not self.valid:
            raise ImportFileError(
                "The directory file has no valid row: nobody was added or removed. "
                "Check the rejected rows."
            )
        self._collect_existing()
        consent = {"dm_types": dm_types, "evidence": evidence, "actor_id": actor_id}
        consent["actor_label"] = actor_label
        if mode == ImportMode.OPT_OUT:
            self.counts.withdrawn_count = self._consent(action="withdraw", **consent)
            return
        self._update_existing()
        self._create_new()
        self.counts.added_count = self._add_to_list()
        if mode == ImportMode.GRANT:
            self.counts.granted_count = self._consent(action="grant", **consent)
        if mode == ImportMode.SYNC:
            self.counts.removed_count = self._remove_leavers()

    def _collect_existing(self) -> None:
        """Lock the unit's recipients named in the file (in id order, so that two imports
        cannot deadlock) and note their ids: nobody else writes their consent until we commit."""
        self._execute(LOCK_EXISTING, [self.unit_id])

    def _update_existing(self) -> None:
        """Update the profiles of recipients the unit has; a blank cell keeps what is there."""
        self.counts.updated_count = self._execute(UPDATE_EXISTING, [self.now, self.unit_id])

    def _create_new(self) -> None:
        """Create the recipients the unit does not have yet; they grant nothing by themselves."""
        columns, expressions, params = insert_parts(
            Recipient,
            {
                "code": TIME_ORDERED_UUID,
                "unit_id": ("%s", [self.unit_id]),
                "email": "s.email",
                "email_hash": "s.email_hash",
                "first_name": "s.first_name",
                "last_name": "s.last_name",
                "category": "s.category",
                "locale": "s.locale",
                "attributes": "s.attributes::jsonb",
                "status": ("%s", [RecipientStatus.ACTIVE.value]),
                "created_at": ("%s", [self.now]),
                "updated_at": ("%s", [self.now]),
            },
            self.now,
        )
        params.append(self.unit_id)
        self.counts.created_count = self._execute(
            CREATE_NEW.format(columns=columns, expressions=expressions), params
        )
        if self._count(IDS) < self.valid:
            # Someone added some of these addresses since we looked: take them as existing.
            self._execute(LOCK_ADDED_MEANWHILE, [self.unit_id])
        self._execute(f"ANALYZE {IDS}")

    def _add_to_list(self) -> int:
        """Put the file's recipients on the list; returns how many were not on it yet."""
        columns, expressions, params = insert_parts(
            ListMembership,
            {
                "recipient_list_id": ("%s", [self.list_id]),
                "recipient_id": "i.recipient_id",
                "added_at": ("%s", [self.now]),
            },
            self.now,
        )
        parts = {"columns": columns, "expressions": expressions}
        return self._execute(ADD_NEW_TO_LIST.format(**parts), params) + self._execute(
            ADD_EXISTING_TO_LIST.format(**parts), params
        )

    def _consent(
        self,
        *,
        action: str,
        dm_types: list[tuple[int, int | None]],
        evidence: str,
        actor_id: int | None,
        actor_label: str,
    ) -> int:
        """One consent event per (recipient, DM type) and the subscription row it makes current
        — what consent.services.grant / withdraw write, for every recipient at once."""
        return record_bulk(
            unit_id=self.unit_id,
            recipients=IDS,
            action=Action(action),
            dm_types=dm_types,
            channel=Channel.IMPORT,
            evidence=evidence,
            who=Who(actor_id=actor_id, actor_label=actor_label),
            now=self.now,
        )

    def _remove_leavers(self) -> int:
        """Directory sync: members who are not in the file leave the list (consent untouched).

        People whose address is in the file but suppressed stay: they have not left.
        """
        return self._execute(REMOVE_LEAVERS, [self.list_id, self.unit_id])
