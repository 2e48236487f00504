"""The server-drawn SVG charts: scales, gaps, reference lines, and what the template writes."""

from __future__ import annotations

from django.template.loader import render_to_string

from mlm.charts import (
    ReferenceLine,
    Series,
    bar_chart,
    format_percent,
    line_chart,
    nice_step,
    y_scale,
)


def test_the_scale_uses_round_steps():
    assert [nice_step(x) for x in (0.7, 1.2, 3, 4.5, 12, 0.03)] == [1, 2, 5, 5, 20, 0.05]
    assert y_scale(17, integers=True) == (20, 5)
    assert y_scale(3, integers=True) == (3, 1)
    assert y_scale(0, integers=True) == (1, 1)
    top, step = y_scale(0.35, integers=False)
    assert (round(top, 3), round(step, 3)) == (0.4, 0.1)


def test_a_line_has_gaps_where_there_is_no_value():
    chart = line_chart(
        title="Rate",
        description="A rate per week.",
        labels=["w1", "w2", "w3", "w4"],
        series=[Series("Rate", [0.05, None, 0.2, 0.1])],
        value_format=format_percent,
        references=[ReferenceLine(0.1, "0.1% warning"), ReferenceLine(0.3, "0.3% limit")],
    )
    (drawn,) = chart.series
    assert drawn.path.count("M") == 2 and drawn.path.count("L") == 1
    assert len(drawn.marks) == 3
    assert chart.y_ticks[-1].text == "0.3%"  # the scale reaches the highest reference line
    assert [label for _, label, _, _ in chart.references] == ["0.3% limit", "0.1% warning"]
    assert chart.rows[1] == ("w2", ["—"])
    assert chart.rows[2] == ("w3", ["0.20%"])


def test_bars_are_grouped_per_label():
    chart = bar_chart(
        title="Consent",
        description="Grants and withdrawals.",
        labels=["Mon", "Tue"],
        series=[Series("Grants", [3, 1]), Series("Withdrawals", [0, 2])],
    )
    grants, withdrawals = chart.series
    assert len(grants.marks) == 2 and grants.colour != withdrawals.colour
    assert float(grants.marks[0].x) < float(withdrawals.marks[0].x) < float(grants.marks[1].x)
    assert grants.marks[0].height != "0.0" and withdrawals.marks[0].height == "0.0"


def test_a_chart_without_data_says_so():
    chart = line_chart(title="Empty", description="", labels=[], series=[])
    assert chart.empty
    assert "Nothing to draw yet." in render_to_string("mlm/_chart.html", {"chart": chart})


def test_the_template_writes_an_accessible_svg_and_escapes_names():
    chart = line_chart(
        title="Sends <per hour>",
        description="Deliveries sent per hour.",
        labels=["09:00", "10:00"],
        series=[Series('<script>alert("x")</script>', [4, 2])],
    )
    html = render_to_string("mlm/_chart.html", {"chart": chart})
    assert f'role="img" aria-labelledby="{chart.id}-title {chart.id}-desc"' in html
    assert f'<title id="{chart.id}-title">Sends &lt;per hour&gt;</title>' in html
    assert "<desc" in html and "<table>" in html and "<script>" not in html
    assert '<td class="num">4</td>' in html
