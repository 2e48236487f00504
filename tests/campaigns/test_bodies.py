"""Bodies written in Markdown, rich text or HTML: each becomes HTML in the unit's layout, runs in
the same Jinja2 sandbox, and is previewed, checked and sent by the same code."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse
from django.utils import timezone

from campaigns.bodies import body_html, sanitize_rich_text
from campaigns.checks import run_checks
from campaigns.demo import DEMO_LAYOUT
from campaigns.mail import SAMPLE_RECIPIENT, SAMPLE_UNSUBSCRIBE_URL, LinkMaker
from campaigns.models import BodyFormat, Campaign, CampaignStatus
from campaigns.rendering import CompiledMail
from campaigns.sandbox import RenderError
from campaigns.sending.batches import batch_send
from campaigns.sending.start import campaign_start
from campaigns.services.authoring import campaign_update
from tests.campaigns import factories
from tests.personas import make_world

MARKDOWN_BODY = """# Hello {{ first_name|default("friend") }}

{% if attributes.programme %}
News for the **{{ attributes.programme }}** community.
{% endif %}

Open Day is on *Saturday*: [see the programme](https://www.example.edu/open-day).

- Robotics laboratory
- Design awards
"""
RICH_TEXT_BODY = (
    '<h1>Hello {{&nbsp;first_name|default("friend") }}</h1>'
    "<p>Open Day is on <em>Saturday</em>: "
    '<a href="https://www.example.edu/open-day">see the programme</a>.</p>'
    "<ul><li>Robotics laboratory</li><li>Design awards</li></ul>"
)
HTML_BODY = (
    '<h1>Hello {{ first_name|default("friend") }}</h1>'
    "<p>Open Day is on <em>Saturday</em>: "
    '<a href="https://www.example.edu/open-day">see the programme</a>.</p>'
    "<ul><li>Robotics laboratory</li><li>Design awards</li></ul>"
)
LAYOUT = (
    "<html><body><div class='content'>{{ content }}</div><p>{{ unit.postal_address }} "
    "<a href='{{ unsubscribe_url }}'>Unsubscribe</a></p></body></html>"
)
VARS = {
    **SAMPLE_RECIPIENT,
    "unit": {"name": "U", "postal_address": "1 Road"},
    "unsubscribe_url": "https://x.test/u/1",
    "preferences_url": "https://x.test/p/1",
}
BODIES = {
    BodyFormat.MARKDOWN: MARKDOWN_BODY,
    BodyFormat.RICH_TEXT: RICH_TEXT_BODY,
    BodyFormat.HTML: HTML_BODY,
}
EVERY_FORMAT = pytest.mark.parametrize("body_format", list(BODIES))


def compiled(body: str, body_format: str, layout: str | None = LAYOUT) -> CompiledMail:
    return CompiledMail(
        subject="Hi {{ first_name }}",
        html_body=body,
        body_format=body_format,
        layout=layout,
        strict=False,
        sample=VARS,
    )


def squeeze(html: str) -> str:
    return re.sub(r"\s+", " ", html)


# Markdown ----------------------------------------------------------------------------------------


def test_it_puts_markdown_into_the_layout_where_the_body_goes():
    body = MARKDOWN_BODY + "\n[Leave this list]({{ unsubscribe_url }})\n"
    parts = compiled(body, BodyFormat.MARKDOWN).render(
        {**VARS, "first_name": "Ann", "attributes": {"programme": "Civil Engineering"}}
    )
    html = squeeze(parts.html)
    assert "<h1>Hello Ann</h1>" in html
    assert "<strong>Civil Engineering</strong>" in html
    assert "<em>Saturday</em>" in html and "<li>Robotics laboratory</li>" in html
    assert '<a href="https://x.test/u/1">Leave this list</a>' in html
    assert "1 Road" in html  # the layout's footer, around the body
    assert "<p></p>" not in html  # a statement on its own line makes no empty paragraph
    assert "Hello Ann" in parts.text and "Leave this list (https://x.test/u/1)" in parts.text


def test_it_leaves_out_a_markdown_block_whose_condition_is_false():
    html = compiled(MARKDOWN_BODY, BodyFormat.MARKDOWN).render(VARS).html
    assert "community" not in html and "<h1>Hello Chris</h1>" in html


def test_it_reads_recipient_values_as_text_never_as_markdown_or_html():
    """Jinja2 runs after Markdown, so a recipient's name is escaped by the sandbox, not parsed."""
    name = "*Ann* <script>alert(1)</script> [x](javascript:alert(1))"
    html = (
        compiled("Hello {{ first_name }}", BodyFormat.MARKDOWN)
        .render({**VARS, "first_name": name})
        .html
    )
    assert "<script>" not in html and "<em>" not in html and 'href="javascript' not in html
    assert "*Ann* &lt;script&gt;alert(1)&lt;/script&gt; [x](javascript:alert(1))" in html


def test_it_keeps_raw_html_in_markdown_as_text():
    body = (
        '<script>alert(1)</script>\n\n<img src="x" onerror="alert(1)">\n\n[x](javascript:alert(1))'
    )
    source = body_html(body_format=BodyFormat.MARKDOWN, body=body)
    assert "<script" not in source and "<img" not in source and 'href="javascript' not in source
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in source


@pytest.mark.parametrize(
    "body",
    [
        '{{ "<script>alert(1)</script>"|safe }}',
        "{% autoescape false %}{{ first_name }}{% endautoescape %}",
        '{% filter safe %}{{ "<b>" }}{% endfilter %}',
    ],
)
@pytest.mark.parametrize("body_format", [BodyFormat.MARKDOWN, BodyFormat.RICH_TEXT])
def test_it_refuses_unescaped_output_outside_an_html_body(body, body_format):
    with pytest.raises(RenderError, match="cannot print unescaped HTML"):
        compiled(body, body_format)


def test_a_raw_block_in_markdown_is_shown_as_text():
    html = (
        compiled(
            "Write {% raw %}<b>{{ first_name }}</b>{% endraw %} in a template.", BodyFormat.MARKDOWN
        )
        .render(VARS)
        .html
    )
    assert "&lt;b&gt;" in html and "<b>" not in html
    assert "Chris" not in html.split("Write")[1]  # the raw block is not run


@pytest.mark.parametrize("body", ["&#123;{ 7 * 7 }}", "{\\{ 7 * 7 }}"])
def test_markdown_cannot_make_a_template_tag_the_sandbox_did_not_see(body):
    """A `{` that Markdown produces (an entity, an escape) stays text, never a new construct."""
    mail_parts = compiled(body, BodyFormat.MARKDOWN).render(VARS)
    assert "49" not in mail_parts.html.replace("7 * 7", "")


def test_it_names_the_line_of_an_unclosed_placeholder_in_markdown():
    with pytest.raises(RenderError) as error:
        compiled("# Hello\n\nDear {{ first_name\n", BodyFormat.MARKDOWN)
    assert error.value.part == "body" and error.value.lineno == 3


def test_a_render_error_in_markdown_names_the_body_but_no_line_of_its_html():
    """The HTML's lines are not the lines the editor wrote: no line beats a wrong one."""
    with pytest.raises(RenderError) as error:
        CompiledMail(
            subject="Hi",
            html_body="# Hello\n\nSome text.\n\nDear {{ nobody_knows }}\n",
            body_format=BodyFormat.MARKDOWN,
            layout=LAYOUT,
            strict=True,
            sample=VARS,
        )
    assert error.value.part == "body" and error.value.lineno is None
    assert "nobody_knows" in str(error.value)


@pytest.mark.parametrize(
    ("body", "refusal"),
    [
        ('Hello {{ "a" * 50000000 }}', "50,000,000 characters"),
        ("{% for i in range(9999) %}{% for j in range(9999) %}{% endfor %}{% endfor %}", "loop"),
        ("Hello {{ ''.__class__ }}", "not available"),
        ("Hello {{ first_name.__class__.__mro__ }}", "not available"),
    ],
)
@EVERY_FORMAT
def test_the_sandbox_holds_in_every_format(world, body_format, body, refusal):
    """Markdown and rich text reach Jinja2 through the same sandbox and limits as HTML."""
    with pytest.raises(ValidationError, match=refusal):
        factories.campaign(world, body_format=body_format, html_body=body)


# Rich text ---------------------------------------------------------------------------------------


def test_it_cuts_rich_text_down_to_the_allow_list():
    dirty = (
        '<p onclick="steal()" style="color:red">Hi <strong>there</strong></p>'
        "<script>alert(1)</script><style>p { color: red }</style>"
        '<img src="https://x.example/t.gif" onerror="alert(1)">'
        '<a href="javascript:alert(1)">bad</a><a href="https://ok.example/">good</a>'
        "<iframe src='https://x.example'></iframe><!-- note -->"
    )
    clean = sanitize_rich_text(dirty)
    for gone in ("onclick", "style", "script", "alert", "<img", "iframe", "javascript", "note"):
        assert gone not in clean
    assert "<p>Hi <strong>there</strong></p>" in clean
    assert 'href="https://ok.example/"' in clean


def test_placeholders_typed_in_the_rich_text_editor_work():
    body = (
        "<p>Dear {{&nbsp;<b>first_name</b>|default(&quot;friend&quot;) }},</p>"
        '<p><a href="{{ unsubscribe_url }}">Leave this list</a></p>'
    )
    html = compiled(body, BodyFormat.RICH_TEXT).render({**VARS, "first_name": "Ann"}).html
    assert "<p>Dear Ann,</p>" in html
    assert 'href="https://x.test/u/1"' in html


def test_rich_text_is_sanitised_again_when_rendered():
    """A body stored before sanitising, or written around the service, still loses its script."""
    html = compiled("<p>Hi</p><script>alert(1)</script>", BodyFormat.RICH_TEXT).render(VARS).html
    assert "<script" not in html and "<p>Hi</p>" in html


def test_it_stores_rich_text_only_sanitised(world):
    campaign = factories.campaign(
        world,
        body_format=BodyFormat.RICH_TEXT,
        html_body='<p onmouseover="x()">Hi</p><script>alert(1)</script>',
    )
    campaign.refresh_from_db()
    assert campaign.html_body == "<p>Hi</p>"


# The same preview, checks and sending for every format ------------------------------------------


@EVERY_FORMAT
def test_every_format_renders_the_same_mail(body_format):
    html = squeeze(compiled(BODIES[body_format], body_format).render(VARS).html)
    assert "<h1>Hello Chris</h1>" in html
    assert '<a href="https://www.example.edu/open-day">see the programme</a>' in html
    assert "<li>Robotics laboratory</li>" in html and "1 Road" in html


@EVERY_FORMAT
def test_the_live_preview_renders_each_format(world, client_for, body_format):
    form = {
        "subject": "Hi {{ first_name }}",
        "body_format": body_format,
        "html_body": BODIES[body_format],
        "layout": factories.layout(world.unit).pk,
        "dm_type": factories.dm_type(world.unit).pk,
    }
    url = reverse("campaign_live_preview", args=[world.unit.slug])
    page = client_for(world.bob).post(url, form).content.decode()
    assert "Subject:</strong> Hi Chris" in page
    assert "Hello Chris" in page  # the text part
    key = page.split("?key=")[1].split('"')[0]
    html = squeeze(cache.get(f"campaigns:preview:{key}")["html"])
    assert "Hello Chris</h1>" in html and "see the programme</a>" in html
    assert SAMPLE_UNSUBSCRIBE_URL in html  # from the layout's footer


@EVERY_FORMAT
def test_the_content_checks_pass_for_each_format(world, body_format):
    campaign = factories.campaign(world, body_format=body_format, html_body=BODIES[body_format])
    report = run_checks(campaign)
    assert report.passed, [(r.key, r.message) for r in report.failing]


@EVERY_FORMAT
def test_the_content_checks_find_a_missing_unsubscribe_link_in_each_format(world, body_format):
    """I5: the unsubscribe link comes from the layout, whatever the body's format."""
    layout = factories.layout(
        world.unit,
        DEMO_LAYOUT.replace('href="{{ unsubscribe_url }}"', 'href="https://x.example/"'),
        name="No unsubscribe",
    )
    campaign = factories.campaign(
        world, body_format=body_format, html_body=BODIES[body_format], layout=layout
    )
    failing = {r.key for r in run_checks(campaign).failing}
    assert "unsubscribe_link" in failing


@EVERY_FORMAT
def test_the_checks_find_banned_words_in_each_format(world, body_format):
    body = BODIES[body_format].replace("Design awards", "Guaranteed prizes")
    campaign = factories.campaign(world, body_format=body_format, html_body=body)
    assert "banned_words" in {r.key for r in run_checks(campaign).failing}


@EVERY_FORMAT
def test_dispatch_sends_the_html_of_each_format(world, body_format):
    """The sent mail is rendered by the same CompiledMail as the preview, in its layout (I5)."""
    news = factories.dm_type(world.unit)
    target = factories.recipient_list(world.unit, name="Batch")
    ann = factories.member(target, "ann@example.com", granted=news, first_name="Ann")
    campaign = factories.campaign(
        world, lists=[target], body_format=body_format, html_body=BODIES[body_format]
    )
    Campaign.objects.filter(pk=campaign.pk).update(
        status=CampaignStatus.SCHEDULED, scheduled_at=timezone.now() - timedelta(seconds=1)
    )
    campaign.refresh_from_db()
    campaign_start(campaign=campaign, by=None)
    batch_send(campaign_id=campaign.pk)
    sent = mail.outbox[0]
    html = squeeze(sent.alternatives[0][0])
    assert "Hello Ann</h1>" in html and "see the programme</a>" in html
    assert "<li" in html and "Robotics laboratory</li>" in html
    assert "**" not in html and "{{" not in html and "&nbsp;first_name" not in html
    # the layout's real link, not the sample one
    assert f'href="{LinkMaker(campaign).links(ann).unsubscribe}"' in html
    assert "Hello Ann" in sent.body and "Robotics laboratory" in sent.body


# The form ----------------------------------------------------------------------------------------


def test_a_new_campaign_is_written_in_markdown_and_html_is_for_experts(world, client_for):
    page = client_for(world.bob).get(reverse("campaign_create", args=[world.unit.slug]))
    html = page.content.decode()
    checked = re.search(r'<input[^>]*name="body_format"[^>]*checked[^>]*>', html).group(0)
    assert 'value="markdown"' in checked
    assert "Rich text" in html and "HTML (Jinja2, for experts)" in html
    assert "vendor/pell/pell.min.js" in html and "mlm/rich-text.js" in html
    assert "<script>" not in html  # the editor's glue is a static file (CSP: no inline scripts)


def test_the_campaign_page_says_how_the_body_is_written(world, client_for):
    campaign = factories.campaign(world, body_format=BodyFormat.RICH_TEXT, html_body="<p>Hi</p>")
    url = reverse("campaign_detail", args=[world.unit.slug, campaign.code])
    page = client_for(world.bob).get(url).content.decode()
    assert "<dt>Body written in</dt><dd>Rich text</dd>" in page


def test_editing_keeps_the_body_format(world):
    campaign = factories.campaign(world, body_format=BodyFormat.MARKDOWN, html_body="Hi *there*")
    campaign_update(
        campaign=campaign,
        by=world.bob,
        name=campaign.name,
        dm_type=campaign.dm_type,
        audience=campaign.audience,
        lists=campaign.lists.all(),
        identity=campaign.identity,
        subject=campaign.subject,
        html_body="Hi **there**",
        layout=campaign.layout,
    )
    campaign.refresh_from_db()
    assert campaign.body_format == BodyFormat.MARKDOWN and campaign.html_body == "Hi **there**"


# The migration ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_campaigns_written_before_body_formats_migrate_as_html():
    campaign = factories.campaign(make_world())
    executor = MigrationExecutor(connection)
    executor.migrate([("campaigns", "0006_sender_identity_status")])
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE campaigns_campaign SET html_body = %s WHERE id = %s",
            ["<p>Old</p>", campaign.pk],
        )
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    campaign.refresh_from_db()
    assert campaign.body_format == BodyFormat.HTML and campaign.html_body == "<p>Old</p>"
    assert Campaign._meta.get_field("body_format").default == BodyFormat.MARKDOWN
