"""Where each Jinja construct of a template stands in its HTML, and markers that carry the
constructs through an HTML parser (CSS inlining, text conversion) and back.

`scan_template` splits a template into literal HTML and constructs and says why the parsed result
could depend on the recipient (`Scan.dynamic`); `protected` puts a marker in place of each
construct; `restore` puts the constructs back, or answers None when the parser lost, doubled or
moved a marker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from campaigns.sandbox import JINJA_CONSTRUCT

_KEYWORD = re.compile(r"\{%-?\+?\s*(\w+)")
_OPENERS = {"if", "for", "macro", "call", "filter", "block", "with", "set", "autoescape"}
_MIDDLES = {"elif", "else"}
_VOID = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "param",
    "source",
    "track",
    "wbr",
}
_RAWTEXT = {"style", "script", "title", "textarea"}
_DYNAMIC_ATTRIBUTES = {"class", "id", "style"}
_JINJA_OPENING = re.compile(r"\{[{%#]")


@dataclass
class _Construct:
    source: str
    where: str  # data | attr | rcdata | tag | style | comment


@dataclass
class Scan:
    """A template as literal HTML and Jinja constructs, and why inlining could depend on the
    recipient (None: it cannot)."""

    pieces: list[str | int]  # literal text and indexes of constructs, in order
    constructs: list[_Construct]
    dynamic: str | None  # why the inline result could depend on the recipient


class _Scanner:
    """Walks the literal HTML between a template's Jinja constructs, as an HTML parser would:
    where each construct stands, and whether the blocks keep the elements balanced."""

    def __init__(self) -> None:
        self.dynamic: str | None = None  # why the inline result could depend on the recipient
        self.state = "data"  # data | tag | comment | raw
        self.tag = ""
        self.closing = False
        self.self_closed = False
        self.quote = ""
        self.attr = ""
        self.value_attr = ""
        self.raw_tag = ""
        self.stack: list[str] = []  # open elements
        self.regions: list[int] = []  # the stack's depth where each open block began
        self._steps = {
            "data": self._data,
            "comment": self._comment,
            "raw": self._raw,
            "tag": self._tag,
        }

    def unbalanced(self, reason: str) -> None:
        self.dynamic = self.dynamic or reason

    def read(self, literal: str) -> None:
        """Advance over literal HTML; each step answers where the next one starts."""
        i = 0
        while i < len(literal):
            i = self._steps[self.state](literal, i)

    def _data(self, literal: str, i: int) -> int:
        if literal.startswith("<!--", i):
            self.state = "comment"
            return i + 4
        if (
            literal[i] == "<"
            and i + 1 < len(literal)
            and (literal[i + 1].isalpha() or literal[i + 1] == "/")
        ):
            self.closing = literal[i + 1] == "/"
            j = i + (2 if self.closing else 1)
            k = j
            while k < len(literal) and (literal[k].isalnum() or literal[k] in "-:"):
                k += 1
            self.tag, self.state = literal[j:k], "tag"
            self.quote = self.attr = self.value_attr = ""
            self.self_closed = False
            return k
        return i + 1

    def _comment(self, literal: str, i: int) -> int:
        if literal.startswith("-->", i):
            self.state = "data"
            return i + 3
        return i + 1

    def _raw(self, literal: str, i: int) -> int:
        if literal[i:].lower().startswith(f"</{self.raw_tag}"):
            self.state = "data"  # the closing tag is read as data
            return i
        return i + 1

    def _tag(self, literal: str, i: int) -> int:
        ch = literal[i]
        if self.quote:
            if ch == self.quote:
                self.quote, self.value_attr = "", ""
        elif ch in "\"'":
            self.quote, self.value_attr = ch, self.attr
        elif ch == ">":
            self.self_closed = i > 0 and literal[i - 1] == "/"
            self._end_tag()
        elif not (ch == "=" or ch.isspace()):
            k = i
            while k < len(literal) and not (literal[k].isspace() or literal[k] in "=>/\"'"):
                k += 1
            if k > i:
                self.attr = literal[i:k].lower()
                return k
        return i + 1

    def _end_tag(self) -> None:
        name = self.tag.lower()
        if self.closing:
            if name in self.stack:
                while self.stack:
                    top = self.stack.pop()
                    if self.regions and len(self.stack) < self.regions[-1]:
                        self.unbalanced("a template block closes an element it did not open")
                    if top == name:
                        break
        elif name and name not in _VOID and not self.self_closed:
            if name in _RAWTEXT:
                self.state, self.raw_tag = "raw", name
                return
            self.stack.append(name)
        self.state = "data"

    def place(self, text: str) -> _Construct:
        """The construct `text` where the HTML stands now."""
        where = self._where()
        if text.startswith("{%") and where == "data":
            self._track_block(text)
        if "|safe" in text.replace(" ", "") and text.startswith("{{"):
            self.unbalanced("a value is marked safe and may carry HTML")
        return _Construct(text, where)

    def _where(self) -> str:
        if self.state == "tag":
            if not self.quote:
                self.unbalanced("a template tag stands between HTML attributes")
                return "tag"
            if self.value_attr in _DYNAMIC_ATTRIBUTES:
                self.unbalanced(f"a template tag is in a {self.value_attr} attribute")
            return "attr"
        if self.state == "raw":
            if self.raw_tag == "style":
                self.unbalanced("a template tag is inside <style>")
                return "style"
            return "rcdata"
        return self.state  # data or comment

    def _track_block(self, text: str) -> None:
        """A block opened, continued or closed in content: the elements must match its ends."""
        keyword = (_KEYWORD.match(text) or [None, ""])[1]
        is_block_set = keyword == "set" and "=" not in text
        if keyword in _OPENERS and (keyword != "set" or is_block_set):
            self.regions.append(len(self.stack))
        elif self.regions and (keyword in _MIDDLES or keyword.startswith("end")):
            closes = keyword.startswith("end") and keyword != "endraw"
            depth = self.regions.pop() if closes else self.regions[-1]
            if len(self.stack) != depth:
                self.unbalanced("a template block leaves an element open")


def scan_template(source: str) -> Scan:
    """Split a template into literal HTML and Jinja constructs, noting where each construct
    stands in the HTML and whether the blocks keep the elements balanced."""
    scanner = _Scanner()
    pieces: list[str | int] = []
    constructs: list[_Construct] = []
    position = 0
    for match in JINJA_CONSTRUCT.finditer(source):
        literal = source[position : match.start()]
        scanner.read(literal)
        pieces.append(literal)
        constructs.append(scanner.place(match.group(0)))
        pieces.append(len(constructs) - 1)
        position = match.end()
    pieces.append(source[position:])
    return Scan(pieces, constructs, scanner.dynamic)


def _marker(index: int) -> str:
    return f"mlmj{index}x"


def restore(output: str, scan: Scan, *, every: bool = False) -> str | None:
    """Put the constructs back for their markers; None if a marker was lost, doubled, moved.

    Markers of `{{ … }}` may be lost (text drops attributes) unless `every` is set."""
    found = list(re.finditer(r"<!--mlmj(\d+)x-->|mlmj(\d+)x", output, re.I))
    indexes = [int(m.group(1) or m.group(2)) for m in found]
    blocks = [i for i, c in enumerate(scan.constructs) if every or not c.source.startswith("{{")]
    seen_blocks = [i for i in indexes if i in set(blocks)]
    if seen_blocks != blocks or indexes != sorted(indexes) or len(set(indexes)) != len(indexes):
        return None
    parts = []
    position = 0
    for match, index in zip(found, indexes, strict=True):
        literal = output[position : match.start()]
        if _JINJA_OPENING.search(literal):
            return None  # an entity decoded into something Jinja would read
        parts.append(literal)
        parts.append(scan.constructs[index].source)
        position = match.end()
    if _JINJA_OPENING.search(output[position:]):
        return None
    parts.append(output[position:])
    return "".join(parts)


def protected(scan: Scan, *, comments: bool) -> str:
    """The template with a marker for each construct (an HTML comment in content if `comments`,
    else a plain word), for an HTML parser to carry through."""
    out = []
    for piece in scan.pieces:
        if isinstance(piece, str):
            out.append(piece)
        elif comments and scan.constructs[piece].where in {"data", "comment"}:
            marker = _marker(piece)
            out.append(f"<!--{marker}-->" if scan.constructs[piece].where == "data" else marker)
        else:
            out.append(_marker(piece))
    return "".join(out)
