"""Segment conditions: their schema, validation, wording, and compilation to one SQL condition.

A segment's conditions are structured data, never SQL text:

    {"match": "all", "groups": [
        {"match": "any", "conditions": [
            {"field": "attribute", "key": "city", "op": "one_of", "value": ["Hong Kong"]},
            {"field": "attribute", "key": "year", "op": "number_range", "value": [2010, 2015]}
        ]}
    ]}

`match` combines the groups (all of them, or any), and each group its conditions; groups do not
nest further. No groups: everyone on the segment's lists. A field is a recipient field or one key
of `attributes`. Values compare as text, case and all, as imports keep them:

- equals, one of, not: the whole value (a missing value is "not" anything);
- contains, starts with: part of it;
- number range: values written as decimal numbers (`-12`, `3.5`), others never match;
- date range: values starting `YYYY-MM-DD` (ISO dates and timestamps), others never match;
- exists / is empty: a value other than the empty text is there, or not.

`Matches` compiles them into one SQL expression whose every value, attribute key included, is
a query parameter: only the fixed fragments of this module are SQL text.
"""

from __future__ import annotations

import datetime
import json
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import BooleanField, Expression, F

RECIPIENT_FIELDS = {
    "email_domain": "Address domain",
    "first_name": "First name",
    "last_name": "Last name",
    "category": "Category",
    "locale": "Language",
}
ATTRIBUTE = "attribute"

OPERATORS = {
    "equals": "equals",
    "one_of": "is one of",
    "not": "is not",
    "contains": "contains",
    "starts_with": "starts with",
    "number_range": "is a number between",
    "date_range": "is a date between",
    "exists": "has a value",
    "is_empty": "is empty",
}
RANGES = ("number_range", "date_range")
NO_VALUE = ("exists", "is_empty")

MAX_GROUPS = 10
MAX_CONDITIONS = 20  # per group
MAX_CHOICES = 100  # values of one "one of"
MAX_TEXT = 200  # characters of a value or an attribute key

# A number is at most 30 digits either side of the point: the cast to numeric can never fail.
NUMBER_PATTERN = r"-?[0-9]{1,30}(\.[0-9]{1,30})?"
DATE_PATTERN = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"

# The columns a condition reads, in the order of `Matches`'s source expressions.
COLUMNS = ("email", "first_name", "last_name", "category", "locale", "attributes")

EMPTY: dict[str, Any] = {"match": "all", "groups": []}


def _text(value: Any, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal, float)):
        raise ValidationError(f"{what} must be a text.")
    text = str(value).strip()
    if not text:
        raise ValidationError(f"{what} is empty.")
    if len(text) > MAX_TEXT:
        raise ValidationError(f"{what} is longer than {MAX_TEXT} characters.")
    if "\x00" in text:
        raise ValidationError(f"{what} contains a NUL character.")
    return text


def _number(value: Any, what: str) -> str | None:
    if value in (None, ""):
        return None
    if isinstance(value, bool):
        raise ValidationError(f"{what} is not a number.")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValidationError(f"{what} is not a number: {value!r}.") from None
    if not number.is_finite() or abs(number) >= Decimal(10) ** 30:
        raise ValidationError(f"{what} is out of range: {value!r}.")
    return str(number)


def _date(value: Any, what: str) -> str | None:
    if value in (None, ""):
        return None
    try:
        return datetime.date.fromisoformat(str(value).strip()).isoformat()
    except ValueError:
        raise ValidationError(f"{what} is not a date written YYYY-MM-DD: {value!r}.") from None


def _condition(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValidationError(f"{where} is not a condition.")
    field = raw.get("field")
    if field == ATTRIBUTE:
        key = _text(raw.get("key"), f"{where}: the attribute name")
        subject = f"{where} (attribute {key!r})"
        condition: dict[str, Any] = {"field": ATTRIBUTE, "key": key}
    elif field in RECIPIENT_FIELDS:
        subject = f"{where} ({RECIPIENT_FIELDS[field].lower()})"
        condition = {"field": field}
    else:
        raise ValidationError(f"{where}: there is no field {field!r} to test.")
    op = raw.get("op")
    if op not in OPERATORS:
        raise ValidationError(f"{subject}: {op!r} is not a test a condition can make.")
    condition["op"] = op
    value = raw.get("value")
    if op in NO_VALUE:
        return condition
    if op == "one_of":
        if isinstance(value, str):
            value = [v for v in value.splitlines() if v.strip()]
        if not isinstance(value, list) or not value:
            raise ValidationError(f"{subject}: give at least one value.")
        if len(value) > MAX_CHOICES:
            raise ValidationError(f"{subject}: at most {MAX_CHOICES} values.")
        texts = [_text(v, f"{subject}: a value") for v in value]
        condition["value"] = list(dict.fromkeys(texts))
    elif op in RANGES:
        if not isinstance(value, list) or len(value) != 2:
            raise ValidationError(f"{subject}: a range has a lower and an upper bound.")
        parse = _number if op == "number_range" else _date
        low, high = (
            parse(v, f"{subject}: the {end} bound")
            for v, end in zip(value, ("lower", "upper"), strict=True)
        )
        if low is None and high is None:
            raise ValidationError(f"{subject}: give a lower bound, an upper bound, or both.")
        order = Decimal if op == "number_range" else str
        if low is not None and high is not None and order(low) > order(high):
            raise ValidationError(f"{subject}: the lower bound is above the upper bound.")
        condition["value"] = [low, high]
    else:
        condition["value"] = _text(value, f"{subject}: the value")
    return condition


def validate_conditions(raw: Any) -> dict[str, Any]:
    """The conditions in their normal form, or a ValidationError saying what is wrong and where."""
    if raw in (None, "", {}):
        return dict(EMPTY)
    if not isinstance(raw, dict):
        raise ValidationError("The conditions are not in the expected form.")
    match = raw.get("match", "all")
    if match not in ("all", "any"):
        raise ValidationError("Groups combine with “all” or “any”.")
    groups = raw.get("groups") or []
    if not isinstance(groups, list):
        raise ValidationError("The condition groups are not a list.")
    if len(groups) > MAX_GROUPS:
        raise ValidationError(f"A segment has at most {MAX_GROUPS} groups of conditions.")
    normal = []
    for g, group in enumerate(groups, start=1):
        if not isinstance(group, dict) or not isinstance(group.get("conditions"), list):
            raise ValidationError(f"Group {g} is not a group of conditions.")
        if group.get("match", "all") not in ("all", "any"):
            raise ValidationError(f"Group {g}: conditions combine with “all” or “any”.")
        conditions = group["conditions"]
        if not conditions:
            continue  # an empty group says nothing: dropped
        if len(conditions) > MAX_CONDITIONS:
            raise ValidationError(f"Group {g} has more than {MAX_CONDITIONS} conditions.")
        normal.append(
            {
                "match": group.get("match", "all"),
                "conditions": [
                    _condition(c, f"Group {g}, condition {n}")
                    for n, c in enumerate(conditions, start=1)
                ],
            }
        )
    return {"match": match, "groups": normal}


def describe_condition(condition: dict[str, Any]) -> str:
    """One condition in words, e.g. `attribute “year” is a number between 2010 and 2015`."""
    field = condition["field"]
    name = f"attribute “{condition['key']}”" if field == ATTRIBUTE else RECIPIENT_FIELDS[field]
    op, value = condition["op"], condition.get("value")
    if op in NO_VALUE:
        return f"{name} {OPERATORS[op]}"
    if op == "one_of":
        return f"{name} is one of " + ", ".join(f"“{v}”" for v in value)
    if op in RANGES:
        low, high = value
        kind = "number" if op == "number_range" else "date"
        if low is None:
            return f"{name} is a {kind} up to {high}"
        if high is None:
            return f"{name} is a {kind} from {low}"
        return f"{name} {OPERATORS[op]} {low} and {high}"
    return f"{name} {OPERATORS[op]} “{value}”"


def describe(conditions: dict[str, Any]) -> list[str]:
    """The conditions in words, one line per group (empty: everyone on the lists)."""
    groups = conditions.get("groups") or []
    joiner = {"all": " and ", "any": " or "}
    lines = []
    for group in groups:
        line = joiner[group["match"]].join(describe_condition(c) for c in group["conditions"])
        lines.append(line)
    if len(lines) > 1:
        lead = "All of" if conditions["match"] == "all" else "Any of"
        return [f"{lead}:", *(f"({line})" for line in lines)]
    return lines


# --- compilation ---------------------------------------------------------------------------------

# Each condition is one of these fixed fragments; `{v}` is the tested value (a column, or
# `attributes ->> %s`), every other value a parameter. Each one is true or false, never NULL
# (COALESCE where a missing attribute would make it NULL): what a missing value does is decided
# here, not by SQL's three-valued logic.
NUMBER = "CASE WHEN {v} ~ '^" + NUMBER_PATTERN + "$' THEN ({v})::numeric END"
DATE = "CASE WHEN {v} ~ '^" + DATE_PATTERN + '\' THEN left({v}, 10) END COLLATE "C"'


def _value_sql(condition: dict[str, Any], columns: dict[str, tuple[str, list]]) -> tuple[str, list]:
    field = condition["field"]
    if field == ATTRIBUTE:
        sql, params = columns["attributes"]
        return f"({sql} ->> %s)", [*params, condition["key"]]
    if field == "email_domain":
        sql, params = columns["email"]
        return f"lower(split_part({sql}, '@', -1))", params
    return columns[field]


def _condition_sql(
    condition: dict[str, Any], columns: dict[str, tuple[str, list]]
) -> tuple[str, list]:
    op, value = condition["op"], condition.get("value")
    if condition["field"] == ATTRIBUTE and op in ("equals", "one_of", "not"):
        # Containment (`@>`) is what the GIN index on attributes answers.
        attributes, params = columns["attributes"]
        choices = value if op == "one_of" else [value]
        tests = " OR ".join(f"{attributes} @> %s::jsonb" for _ in choices)
        sql_params = [p for choice in choices for p in (*params, _json(condition["key"], choice))]
        return (f"NOT ({tests})" if op == "not" else f"({tests})"), sql_params
    v, params = _value_sql(condition, columns)
    if op == "equals":
        return f"{v} = %s", [*params, value]
    if op == "one_of":
        return f"{v} = ANY(%s)", [*params, value]
    if op == "not":
        return f"{v} IS DISTINCT FROM %s", [*params, value]
    if op == "contains":
        return f"strpos({v}, %s) > 0", [*params, value]
    if op == "starts_with":
        return f"starts_with({v}, %s)", [*params, value]
    if op == "exists":
        return f"{v} <> ''", params
    if op == "is_empty":
        return f"COALESCE({v}, '') = ''", params
    cast = NUMBER if op == "number_range" else DATE
    tested, tested_params = cast.replace("{v}", v), params * 2
    low, high = value
    parts, bounds = [], []
    if low is not None:
        parts.append(f"{tested} >= %s")
        bounds += [*tested_params, Decimal(low) if op == "number_range" else low]
    if high is not None:
        parts.append(f"{tested} <= %s")
        bounds += [*tested_params, Decimal(high) if op == "number_range" else high]
    return " AND ".join(parts), bounds


def _nullable(condition: dict[str, Any]) -> bool:
    """Whether the test can be NULL: only those reading an attribute's text, which is NULL when
    the attribute is missing. The others stay bare, so that the planner can estimate them and
    use an index (a COALESCE around `@>` hides it from the GIN index)."""
    return condition["field"] == ATTRIBUTE and condition["op"] not in (
        "equals",
        "one_of",
        "not",
        "is_empty",
    )


def _json(key: str, value: str) -> str:
    return json.dumps({key: value}, ensure_ascii=False)


class Matches(Expression):
    """True for the recipients that meet `conditions` (validated): one boolean SQL expression
    over the recipient's own columns, usable in `filter()` and in subqueries alike."""

    def __init__(self, conditions: dict[str, Any], columns: list | None = None) -> None:
        super().__init__(output_field=BooleanField())
        self.conditions = conditions
        self.columns = columns if columns is not None else [F(name) for name in COLUMNS]

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.conditions!r})"

    def get_source_expressions(self) -> list:
        return self.columns

    def set_source_expressions(self, exprs: list) -> None:
        self.columns = list(exprs)

    def as_sql(self, compiler, connection) -> tuple[str, list]:
        pairs = zip(COLUMNS, self.columns, strict=True)
        columns = {name: compiler.compile(column) for name, column in pairs}
        joiner = {"all": " AND ", "any": " OR "}
        groups, params = [], []
        for group in self.conditions.get("groups") or []:
            tests = []
            for condition in group["conditions"]:
                sql, condition_params = _condition_sql(condition, columns)
                tests.append(f"COALESCE(({sql}), false)" if _nullable(condition) else sql)
                params += condition_params
            groups.append("(" + joiner[group["match"]].join(tests) + ")")
        if not groups:
            return "true", []
        return "(" + joiner[self.conditions["match"]].join(groups) + ")", params
