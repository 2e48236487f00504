"""Raw INSERT … SELECT statements built from a model's fields.

The bulk writers (imports, the consent ledger's bulk path) insert many rows with one statement
from a staging table, which the ORM cannot express; building the column list from the model
keeps such a statement working when a later migration adds a column.
"""

from __future__ import annotations

from typing import Any

from django.db import connection, models


def table(model: type[models.Model]) -> str:
    """The model's table name, quoted for SQL."""
    return connection.ops.quote_name(model._meta.db_table)


def insert_parts(
    model: type[models.Model], known: dict[str, str | tuple[str, list[Any]]], now: Any
) -> tuple[str, str, list[Any]]:
    """Columns, SELECT expressions and parameters of a raw INSERT … SELECT into `model`.

    `known` gives each column we fill as SQL, or as (SQL, parameters). Any other column (one a
    later migration adds) gets its model default, so that this statement keeps working.
    """
    columns, expressions, params = [], [], []
    for f in model._meta.concrete_fields:
        if f.primary_key and f.column not in known:
            continue
        columns.append(connection.ops.quote_name(f.column))
        value = known.get(f.column)
        if value is None:
            if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
                value = ("%s", [now])
            else:
                value = ("%s", [f.get_db_prep_save(f.get_default(), connection)])
        sql, values = (value, []) if isinstance(value, str) else value
        expressions.append(sql)
        params.extend(values)
    return ", ".join(columns), ", ".join(expressions), params
