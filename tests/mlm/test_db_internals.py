"""The tricks of mlm.db, each against PostgreSQL: if a Django or psycopg upgrade changes the
internals one leans on, its test here fails and says which, before the paths that use it
(one-click withdrawals, provider webhooks, imports) slow down or break quietly."""

from __future__ import annotations

import psycopg
import pytest
from django.db import InterfaceError, OperationalError, connection, transaction
from django.test.utils import CaptureQueriesContext

from mlm.db import (
    fetch_model,
    is_prepared,
    mark_prepared,
    once_more_on_a_new_connection,
    queryset_sql,
    raw_connection,
    row_exists,
    server_binding_cursor,
    skip_health_check,
)
from tests.conftest import backend_pid

OWN_QUERY = "SELECT query FROM pg_stat_activity WHERE pid = pg_backend_pid() AND %s = %s"


def _own_query(cursor) -> str:
    """The text PostgreSQL received for this very statement (a fresh statistics snapshot: the
    test's transaction would otherwise see the first one it took)."""
    cursor.execute("SELECT pg_stat_clear_snapshot()")
    cursor.execute(OWN_QUERY, [1, 1])
    return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_without_skipping_the_health_check_a_dead_connection_is_replaced(
    new_request_on_a_dead_connection,
):
    """The control: Django's health check notices the dead session and opens a new one."""
    assert backend_pid() != new_request_on_a_dead_connection


@pytest.mark.django_db(transaction=True)
def test_skip_health_check_spares_the_check_so_the_statement_meets_the_dead_connection(
    new_request_on_a_dead_connection,
):
    """If Django renames `health_check_done` or checks elsewhere, the SELECT 1 comes back
    (a round trip on every webhook and one-click request) and this test fails."""
    skip_health_check()
    with pytest.raises((OperationalError, InterfaceError)):
        backend_pid()
    connection.close()
    assert backend_pid() != new_request_on_a_dead_connection


@pytest.mark.django_db(transaction=True)
def test_skip_health_check_does_nothing_inside_a_transaction(new_request_on_a_dead_connection):
    """A statement that failed inside a transaction could not simply run again."""
    from django.db import transaction

    with transaction.atomic():
        skip_health_check()
        assert backend_pid() != new_request_on_a_dead_connection


@pytest.mark.django_db
def test_server_binding_cursor_sends_parameters_apart_from_the_statement():
    """PostgreSQL sees `$1` placeholders, not the values quoted into the text; Django's own
    cursor (the control) quotes them. The debug log still records the statement."""
    with connection.cursor() as cursor:
        quoted = _own_query(cursor)
    assert "$1" not in quoted and "1 = 1" in quoted
    with CaptureQueriesContext(connection) as logged, server_binding_cursor() as cursor:
        bound = _own_query(cursor)
    assert "$1 = $2" in bound
    assert [q["sql"] for q in logged.captured_queries][-1].startswith("SELECT query FROM")


@pytest.mark.django_db
def test_server_binding_cursor_passes_a_list_as_one_array_parameter():
    with server_binding_cursor() as cursor:
        cursor.execute("SELECT cardinality(%s::int[])", [[1, 2, 3]])
        assert cursor.fetchone() == (3,)


@pytest.mark.django_db
def test_raw_connection_is_psycopg_in_djangos_session_and_transaction():
    """COPY through it lands in the same session (a temporary table) and Django's transaction."""
    from django.db import transaction

    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMPORARY TABLE copied (n integer)")
    raw = raw_connection()
    assert isinstance(raw, psycopg.Connection)
    try:
        with transaction.atomic():
            with raw.cursor() as cursor, cursor.copy("COPY copied (n) FROM STDIN") as copy:
                for n in range(3):
                    copy.write_row([n])
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM copied")
                assert cursor.fetchone() == (3,)
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM copied")
        assert cursor.fetchone() == (0,)
        cursor.execute("DROP TABLE copied")


def _prepared() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements")
        return {name for (name,) in cursor.fetchall()}


@pytest.mark.django_db(transaction=True)
def test_a_prepared_statement_is_remembered_for_its_session_only():
    """The mark lives on Django's connection and names the session: a new session (after a
    close or a lost connection) must PREPARE again, and `is_prepared` says so."""
    connection.close()
    assert not is_prepared("mlm_test_one")
    with connection.cursor() as cursor:
        cursor.execute("PREPARE mlm_test_one (integer) AS SELECT $1 + 1")
    mark_prepared("mlm_test_one")
    assert is_prepared("mlm_test_one") and not is_prepared("mlm_test_other")
    with connection.cursor() as cursor:
        cursor.execute("EXECUTE mlm_test_one (%s)", [41])
        assert cursor.fetchone() == (42,)
    assert is_prepared("mlm_test_one"), "the mark survives from one cursor to the next"
    connection.close()
    assert not is_prepared("mlm_test_one")
    assert "mlm_test_one" not in _prepared()
    assert not is_prepared("mlm_test_one"), "a new session has nothing prepared"


@pytest.mark.django_db
def test_queryset_sql_runs_as_the_queryset_would_with_values_apart(world):
    """Embedded in a statement of our own, the SQL selects what the queryset selects, and a
    value travels as a parameter, never in the text."""
    from mlm.models import SenderUnit

    hostile = "x'); DROP TABLE mlm_senderunit; --"
    queryset = SenderUnit.objects.filter(slug__in=[world.unit.slug, hostile]).values("pk")
    sql, params = queryset_sql(queryset)
    assert hostile not in sql and hostile in params
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM ({sql}) AS embedded", params)  # noqa: S608
        assert cursor.fetchone() == (1,)


def test_fetch_model_gives_what_the_orm_gives(world):
    """Each field as `filter().first()` gives it, JSON decoded; None when no row matches; and
    FOR UPDATE when asked."""
    from consent.models import DMType
    from recipients.models import Recipient
    from recipients.services import recipient_upsert

    recipient, _ = recipient_upsert(
        unit=world.unit,
        email="Ada.Lovelace@Partner.example.org",
        category="external",
        first_name="Ada",
        attributes={"city": "London", "year": 1843, "nested": None},
        by=None,
    )
    recipient.refresh_from_db()
    found = fetch_model(
        Recipient, "unit_id = %s AND email_hash = %s", [world.unit.pk, recipient.email_hash]
    )
    for field in Recipient._meta.concrete_fields:
        mine, theirs = getattr(found, field.attname), getattr(recipient, field.attname)
        assert mine == theirs, field.name
        assert type(mine) is type(theirs), field.name
    assert found.attributes == {"city": "London", "year": 1843, "nested": None}
    assert not found._state.adding
    assert fetch_model(DMType, "unit_id = %s AND key = %s", [world.unit.pk, "no-such"]) is None
    with CaptureQueriesContext(connection) as queries:
        fetch_model(Recipient, "id = %s", [recipient.pk], lock=True)
    assert queries.captured_queries[0]["sql"].endswith("FOR UPDATE")


def test_row_exists_answers_as_the_orm_does(world):
    from recipients.models import Recipient
    from recipients.services import recipient_upsert

    assert row_exists(Recipient, "unit_id = %s", [world.unit.pk]) is False
    recipient_upsert(unit=world.unit, email="ada@partner.example.org", category="external", by=None)
    assert row_exists(Recipient, "unit_id = %s", [world.unit.pk]) == (
        Recipient.objects.filter(unit=world.unit).exists()
    )
    assert row_exists(Recipient, "unit_id = %s", [world.unit.pk]) is True
    assert row_exists(Recipient, "unit_id = %s AND id < 0", [world.unit.pk]) is False


@pytest.mark.django_db(transaction=True)
def test_once_more_on_a_new_connection_runs_again_after_a_dead_one(
    new_request_on_a_dead_connection,
):
    """The first run meets the dead session (no health check first) and the second, on a new
    connection, gives the answer."""
    runs = []

    def run() -> int:
        runs.append(1)
        return backend_pid()

    assert once_more_on_a_new_connection(run, what="test") != new_request_on_a_dead_connection
    assert len(runs) == 2


@pytest.mark.django_db(transaction=True)
def test_once_more_on_a_new_connection_keeps_the_health_check_inside_a_transaction(
    new_request_on_a_dead_connection,
):
    """Inside a transaction a second run could repeat half of it: the health check stays, finds
    the dead session first, and the work runs once."""
    runs = []

    def run() -> int:
        runs.append(1)
        return backend_pid()

    with transaction.atomic():
        pid = once_more_on_a_new_connection(run, what="test")
    assert pid != new_request_on_a_dead_connection
    assert len(runs) == 1
