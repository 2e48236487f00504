"""The segment builder's form: name, lists, and the condition rows read from the POST data.

Condition rows are named `g<group>-c<condition>-<part>`; every row has all the inputs a test can
need and the style sheet shows those of the chosen field and test. The buttons that add or remove
a row send `action` and the page is drawn again with the change, nothing saved. The services
validate.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.http import QueryDict

from consent.models import DMType
from mlm.forms import Form
from mlm.models import SenderUnit
from recipients.models import RecipientList, Segment
from recipients.segments import (
    ATTRIBUTE,
    MAX_CONDITIONS,
    MAX_GROUPS,
    NO_VALUE,
    OPERATORS,
    RANGES,
    RECIPIENT_FIELDS,
)

MATCH_CHOICES = [("all", "all"), ("any", "any")]
FIELD_CHOICES = [(ATTRIBUTE, "Attribute"), *RECIPIENT_FIELDS.items()]
OPERATOR_CHOICES = list(OPERATORS.items())


class SegmentForm(Form):
    """A segment's name and lists, and the DM type its live count is shown for."""

    name = forms.CharField(max_length=200)
    lists = forms.ModelMultipleChoiceField(
        queryset=RecipientList.objects.none(),
        to_field_name="code",
        widget=forms.CheckboxSelectMultiple,
        help_text="Lists of one audience: internal or external, never both.",
    )
    dm_type = forms.ModelChoiceField(
        queryset=DMType.objects.none(),
        to_field_name="code",
        required=False,
        label="Count who would receive",
        empty_label="No DM type",
        help_text="Not saved: the live count shows how many members a campaign of this DM "
        "type would reach now.",
    )

    def __init__(self, *args: Any, unit: SenderUnit, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["lists"].queryset = RecipientList.objects.for_unit(unit)
        self.fields["lists"].label_from_instance = lambda rl: (
            f"{rl.name} ({rl.get_audience_display().split(' (')[0].lower()})"
        )
        self.fields["dm_type"].queryset = DMType.objects.for_unit(unit).filter(
            archived_at__isnull=True
        )

    @classmethod
    def initial_for(cls, segment: Segment) -> dict[str, Any]:
        return {"name": segment.name, "lists": list(segment.lists.all())}


def _blank_condition() -> dict[str, Any]:
    return {"field": ATTRIBUTE, "key": "", "op": "equals", "value": ""}


def conditions_from_post(data: QueryDict) -> dict[str, Any]:
    """The conditions as written in the builder (not yet validated), with the change that the
    pressed button (`action`) asks for applied."""
    groups = []
    for g in range(MAX_GROUPS):
        if f"g{g}-match" not in data:
            continue
        rows = []
        for c in range(MAX_CONDITIONS):
            prefix = f"g{g}-c{c}"
            if f"{prefix}-op" not in data:
                continue
            op = data.get(f"{prefix}-op", "")
            row: dict[str, Any] = {"field": data.get(f"{prefix}-field", ""), "op": op}
            if row["field"] == ATTRIBUTE:
                row["key"] = data.get(f"{prefix}-key", "")
            if op in RANGES:
                row["value"] = [data.get(f"{prefix}-low", ""), data.get(f"{prefix}-high", "")]
            elif op == "one_of":
                row["value"] = data.get(f"{prefix}-values", "").splitlines()
            elif op not in NO_VALUE:
                row["value"] = data.get(f"{prefix}-value", "")
            rows.append(((g, c), row))
        groups.append(((g, None), {"match": data.get(f"g{g}-match"), "conditions": rows}))
    action = data.get("action", "")
    kept = []
    for (g, _), group in groups:
        rows = [row for (gi, ci), row in group["conditions"] if action != f"remove-{gi}-{ci}"]
        if action == f"add-condition-{g}" and len(rows) < MAX_CONDITIONS:
            rows.append(_blank_condition())
        if rows or action == f"add-condition-{g}":
            kept.append({"match": group["match"], "conditions": rows})
    if action == "add-group" and len(kept) < MAX_GROUPS:
        kept.append({"match": "all", "conditions": [_blank_condition()]})
    return {"match": data.get("match", "all"), "groups": kept}


def builder_rows(conditions: dict[str, Any]) -> list[dict[str, Any]]:
    """The groups and condition rows to draw, numbered in order, values as the inputs show
    them."""
    groups = []
    for g, group in enumerate(conditions.get("groups") or []):
        rows = []
        for c, condition in enumerate(group["conditions"]):
            value = condition.get("value")
            low = high = text = values = ""
            if condition.get("op") in RANGES and isinstance(value, list) and len(value) == 2:
                low, high = (v or "" for v in value)
            elif isinstance(value, list):
                values = "\n".join(str(v) for v in value)
            elif value is not None:
                text = str(value)
            rows.append(
                {
                    "prefix": f"g{g}-c{c}",
                    "field": condition.get("field", ""),
                    "key": condition.get("key", ""),
                    "op": condition.get("op", ""),
                    "value": text,
                    "values": values,
                    "low": low,
                    "high": high,
                    "remove": f"remove-{g}-{c}",
                }
            )
        groups.append(
            {"index": g, "prefix": f"g{g}", "match": group.get("match", "all"), "rows": rows}
        )
    return groups
