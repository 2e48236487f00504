"""Segment conditions: validation with clear errors, parameterised SQL, and the compiled SQL
agreeing with a Python reading of the same conditions on random recipients and attributes."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlm.db import queryset_sql
from recipients.models import Category, Recipient
from recipients.segments import DATE_PATTERN, NUMBER_PATTERN, Matches, validate_conditions

# --- an independent reading of the conditions, as recipients/segments.py documents them -----


def _text(recipient: dict, condition: dict) -> str | None:
    field = condition["field"]
    if field == "attribute":
        value = recipient["attributes"].get(condition["key"])
        if value is None:
            return None
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)
    if field == "email_domain":
        return recipient["email"].rsplit("@", 1)[1].lower()
    return recipient[field]


def holds(recipient: dict, condition: dict) -> bool:
    op, value = condition["op"], condition.get("value")
    if condition["field"] == "attribute" and op in ("equals", "one_of", "not"):
        raw = recipient["attributes"].get(condition["key"])
        hit = isinstance(raw, str) and raw in (value if op == "one_of" else [value])
        return not hit if op == "not" else hit
    text = _text(recipient, condition)
    if op == "equals":
        return text == value
    if op == "one_of":
        return text in value
    if op == "not":
        return text != value
    if op == "contains":
        return text is not None and value in text
    if op == "starts_with":
        return text is not None and text.startswith(value)
    if op == "exists":
        return text not in (None, "")
    if op == "is_empty":
        return text in (None, "")
    low, high = value
    if op == "number_range":
        if text is None or not re.fullmatch(NUMBER_PATTERN, text):
            return False
        number = Decimal(text)
        return (low is None or number >= Decimal(low)) and (high is None or number <= Decimal(high))
    if text is None or not re.match(DATE_PATTERN, text):
        return False
    day = text[:10]
    return (low is None or day >= low) and (high is None or day <= high)


def meets(recipient: dict, conditions: dict) -> bool:
    combine = {"all": all, "any": any}
    groups = [
        combine[g["match"]](holds(recipient, c) for c in g["conditions"])
        for g in conditions["groups"]
    ]
    return combine[conditions["match"]](groups) if groups else True


# --- random recipients and conditions ---------------------------------------------------------

KEYS = ["city", "year", "joined", "名字", "it's"]
ALPHABET = "aAbZ09-.: '\"%_\\;香港é"
words = st.text(alphabet=ALPHABET, min_size=1, max_size=6)
numbers = st.from_regex(r"-?[0-9]{1,3}(\.[0-9]{1,2})?", fullmatch=True)
dates = st.dates().map(lambda d: d.isoformat())
texts = st.one_of(
    words, numbers, dates, dates.map(lambda d: d + "T10:00"), st.sampled_from(["2020-13-45", ""])
)
attribute_values = st.one_of(texts, st.integers(-500, 5000), st.booleans(), st.none())

recipients = st.fixed_dictionaries(
    {
        "local": st.text(alphabet="abc1", min_size=1, max_size=4),
        "domain": st.sampled_from(["example.com", "Example.ORG", "hku.hk"]),
        "first_name": st.one_of(st.just(""), words),
        "last_name": st.one_of(st.just(""), words),
        "category": st.sampled_from(Category.values),
        "locale": st.sampled_from(["", "en", "zh-hk"]),
        "attributes": st.dictionaries(st.sampled_from(KEYS), attribute_values, max_size=4),
    }
)


@st.composite
def conditions(draw) -> dict:
    field = draw(
        st.sampled_from(
            ["attribute", "attribute", "email_domain", "first_name", "category", "locale"]
        )
    )
    condition: dict = {"field": field}
    if field == "attribute":
        condition["key"] = draw(st.sampled_from(KEYS))
    op = draw(
        st.sampled_from(
            [
                "equals",
                "one_of",
                "not",
                "contains",
                "starts_with",
                "number_range",
                "date_range",
                "exists",
                "is_empty",
            ]
        )
    )
    condition["op"] = op
    values = texts.filter(str.strip) if field != "category" else st.sampled_from(Category.values)
    if op == "one_of":
        condition["value"] = draw(st.lists(values, min_size=1, max_size=3))
    elif op == "number_range":
        low, high = sorted(draw(st.lists(st.integers(-600, 5100), min_size=2, max_size=2)))
        condition["value"] = [
            draw(st.sampled_from([low, None, str(low)])),
            draw(st.sampled_from([high, None])) if low is not None else high,
        ]
        if condition["value"] == [None, None]:
            condition["value"] = [None, high]
    elif op == "date_range":
        low, high = sorted(draw(st.lists(dates, min_size=2, max_size=2)))
        condition["value"] = draw(st.sampled_from([[low, high], [low, None], [None, high]]))
    elif op not in ("exists", "is_empty"):
        condition["value"] = draw(values)
    return condition


segments = st.fixed_dictionaries(
    {
        "match": st.sampled_from(["all", "any"]),
        "groups": st.lists(
            st.fixed_dictionaries(
                {
                    "match": st.sampled_from(["all", "any"]),
                    "conditions": st.lists(conditions(), min_size=1, max_size=3),
                }
            ),
            max_size=3,
        ),
    }
)


@pytest.mark.django_db
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(people=st.lists(recipients, min_size=1, max_size=8), raw=segments)
def test_the_compiled_sql_agrees_with_the_python_reading(world, people, raw):
    """The one SQL expression selects exactly the recipients the conditions describe, whatever
    the values (numbers, dates, junk, quotes, Chinese) and whether attributes exist."""
    conditions = validate_conditions(raw)
    with transaction.atomic():
        made = {}
        for n, person in enumerate(people):
            recipient = Recipient.objects.create(
                unit=world.unit,
                email=f"{person['local']}{n}@{person['domain']}",
                email_hash=f"hash-{n}",
                first_name=person["first_name"],
                last_name=person["last_name"],
                category=person["category"],
                locale=person["locale"],
                attributes=person["attributes"],
            )
            made[recipient.pk] = {**person, "email": recipient.email}
        found = set(
            Recipient.objects.for_unit(world.unit)
            .filter(Matches(conditions))
            .values_list("pk", flat=True)
        )
        expected = {pk for pk, person in made.items() if meets(person, conditions)}
        transaction.set_rollback(True)
    assert found == expected


# --- parameters and validation ----------------------------------------------------------------


def one_group(*conditions: dict, match: str = "all") -> dict:
    return {"match": "all", "groups": [{"match": match, "conditions": list(conditions)}]}


def attribute(key: str, op: str, value=None) -> dict:
    return {"field": "attribute", "key": key, "op": op, "value": value}


def test_no_condition_text_reaches_the_sql(world):
    """Values and attribute keys travel as parameters: the SQL text holds none of them."""
    hostile = "x'); DROP TABLE recipients_recipient; --"
    conditions = validate_conditions(
        one_group(
            attribute(hostile, "contains", hostile),
            attribute(hostile, "equals", hostile),
            {"field": "first_name", "op": "one_of", "value": [hostile, "b"]},
            attribute(hostile, "number_range", [1, 2]),
            match="any",
        )
    )
    query = Recipient.objects.for_unit(world.unit).filter(Matches(conditions))
    sql, params = queryset_sql(query)
    assert "DROP" not in sql
    assert hostile in params
    assert list(query) == []


def test_a_non_numeric_value_never_breaks_a_number_range(world):
    for n, value in enumerate(["12", "12abc", "1e5", "", "9" * 40, "NaN"]):
        Recipient.objects.create(
            unit=world.unit,
            email=f"p{n}@example.com",
            email_hash=f"h{n}",
            category=Category.EXTERNAL,
            attributes={"year": value},
        )
    conditions = validate_conditions(one_group(attribute("year", "number_range", [10, 20])))
    found = Recipient.objects.for_unit(world.unit).filter(Matches(conditions))
    assert [r.attributes["year"] for r in found] == ["12"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            one_group({"field": "salary", "op": "equals", "value": "1"}),
            "Group 1, condition 1: there is no field 'salary' to test.",
        ),
        (
            one_group(attribute("", "exists")),
            "Group 1, condition 1: the attribute name is empty.",
        ),
        (
            one_group({"field": "locale", "op": "like", "value": "x"}),
            "Group 1, condition 1 (language): 'like' is not a test a condition can make.",
        ),
        (
            one_group(attribute("year", "number_range", ["x", 2])),
            "Group 1, condition 1 (attribute 'year'): the lower bound is not a number: 'x'.",
        ),
        (
            one_group(attribute("year", "number_range", [5, 2])),
            "the lower bound is above the upper bound.",
        ),
        (
            one_group(attribute("d", "date_range", ["31/12/2020", None])),
            "is not a date written YYYY-MM-DD",
        ),
        (
            one_group(attribute("d", "date_range", [None, None])),
            "give a lower bound, an upper bound, or both.",
        ),
        (
            one_group({"field": "first_name", "op": "one_of", "value": []}),
            "give at least one value.",
        ),
        ({"match": "most", "groups": []}, "Groups combine with “all” or “any”."),
    ],
)
def test_invalid_conditions_are_refused_with_a_clear_reason(raw, message):
    with pytest.raises(ValidationError) as refused:
        validate_conditions(raw)
    assert message in refused.value.messages[0]
