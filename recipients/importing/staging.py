"""Staging an import: every row of the file read, checked (recipients.importing.checking) and
copied (COPY) to a temporary table of the worker's connection, so memory stays flat however
large the file; then what needs the whole file or the database — duplicates, suppressions,
recipients the unit already has — is checked in SQL on the staged rows, and the rejected rows
are written out for the person to download.
"""

# ruff: noqa: S608
# The SQL here is assembled from model table names and constants; every value is a parameter.

from __future__ import annotations

import io
import itertools
import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from django.core.files import File
from django.core.files.storage import default_storage
from django.db import connection, transaction

from consent.models import Suppression, SuppressionReason
from consent.services import carry_case_sensitive_suppressions
from mlm.inserts import table
from mlm.spreadsheets import csv_lines
from recipients.importing.checking import RowChecker, StagedRow
from recipients.importing.choices import (
    ATTRIBUTE,
    CATEGORY,
    EMAIL,
    FIRST_NAME,
    IGNORE,
    LAST_NAME,
    LOCALE,
)
from recipients.importing.reading import read_rows
from recipients.models import (
    Audience,
    Category,
    ImportJob,
    ImportMode,
    Recipient,
    RecipientStatus,
)

log = logging.getLogger(__name__)

STAGE = "mlm_import_stage"
IDS = "mlm_import_ids"
_RECIPIENTS = table(Recipient)
_COPY_CHUNK = 20_000

CREATE_STAGE = (
    f"CREATE TEMP TABLE {STAGE} (line integer NOT NULL, email text, email_hash text, "
    "first_name text, last_name text, category text, locale text, attributes text, "
    "problem text, kind text)"
)
CREATE_IDS = f"CREATE TEMP TABLE {IDS} (recipient_id bigint NOT NULL, created boolean NOT NULL)"
COPY_STAGE = (
    f"COPY {STAGE} (line, email, email_hash, first_name, last_name, category, locale, "
    "attributes, problem, kind) FROM STDIN"
)
# Every repetition of an address after its first line.
MARK_DUPLICATES = (
    f"UPDATE {STAGE} AS s SET problem = %s || d.first, kind = 'duplicate' "
    f"FROM (SELECT email_hash, min(line) AS first FROM {STAGE} WHERE problem IS NULL "
    "GROUP BY email_hash HAVING count(*) > 1) AS d "
    "WHERE s.problem IS NULL AND s.email_hash = d.email_hash AND s.line <> d.first"
)
# Opt-out: an erased recipient, or an address the unit does not have.
MARK_ERASED = (
    f"UPDATE {STAGE} AS s SET problem = %s, kind = 'erased' FROM {_RECIPIENTS} AS r "
    "WHERE s.problem IS NULL AND r.unit_id = %s AND r.email_hash = s.email_hash "
    "AND r.status = %s"
)
MARK_UNKNOWN = (
    f"UPDATE {STAGE} SET problem = %s, kind = 'unknown' WHERE problem IS NULL AND "
    f"NOT EXISTS (SELECT 1 FROM {_RECIPIENTS} AS r WHERE r.unit_id = %s "
    f"AND r.email_hash = {STAGE}.email_hash)"
)
# Addresses suppressed for the unit or for every unit, with the reason in the person's words.
_REASONS = [
    (
        reason.value,
        "Erased at the person's request: the address is kept out of every unit."
        if reason == SuppressionReason.ERASURE
        else f"Suppressed ({reason.label.lower()}): the address must not be mailed.",
    )
    for reason in SuppressionReason
]
_REASON_PARAMS = [value for pair in _REASONS for value in pair]
_WHEN_REASONS = " ".join(["WHEN %s THEN %s"] * len(_REASONS))
MARK_SUPPRESSED = (
    f"UPDATE {STAGE} AS s SET problem = CASE p.reason {_WHEN_REASONS} "
    "ELSE 'Suppressed.' END, kind = 'suppressed' "
    f"FROM {table(Suppression)} AS p WHERE s.problem IS NULL "
    "AND p.email_hash = s.email_hash AND (p.unit_id = %s OR p.unit_id IS NULL)"
)
# Recipients the unit has that were erased, or are of the other audience (I3); {categories}
# are the placeholders of the list audience's categories.
MARK_CLASHES = (
    f"UPDATE {STAGE} AS s SET "
    "problem = CASE WHEN r.status = %s THEN %s ELSE s.email || %s || r.category || %s END, "
    "kind = CASE WHEN r.status = %s THEN 'erased' ELSE 'audience' END "
    f"FROM {_RECIPIENTS} AS r WHERE s.problem IS NULL AND r.unit_id = %s "
    "AND r.email_hash = s.email_hash "
    "AND (r.status = %s OR r.category NOT IN ({categories}))"
)
TALLY = f"SELECT kind, count(*) FROM {STAGE} GROUP BY kind"
REJECTED_ROWS = (
    "SELECT line, problem, email, email_hash, first_name, last_name, category, "
    f"locale, attributes FROM {STAGE} WHERE problem IS NOT NULL ORDER BY line"
)
MIXED_CASE_ADDRESSES = (
    f"SELECT DISTINCT email FROM {STAGE} WHERE problem IS NULL AND email <> lower(email)"
)


@dataclass
class Counts:
    rows_read: int = 0
    created_count: int = 0
    updated_count: int = 0
    added_count: int = 0
    removed_count: int = 0
    granted_count: int = 0
    withdrawn_count: int = 0
    duplicate_count: int = 0
    invalid_count: int = 0
    suppressed_count: int = 0
    unknown_count: int = 0

    @property
    def rejected(self) -> int:
        return (
            self.duplicate_count + self.invalid_count + self.suppressed_count + self.unknown_count
        )

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class StagedImport:
    """An import job's file staged on this process's database connection, and checked there.

    recipients.importing.applying.ImportRun applies it.
    """

    def __init__(self, job: ImportJob) -> None:
        self.job = job
        self.unit_id = job.unit_id
        self.list_id = job.recipient_list_id
        self.counts = Counts()
        self.rows_total: int | None = None
        self.valid = 0

    # Staging (autocommit: progress is visible while the file is read) ------------------------

    def _execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        started = time.monotonic()
        with connection.cursor() as cursor:
            cursor.execute(sql, list(params))
            rows = cursor.rowcount
        if log.isEnabledFor(logging.DEBUG):
            statement = " ".join(sql.split())[:90]
            log.debug("%.2f s, %s rows: %s", time.monotonic() - started, rows, statement)
        return rows

    def create_stage(self) -> None:
        self.drop_stage()
        self._execute(CREATE_STAGE)
        self._execute(CREATE_IDS)

    def drop_stage(self) -> None:
        self._execute(f"DROP TABLE IF EXISTS {STAGE}")
        self._execute(f"DROP TABLE IF EXISTS {IDS}")

    def stage(
        self,
        stream: IO[bytes],
        progress: Callable[[int], None],
        total: Callable[[int | None], None] = lambda _total: None,
    ) -> None:
        """Read, check and stage every row of the file, reporting about how many rows there are
        and how many were read as it goes."""
        rows, self.rows_total, close = read_rows(self.job, stream)
        total(self.rows_total)
        checker = RowChecker(self.job)
        checked = (
            staged for line, cells in rows if (staged := checker.check(line, cells)) is not None
        )
        try:
            self._copy(checked, progress)
        finally:
            close()
        self._execute(f"ANALYZE {STAGE}")

    def _copy(self, rows: Iterator[StagedRow], progress: Callable[[int], None]) -> None:
        connection.ensure_connection()
        raw = connection.connection
        while True:
            written = 0
            # One transaction per chunk, progress included: a failure leaves the connection
            # usable (and, inside a caller's transaction, rolls back to a savepoint).
            with transaction.atomic():
                with raw.cursor() as cursor, cursor.copy(COPY_STAGE) as copy:
                    for row in itertools.islice(rows, _COPY_CHUNK):
                        copy.write_row(row)
                        written += 1
                self.counts.rows_read += written
                progress(self.counts.rows_read)
            if written < _COPY_CHUNK:
                return

    # Checks that need the whole file or the database (inside the import's transaction) -------

    def check(self) -> None:
        """Mark duplicates, suppressed addresses and clashes with recipients the unit has."""
        mode = self.job.mode
        self._execute(MARK_DUPLICATES, ["Duplicate of line "])
        if mode == ImportMode.OPT_OUT:
            self._execute(
                MARK_ERASED,
                [
                    "This recipient was erased; consent cannot be recorded.",
                    self.unit_id,
                    RecipientStatus.ERASED,
                ],
            )
            self._execute(
                MARK_UNKNOWN,
                ["Not a recipient of this unit: there is nothing to withdraw.", self.unit_id],
            )
            return
        self._carry_case_sensitive_suppressions()
        self._execute(MARK_SUPPRESSED, [*_REASON_PARAMS, self.unit_id])
        audience = self.job.recipient_list.audience
        other = Audience.INTERNAL if audience == Audience.EXTERNAL else Audience.EXTERNAL
        allowed = Category.of_audience(audience)
        self._execute(
            MARK_CLASHES.format(categories=", ".join(["%s"] * len(allowed))),
            [
                RecipientStatus.ERASED,
                "This recipient was erased at the person's request.",
                " is already a recipient of this unit as ",
                f" ({other}) and cannot join an {audience} list.",
                RecipientStatus.ERASED,
                self.unit_id,
                RecipientStatus.ERASED,
                *allowed,
            ],
        )

    def tally(self) -> None:
        """Count the valid rows and the rejected ones by kind of problem."""
        with connection.cursor() as cursor:
            cursor.execute(TALLY)
            for kind, number in cursor.fetchall():
                if kind is None:
                    self.valid = number
                elif kind == "duplicate":
                    self.counts.duplicate_count = number
                elif kind == "suppressed":
                    self.counts.suppressed_count = number
                elif kind == "unknown":
                    self.counts.unknown_count = number
                else:
                    self.counts.invalid_count += number

    def write_rejected(self) -> str:
        """Store the rejected rows (line, reason, the file's mapped columns) as a CSV file;
        return its storage name, or '' if no row was rejected."""
        if not self.counts.rejected:
            return ""
        job = self.job
        mapped = [(i, job.columns[i], t) for i, t in enumerate(job.mapping) if t != IGNORE]
        position = {EMAIL: 2, FIRST_NAME: 4, LAST_NAME: 5, CATEGORY: 6, LOCALE: 7}

        def rows() -> Iterator[list[Any]]:
            yield ["line", "reason", *(name for _i, name, _t in mapped)]
            with connection.chunked_cursor() as cursor:
                cursor.execute(REJECTED_ROWS)
                while batch := cursor.fetchmany(2000):
                    for row in batch:
                        attributes = json.loads(row[8] or "{}")
                        values = [
                            attributes.get(name, "") if t == ATTRIBUTE else row[position[t]] or ""
                            for _i, name, t in mapped
                        ]
                        yield [row[0], row[1], *values]

        with tempfile.TemporaryFile("w+b") as spool:
            text = io.TextIOWrapper(spool, encoding="utf-8", newline="")
            for line in csv_lines(rows()):
                text.write(line)
            text.flush()
            text.detach()
            spool.seek(0)
            return default_storage.save(
                f"imports/{job.unit_id}/{job.code}/rejected.csv",
                File(spool, name="rejected.csv"),
            )

    def _carry_case_sensitive_suppressions(self) -> None:
        """Let suppressions kept as a case-sensitive hash alone match the file's addresses."""
        if not Suppression.objects.filter(case_sensitive=True).exists():
            return
        with connection.cursor() as cursor:
            cursor.execute(MIXED_CASE_ADDRESSES)
            carry_case_sensitive_suppressions(email for (email,) in cursor)

    def _count(self, name: str) -> int:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {name}")
            return cursor.fetchone()[0]
