"""Templates a unit writes run in the sandbox: no Python internals, escaped recipient data, and
limits on output, memory and time that refuse an abusive template when saved and abort it when
rendered, leaving the worker able to go on."""

from __future__ import annotations

import time

import pytest
from django.core.exceptions import ValidationError

from campaigns.mail import CampaignMailer
from campaigns.sandbox import RenderError, RenderLimitExceeded, compile_template, render
from campaigns.sandbox_limits import RENDER_SECONDS
from recipients.models import Recipient
from tests.campaigns import factories


def run(source: str, *, html: bool = True, strict: bool = True, **variables) -> str:
    template = compile_template(source, html=html, strict=strict, part="body")
    return render(template, variables, part="body")


ESCAPES = [
    '{{ "".__class__ }}',
    "{{ first_name.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__.os }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ range.__self__ }}",
    "{{ self.__init__.__globals__ }}",
    "{{ config }}",
    "{{ config.items() }}",
    "{{ request.environ }}",
    "{{ unit.__class__ }}",
    "{{ attributes.__class__.__base__.__subclasses__() }}",
    # str.format reaching attributes (CVE-2016-10745) and through a stored reference
    # (CVE-2024-56326)
    '{{ "{0.__class__.__mro__}".format(first_name) }}',
    '{% set f = "{0.__class__}".format %}{{ f(first_name) }}',
    '{{ "{0.__class__}".format_map({"0": first_name}) }}',
    # the attr filter reaching str.format (CVE-2025-27516)
    '{{ "{0.__class__}"|attr("format")(first_name) }}',
    '{{ first_name|attr("__class__") }}',
    '{{ (first_name|attr("format"))("x") }}',
    "{{ lipsum.__globals__ }}",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_it_refuses_to_reach_python_internals(source):
    """A template that tries to reach Python internals fails to render with a clear error."""
    with pytest.raises(RenderError) as caught:
        run(source, first_name="Ann", unit={"name": "U"}, attributes={})
    message = str(caught.value)
    assert "body, line 1:" in message
    assert any(
        hint in message
        for hint in (
            "not available in mail templates",
            "is undefined",
            "cannot be called",
            "has no attribute",
        )
    ), message


def test_it_escapes_html_in_recipient_fields():
    """HTML in a recipient's data is escaped in the HTML part, kept as text in the text part."""
    variables = {"first_name": '<script>alert("x")</script>', "attributes": {"org": "<b>A&B</b>"}}
    html = run("<p>Dear {{ first_name }} of {{ attributes.org }}</p>", **variables)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "&lt;b&gt;A&amp;B&lt;/b&gt;" in html
    text = run("Dear {{ first_name }}", html=False, **variables)
    assert text == 'Dear <script>alert("x")</script>'


def test_recipient_html_is_escaped_in_a_real_mail(world):
    campaign = factories.campaign(world)
    recipient = Recipient(
        unit=world.unit, email="x@example.com", first_name="<img src=x onerror=alert(1)>"
    )
    parts, _links = CampaignMailer(campaign).recipient_parts(recipient)
    assert "<img src=x" not in parts.html
    assert "&lt;img src=x onerror=alert(1)&gt;" in parts.html
    assert parts.subject.startswith("<img src=x onerror=alert(1)>, your spring news")


def test_the_fallback_filter_gives_a_default():
    assert run('Hello {{ first_name|default("friend") }}') == "Hello friend"
    assert run('Hello {{ first_name|default("friend") }}', first_name="Ann") == "Hello Ann"


LIMITS = [
    '{{ "a" * 50000000 }}',
    "{{ [0] * 100000000 }}",
    "{% for i in range(10**9) %}{% endfor %}",
    "{% for i in range(9999) %}{% for j in range(9999) %}{% endfor %}{% endfor %}",
    '{% set s = "x" * 5000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}',
    '{% set ns = namespace(s="ab") %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}'
    "{% endfor %}",
    '{{ "a"|center(100000000) }}',
    '{{ "%0999999999d"|format(1) }}',
    '{{ "%0999999999d" % 1 }}',
    "{{ 2 ** 100000000 }}",
    '{{ ("x" * 100)|replace("", "y" * 100000) }}',
    '{{ (["y" * 1000] * 1000)|join("z" * 1000) }}',
    '{% for i in range(10000) %}{{ "a" * 1000 }}{% endfor %}',
    "{% for i in range(10000) %}" + "x" * 5000 + "{% endfor %}",
    "{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "{{ lipsum(1000000) }}",
]


@pytest.mark.parametrize("source", LIMITS)
def test_it_aborts_an_abusive_template_quickly(source):
    """The sandbox does not limit resources; our limits abort within the time budget."""
    started = time.monotonic()
    with pytest.raises(RenderError):
        run(source)
    assert time.monotonic() - started < RENDER_SECONDS + 1
    assert run("still {{ 'fine' }}") == "still fine"  # the process goes on


def test_a_limit_names_itself():
    with pytest.raises(RenderLimitExceeded, match="50,000,000 characters"):
        run('{{ "a" * 50000000 }}')
    with pytest.raises(RenderLimitExceeded, match="range"):
        run("{% for i in range(10**9) %}{% endfor %}")


def test_an_abusive_template_is_refused_when_saved(world):
    with pytest.raises(ValidationError, match="50,000,000 characters"):
        factories.campaign(world, html_body='<p>{{ "a" * 50000000 }}</p>')
    with pytest.raises(ValidationError, match=r"loop steps|longer than"):
        factories.campaign(
            world,
            html_body="{% for i in range(9999) %}{% for j in range(9999) %}{% endfor %}"
            "{% endfor %}",
        )
    with pytest.raises(ValidationError, match="not available"):
        factories.campaign(world, subject="{{ ''.__class__ }}")


def test_an_abusive_template_is_aborted_when_rendered(world):
    """A campaign saved before a limit was tightened still cannot hurt the worker."""
    campaign = factories.campaign(world)
    from campaigns.models import Campaign

    Campaign.objects.filter(pk=campaign.pk).update(html_body='{{ "a" * 50000000 }}')
    campaign.refresh_from_db()
    recipient = Recipient(unit=world.unit, email="x@example.com")
    with pytest.raises(RenderError, match="characters"):
        CampaignMailer(campaign).recipient_parts(recipient)


def test_a_syntax_error_names_the_part_and_line(world):
    with pytest.raises(ValidationError, match=r"body, line 2"):
        factories.campaign(world, html_body="<p>ok</p>\n<p>{{ first_name </p>")


def test_the_normal_template_features_still_work():
    source = (
        "{% for item in items %}{{ loop.index }}. {{ item.name|upper }}"
        "{% if not loop.last %}, {% endif %}{% endfor %}"
        " {{ attributes.get('x', 'none') }} {{ (first_name ~ '!')|lower }}"
        " {% set ns = namespace(total=0) %}{% for i in range(3) %}{% set ns.total = ns.total + i %}"
        "{% endfor %}{{ ns.total }} {{ 'a,b'.split(',')|join('+') }}"
    )
    result = run(source, items=[{"name": "a"}, {"name": "b"}], attributes={}, first_name="ANN")
    assert result == "1. A, 2. B none ann! 3 a+b"


@pytest.mark.parametrize(
    "source",
    [
        "{{ cycler }}",
        "{{ namespace }}",
        "{{ joiner }}",
        "{{ range }}",
        "{{ cycler('a', 'b') }}",
        "{{ namespace(a=1) }}",
        "{{ joiner(', ') }}",
        "{% for x in [1] %}{{ loop }}{% endfor %}",
        "{% macro m() %}x{% endmacro %}{{ m }}",
        "{{ 'abc'.upper }}",
    ],
)
def test_a_helper_object_prints_nothing_never_a_python_repr(source):
    """I10: a template never puts a Python repr (class names, addresses) into a mail."""
    assert run(f"[{source}]") == "[]"


def test_values_still_print():
    assert run("{{ 1 }} {{ 'a' }} {{ [1, 2] }} {% set n = namespace(a=3) %}{{ n.a }}") == (
        "1 a [1, 2] 3"
    )


def test_a_source_compiled_again_is_judged_and_rendered_as_the_first_time():
    """The code of a source is kept between compiles: a broken source is refused every time,
    and each compile renders its own variables."""
    for _ in range(2):
        with pytest.raises(RenderError, match="body, line 2: Expected an expression"):
            compile_template("Dear\n{% for %}", html=True, strict=True, part="body")
    assert run("Dear {{ first_name }}", first_name="Ann") == "Dear Ann"
    assert run("Dear {{ first_name }}", first_name="Ben") == "Dear Ben"


def test_the_constants_folded_in_are_those_of_the_compile():
    """Two campaigns with the same source and different constants never share a compile."""
    source = "{{ unit.name }}: {{ first_name }}"
    for name in ("Engineering", "Alumni"):
        template = compile_template(
            source, html=True, strict=True, constants={"unit": {"name": name}}
        )
        assert render(template, {"first_name": "Ann", "unit": {"name": "?"}}) == f"{name}: Ann"
