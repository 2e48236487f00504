"""Where we reach past Django's public database API, each trick behind one named function.

They save round trips on the hottest paths (one-click withdrawals, provider webhooks, imports)
and lean on details of Django's PostgreSQL backend and of psycopg that no deprecation policy
covers: tests/mlm/test_db_internals.py exercises every one against PostgreSQL, so an upgrade
that breaks one fails there, loudly, rather than slowing or breaking those paths quietly.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TypeVar

from django.db import InterfaceError, OperationalError, connection

log = logging.getLogger(__name__)
T = TypeVar("T")


def raw_connection():
    """psycopg's own connection under Django's (opened if need be), for what Django does not
    wrap, such as COPY. It is the same session: Django's transaction covers what it does."""
    connection.ensure_connection()
    return connection.connection


def queryset_sql(queryset) -> tuple[str, tuple]:
    """The SQL Django would run for `queryset` and its parameters (apart, never quoted in), to
    embed in a statement the ORM cannot write, such as INSERT … SELECT."""
    sql, params = queryset.query.sql_with_params()
    return sql, tuple(params)


def skip_health_check() -> None:
    """Spare the next query Django's connection health check (a SELECT 1 round trip before the
    first query of each request) on an open connection outside a transaction.

    A connection that died since the last request then fails the statement itself: the caller
    must catch OperationalError and InterfaceError, close the connection and run its work once
    more, which must therefore be safe to repeat.
    """
    if connection.connection is not None and not connection.in_atomic_block:
        connection.health_check_done = True


def once_more_on_a_new_connection(run: Callable[[], T], *, what: str) -> T:
    """`run()` without the health check (see `skip_health_check`); if the connection died
    since the last request, `run()` once more on a new connection. `run` must therefore be
    safe to repeat, and start outside a transaction. `what` names it in the warning."""
    skip_health_check()
    try:
        return run()
    except (OperationalError, InterfaceError):
        if connection.in_atomic_block:
            raise
        log.warning("%s: the database connection was lost; trying once more", what)
        connection.close()
        return run()


def server_binding_cursor():
    """A Django cursor (debug logging and all) whose parameters travel apart from the statement
    (server-side binding) instead of being quoted into the SQL text in Python, which for large
    arrays costs more than the database's work."""
    from django.db.backends.postgresql.base import ServerBindingCursor

    connection.close_if_health_check_failed()  # as connection.cursor() does
    connection.ensure_connection()
    raw = ServerBindingCursor(connection.connection)
    if connection.queries_logged:
        return connection.make_debug_cursor(raw)
    return connection.make_cursor(raw)


def is_prepared(name: str) -> bool:
    """Whether `mark_prepared(name)` was called on the session open now (a connection opened
    since, after a close or a lost connection, has no prepared statements yet)."""
    prepared = getattr(connection, "_mlm_prepared", {})
    return connection.connection is not None and prepared.get(name) is connection.connection


def mark_prepared(name: str) -> None:
    """Remember that statement `name` was PREPAREd on the session open now."""
    if not hasattr(connection, "_mlm_prepared"):
        connection._mlm_prepared = {}
    connection._mlm_prepared[name] = connection.connection


def column_list(model, alias: str = "") -> str:
    """The model's columns, in the order `model_from_row` reads them, as a SELECT list
    (each prefixed by `alias.` if given)."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(
        prefix + connection.ops.quote_name(f.column) for f in model._meta.concrete_fields
    )


@functools.cache
def _converters(model) -> tuple:
    """(position, from_db_value) of the fields that convert what the database gives."""
    return tuple(
        (i, f.from_db_value)
        for i, f in enumerate(model._meta.concrete_fields)
        if hasattr(f, "from_db_value")
    )


def model_from_row(model, values):
    """An instance of `model` from the values of `column_list(model)`, each field converted as
    the ORM converts it (JSON text, for one)."""
    converters = _converters(model)
    if converters:
        values = list(values)
        for i, convert in converters:
            values[i] = convert(values[i], None, connection)
    return model.from_db(connection.alias, None, values)


def fetch_model(model, where: str, params: list, *, lock: bool = False):
    """The row of `model` that `where` picks (SQL over its columns, values as %s), as an
    instance, or None: what `model.objects.filter(...).first()` gives for a unique lookup,
    without the ORM compiling the query, which costs more CPU than the database's answer on
    the API's hottest requests. `lock`: FOR UPDATE, inside a transaction."""
    # `where` is the caller's SQL text; every value is a parameter.
    table = connection.ops.quote_name(model._meta.db_table)
    sql = f"SELECT {column_list(model)} FROM {table} WHERE {where}"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql + (" LIMIT 1 FOR UPDATE" if lock else " LIMIT 1"), params)
        row = cursor.fetchone()
    return None if row is None else model_from_row(model, row)


def row_exists(model, where: str, params: list) -> bool:
    """Whether a row of `model` meets `where` (as for `fetch_model`): `filter().exists()`
    without the ORM's compiling."""
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {table} WHERE {where})", params)  # noqa: S608
        return cursor.fetchone()[0]
