"""Template filters of the report pages."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def percent(value: float | None) -> str:
    """A rate as the reports print it: two decimals (complaint rates live near 0.1%), or a dash
    when there is nothing to divide by."""
    return "—" if value is None else f"{value:.2f}%"


@register.filter
def figure(report, key: str):
    """The report's figure named `key` (report|figure:"sent")."""
    return report.figure(key)
