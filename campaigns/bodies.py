"""A campaign body written in Markdown or rich text, turned into the Jinja2 HTML that goes into
the unit's layout exactly where an HTML body goes.

Jinja2 runs after Markdown, on its HTML, in the same sandbox as an HTML body. Markdown is
converted once per campaign: every Jinja construct is first swapped for a marker Markdown leaves
alone (`[Unsubscribe]({{ unsubscribe_url }})` stays a link) and put back in the HTML. Recipients'
values are then autoescaped by the sandbox and never read as Markdown. Neither way of writing
may add markup through Jinja2: their bodies cannot mark a value safe or turn autoescaping off, a
`{% raw %}` block comes out as text, a `{` that Markdown produced (from `\\{` or `&#123;`) is
written as an entity rather than opening a new construct, and a construct left open is refused.

Rich text is HTML from the editor in the browser, so it is cut down to a small allow-list (nh3)
when saved and again when rendered; inside a construct the editor's entities (`&nbsp;`, `&gt;`)
and tags are undone, so `{{ first_name }}` typed in the editor works as it does in Markdown.
"""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Callable

import nh3
from jinja2 import TemplateSyntaxError, nodes
from markdown_it import MarkdownIt

from campaigns.models import BodyFormat
from campaigns.sandbox import JINJA_CONSTRUCT, RenderError, environment

# CommonMark with raw HTML off: what an editor types is text, never markup.
_MARKDOWN = MarkdownIt("commonmark", {"html": False})

RICH_TEXT_TAGS = frozenset(
    {
        "p",
        "br",
        "div",
        "strong",
        "b",
        "em",
        "i",
        "u",
        "s",
        "strike",
        "a",
        "ul",
        "ol",
        "li",
        "h1",
        "h2",
        "h3",
        "blockquote",
        "pre",
        "code",
        "hr",
    }
)
RICH_TEXT_ATTRIBUTES = {"a": {"href", "title"}}
RICH_TEXT_URL_SCHEMES = frozenset({"http", "https", "mailto"})

_OPENING = re.compile(r"\{[{%#]")
_RAW = re.compile(r"\{%-?\s*raw\s*-?%\}(.*?)\{%-?\s*endraw\s*-?%\}", re.S)
_TAG = re.compile(r"<[^>]*>")


def sanitize_rich_text(body: str) -> str:
    """A rich-text body cut down to the allow-list: no script, style, event attribute, image
    or unknown tag survives, and links are http, https or mailto (or a `{{ … }}` placeholder)."""
    return nh3.clean(
        body,
        tags=set(RICH_TEXT_TAGS),
        attributes={tag: set(names) for tag, names in RICH_TEXT_ATTRIBUTES.items()},
        url_schemes=set(RICH_TEXT_URL_SCHEMES),
        strip_comments=True,
        link_rel=None,  # a mail's links open in the reader's browser: no opener to guard
    )


def body_html(*, body_format: str, body: str) -> str:
    """The Jinja2 HTML of a body as written (raises RenderError naming the part and line)."""
    if body_format == BodyFormat.HTML:
        return body
    if body_format == BodyFormat.MARKDOWN:
        _parse(body)  # a syntax error is reported at the line the editor wrote
        source = _markdown(body)
    elif body_format == BodyFormat.RICH_TEXT:
        source = _rich_text(body)
    else:
        raise RenderError(f"unknown body format {body_format!r}", part="body")
    _refuse_markup(_parse(source))
    return source


def _parse(source: str) -> nodes.Template:
    try:
        return environment(html=True, strict=False).parse(source)
    except TemplateSyntaxError as error:
        raise RenderError(
            error.message or "syntax error", part="body", lineno=error.lineno
        ) from None


def _refuse_markup(tree: nodes.Template) -> None:
    """Markdown and rich text stay markup-free: only an HTML body may print unescaped HTML."""
    for node in tree.find_all((nodes.Filter, nodes.EvalContextModifier)):
        if isinstance(node, nodes.EvalContextModifier) or node.name == "safe":
            raise RenderError(
                "a Markdown or rich-text body cannot print unescaped HTML (the safe filter, "
                "autoescape): write the body in HTML for that",
                part="body",
                lineno=node.lineno,
            )


def _split(source: str) -> tuple[list[str], list[str]]:
    """Literal text and Jinja constructs, alternating (one more literal than constructs)."""
    literals: list[str] = []
    constructs: list[str] = []
    position = 0
    for match in [*JINJA_CONSTRUCT.finditer(source), None]:
        end = match.start() if match else len(source)
        literal = source[position:end]
        opening = _OPENING.search(literal)
        if opening:
            raise RenderError(
                f"{opening.group(0)!r} opens a template tag that is never closed",
                part="body",
                lineno=source.count("\n", 0, position + opening.start()) + 1,
            )
        literals.append(literal)
        if match:
            constructs.append(match.group(0))
            position = match.end()
    return literals, constructs


def _join(literals: list[str], marker: Callable[[int], str]) -> str:
    out = [literals[0]]
    for index, literal in enumerate(literals[1:]):
        out.append(marker(index))
        out.append(literal)
    return "".join(out)


def _markdown(body: str) -> str:
    literals, constructs = _split(body)
    nonce = uuid.uuid4().hex[:12]  # markers no text of the body can contain by chance
    marker = re.compile(rf"mlm{nonce}m(\d+)x")
    html_source = _MARKDOWN.render(_join(literals, lambda i: f"mlm{nonce}m{i}x"))

    def is_statement(index: int) -> bool:
        return constructs[index].startswith(("{%", "{#")) and not _RAW.fullmatch(constructs[index])

    def unwrap(match: re.Match) -> str:
        # `{% if … %}` on a line of its own stands between blocks, not in an empty paragraph.
        indexes = [int(i) for i in marker.findall(match.group(1))]
        return match.group(1).strip() + "\n" if all(map(is_statement, indexes)) else match.group(0)

    html_source = re.sub(rf"<p>((?:mlm{nonce}m\d+x\s*)+)</p>\n?", unwrap, html_source)

    def restore(index: int) -> str:
        raw = _RAW.fullmatch(constructs[index])
        if raw:  # shown as written, never run and never markup
            return html.escape(raw.group(1)).replace("{", "&#123;")
        return constructs[index]

    out = []
    position = 0
    for match in marker.finditer(html_source):
        out.append(html_source[position : match.start()].replace("{", "&#123;"))
        out.append(restore(int(match.group(1))))
        position = match.end()
    out.append(html_source[position:].replace("{", "&#123;"))
    return "".join(out)


def _rich_text(body: str) -> str:
    literals, constructs = _split(sanitize_rich_text(body))

    def restore(construct: str) -> str:
        if _RAW.fullmatch(construct):
            return construct  # its inside is sanitised HTML, printed as is
        return html.unescape(_TAG.sub("", construct)).replace("\xa0", " ")

    restored = [restore(construct) for construct in constructs]
    return _join(literals, lambda i: restored[i])
