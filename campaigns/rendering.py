"""The rendering pipeline of a campaign: compile each template once, inline CSS once, derive the
text part once; then per recipient only render.

CSS is inlined (css-inline) into the template *source*, with every Jinja construct protected by a
marker the HTML parser keeps in place (a comment in content, a plain word in attribute values),
so a campaign pays for inlining once, not once per recipient. The same trick turns the HTML into
a text *template* (inscriptis), so the text part costs one more render, not an HTML parse.

Inlining once is only right when the result cannot depend on the recipient. We fall back to the
slow path (render, then inline or convert, per recipient) when a construct sits where selectors
or styles could change (inside `<style>`, in `class`, `id` or `style`, between attributes), when
a block (`{% if %}`, `{% for %}`…) opens or closes HTML elements unevenly, when a marker does not
come back exactly once and in order, or when the fast and slow paths disagree for the sample
recipient. `CompiledMail.inlined_once` and `text_derived_once` say which path a campaign takes.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import css_inline
from inscriptis import get_text
from inscriptis.model.config import ParserConfig
from jinja2 import Template

from campaigns.bodies import body_html
from campaigns.models import BodyFormat
from campaigns.sandbox import RenderError, compile_template, render
from campaigns.template_scan import protected, restore, scan_template

CONTENT_SLOT = re.compile(r"\{\{-?\s*content\s*-?\}\}")
_TEXT_LINK = re.compile(r"\[([^\]\n]*)\]\(([^)\s]+)\)")
_TEXT_CONFIG = ParserConfig(display_links=True, display_images=False)
# Splits the parts of the one-template fast path. Random, so no template or recipient can write
# it; the same for the whole process, so a source compiled again is the same source (the
# sandbox keeps its compiled code).
_SEPARATOR = f"\x1e{uuid.uuid4().hex}\x1e"
_INLINER = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


def html_to_text(html: str) -> str:
    """The plain-text part of an HTML mail: layout-aware text, links as `text (url)`."""
    text = get_text(html, _TEXT_CONFIG)

    def link(match: re.Match) -> str:
        label, url = match.group(1).strip(), match.group(2)
        return url if not label or label == url else f"{label} ({url})"

    text = _TEXT_LINK.sub(link, text)
    lines = [line.strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def inline_css(html: str) -> str:
    """Move the `<style>` rules into `style` attributes (media queries stay in `<style>`)."""
    return _INLINER.inline(html)


def combine(body: str, layout: str | None) -> str:
    """The body placed in the layout's `{{ content }}` (one template: rendered in one pass)."""
    if not layout:
        return body
    match = CONTENT_SLOT.search(layout)
    if match is None:
        raise RenderError("the layout has no {{ content }} where the body goes", part="layout")
    return layout[: match.start()] + body + layout[match.end() :]


def _same_html(a: str, b: str) -> bool:
    from lxml import html as lxml_html

    def norm(s: str) -> bytes:
        return lxml_html.tostring(lxml_html.document_fromstring(s), method="html")

    try:
        return norm(a) == norm(b)
    except Exception:
        return False


def _same_text(a: str, b: str) -> bool:
    return a.split() == b.split()


@dataclass
class MailParts:
    subject: str
    html: str
    text: str


class CompiledMail:
    """A campaign's subject, HTML (body in layout) and text, compiled once, rendered per
    recipient. The body is written in `body_format` (campaigns.bodies turns Markdown and rich
    text into the HTML that goes into the layout). `strict` renders undefined names as errors
    (content checks), otherwise as empty (sending). `sample` is one recipient's variables: the
    fast paths are verified on it.

    The fast path renders all three parts with one template (subject and text in
    `{% autoescape false %}` blocks, split by `_SEPARATOR`): one context per recipient
    instead of three. The parts compiled on their own stay for the slow path and for errors.
    """

    def __init__(
        self,
        *,
        subject: str,
        html_body: str,
        body_format: str = BodyFormat.HTML,
        layout: str | None = None,
        text_body: str = "",
        strict: bool,
        sample: dict[str, Any],
        constants: dict[str, Any] | None = None,
    ) -> None:
        self.strict = strict
        html_body = body_html(body_format=body_format, body=html_body)
        fold = {"constants": constants}
        self.subject_template = compile_template(
            subject, html=False, strict=strict, part="subject", **fold
        )
        compile_template(html_body, html=True, strict=strict, part="body")
        if layout:
            compile_template(CONTENT_SLOT.sub("", layout), html=True, strict=strict, part="layout")
        combined = combine(html_body, layout)
        slot = CONTENT_SLOT.search(layout) if layout else None
        self._layout_lines = layout[: slot.start()].count("\n") if slot else 0
        self._body_lines = html_body.count("\n")
        # Lines of a Markdown or rich-text body's HTML are not the lines the editor wrote.
        self._body_lines_written = body_format == BodyFormat.HTML
        self.plain_template = compile_template(
            combined, html=True, strict=strict, part="body", **fold
        )
        scan = scan_template(combined)
        self.dynamic_reason = scan.dynamic
        html_source = combined
        self.inlined_once = False
        if scan.dynamic is None:
            restored = restore(inline_css(protected(scan, comments=True)), scan, every=True)
            if restored is None:
                self.dynamic_reason = "the HTML parser moved a template tag"
            else:
                html_source, self.inlined_once = restored, True
        self.text_template: Template | None = None
        self.text_written = bool(text_body.strip())
        text_source = None
        if self.text_written:
            text_source = text_body
            self.text_template = compile_template(
                text_body, html=False, strict=strict, part="text", **fold
            )
        else:
            text_source = restore(html_to_text(protected(scan, comments=False)), scan)
        self.text_derived_once = False
        if text_source is not None and not self.text_written:
            try:
                self.text_template = compile_template(
                    text_source, html=False, strict=strict, **fold
                )
                self.text_derived_once = True
            except RenderError:
                text_source = None
        self.html_template: Template = self.plain_template
        if self.inlined_once:
            self.html_template = compile_template(html_source, html=True, strict=strict, **fold)
        self.one_template: Template | None = None
        if self.inlined_once and text_source is not None:
            try:
                self.one_template = compile_template(
                    "{% autoescape false %}"
                    + subject
                    + "{% endautoescape %}"
                    + _SEPARATOR
                    + html_source
                    + _SEPARATOR
                    + "{% autoescape false %}"
                    + text_source
                    + "{% endautoescape %}",
                    html=True,
                    strict=strict,
                    **fold,
                )
            except RenderError:
                self.one_template = None
        self._verify(sample)

    def _verify(self, sample: dict[str, Any]) -> None:
        """Check the fast paths against the slow ones for the sample; fall back if they differ."""
        try:
            slow_html = inline_css(render(self.plain_template, sample, part="body"))
            slow_subject = self._subject(render(self.subject_template, sample, part="subject"))
        except RenderError as error:
            if self.strict:
                raise self._located(error) from None
            self.one_template = None
            return
        if self.inlined_once:
            fast = self._try(self.html_template, sample)
            if fast is None or not _same_html(fast, slow_html):
                self.html_template, self.inlined_once = self.plain_template, False
                self.dynamic_reason = "the once-inlined HTML differs from the per-recipient one"
                self.one_template = None
        if self.text_derived_once:
            fast_text = self._try(self.text_template, sample)
            if fast_text is None or not _same_text(fast_text, html_to_text(slow_html)):
                self.text_template, self.text_derived_once = None, False
                self.one_template = None
        if self.one_template is not None:
            parts = self._render_one(sample)
            if (
                parts is None
                or parts.subject != slow_subject
                or not _same_html(parts.html, slow_html)
                or parts.text != render(self.text_template, sample)
            ):
                self.one_template = None

    @staticmethod
    def _try(template: Template, variables: dict[str, Any]) -> str | None:
        try:
            return render(template, variables)
        except RenderError:
            return None

    def _render_one(self, variables: dict[str, Any]) -> MailParts | None:
        output = self._try(self.one_template, variables)
        if output is None:
            return None
        # find/rfind rather than split: the subject is short and the text comes last, so both
        # searches stop early (str.split would scan the whole mail, a tenth of the render).
        first, last = output.find(_SEPARATOR), output.rfind(_SEPARATOR)
        if first < 0 or first == last:
            return None
        return MailParts(
            subject=self._subject(output[:first]),
            html=output[first + len(_SEPARATOR) : last],
            text=output[last + len(_SEPARATOR) :],
        )

    def _located(self, error: RenderError) -> RenderError:
        """Name the part (layout or body) and its own line for an error in the combined HTML."""
        if error.part != "body" or not error.lineno:
            return error
        line = error.lineno - 1  # 0-based in the combined source
        if line < self._layout_lines:
            return type(error)(error.detail, part="layout", lineno=line + 1)
        if line <= self._layout_lines + self._body_lines:
            body_line = line - self._layout_lines + 1 if self._body_lines_written else None
            return type(error)(error.detail, part="body", lineno=body_line)
        return type(error)(error.detail, part="layout", lineno=line - self._body_lines + 1)

    @staticmethod
    def _subject(text: str) -> str:
        # One line: a newline in recipient data must not start a new header.
        return " ".join(text.split())

    def render_subject(self, variables: dict[str, Any]) -> str:
        return self._subject(render(self.subject_template, variables, part="subject"))

    def render_html(self, variables: dict[str, Any]) -> str:
        if self.inlined_once:
            html = self._try(self.html_template, variables)
            if html is not None:
                return html
        try:  # the slow path, or the error with the line of the source as written
            html = render(self.plain_template, variables, part="body")
        except RenderError as error:
            raise self._located(error) from None
        return inline_css(html)

    def render_text(self, variables: dict[str, Any], html: str) -> str:
        if self.text_template is None:
            return html_to_text(html)
        part = "text" if self.text_written else "text part"
        return render(self.text_template, variables, part=part)

    def render(self, variables: dict[str, Any]) -> MailParts:
        """One recipient's subject, HTML and text (raises RenderError naming part and line)."""
        if self.one_template is not None:
            parts = self._render_one(variables)
            if parts is not None:
                return parts
        html = self.render_html(variables)
        return MailParts(
            subject=self.render_subject(variables),
            html=html,
            text=self.render_text(variables, html),
        )
