"""RFC 5322 header lines, checked and encoded: text, addresses and display names.

- Header lines end in CRLF, folded to 78 characters where a fold is possible, never over 998.
- Non-ASCII text and display names become RFC 2047 encoded-words (UTF-8, "B" encoding: the
  shortest for CJK), split only between whole characters.
- No header injection: a CR, LF or other ASCII control character (tab aside) in any header
  value raises `HeaderInjection`; addresses are checked against strict patterns.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Sequence

import idna

MAX_LINE = 78  # RFC 5322 §2.1.1: SHOULD
HARD_LINE = 998  # RFC 5322 §2.1.1: MUST


class HeaderInjection(ValueError):
    """A header value carried a line break or another control character."""


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # ASCII controls but tab
# Printable ASCII that stays readable and round-trips as raw unstructured text: single spaces
# only, no encoded-word look-alike ("=?"), no leading or trailing blanks.
_RAW_TEXT = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*")
_ATEXT_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
# A host name in its ASCII form; a List-Id identifier must look like one too.
DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9-]{2,63}")
_PRINTABLE = re.compile(r"[\x20-\x7e]+")


def check_header_value(value: str, what: str = "header") -> str:
    """`value`, if it cannot break out of its header line; else raise HeaderInjection."""
    if _CONTROL.search(value):
        raise HeaderInjection(f"The {what} contains a line break or a control character.")
    return value


def _utf8_len(char: str) -> int:
    code = ord(char)
    return 1 if code < 0x80 else 2 if code < 0x800 else 3 if code < 0x10000 else 4


def encoded_words(text: str, first: int) -> list[str]:
    """`text` as RFC 2047 "B" encoded-words of whole characters, each at most 75 characters.

    `first` is the room left on the first line (a word on a later line has 77: after the fold's
    space). Each word holds up to floor((room - 12) / 4) * 3 bytes of UTF-8.
    """
    words: list[str] = []
    room = max(first, 16)
    chunk: list[str] = []
    size = 0
    limit = min((room - 12) // 4 * 3, 45)
    for char in text:
        n = _utf8_len(char)
        if size + n > limit and chunk:
            words.append(_word("".join(chunk)))
            chunk, size, limit = [], 0, 45
        chunk.append(char)
        size += n
    if chunk or not words:
        words.append(_word("".join(chunk)))
    return words


def _word(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode("utf-8")).decode("ascii") + "?="


def fold(name: str, tokens: Sequence[str]) -> str:
    """A header line of `tokens` joined by single spaces, folded before a token that would pass
    78 characters. Tokens are never split (they are at most 77 long, or the line just goes on,
    up to 998)."""
    lines: list[str] = []
    line = name + ":"
    for token in tokens:
        if len(line) + 1 + len(token) > MAX_LINE and line != name + ":":
            lines.append(line)
            line = ""
        line += " " + token
    lines.append(line)
    if any(len(x) > HARD_LINE for x in lines):
        raise ValueError(f"The {name} header has a word longer than {HARD_LINE} characters.")
    return "\r\n".join(lines) + "\r\n"


def unstructured_header(name: str, value: str) -> str:
    """`Name: value` CRLF, folded, RFC 2047-encoded unless `value` is plain ASCII text."""
    check_header_value(value, name)
    if not value:
        return f"{name}:\r\n"
    if _RAW_TEXT.fullmatch(value) and "=?" not in value:
        words = value.split(" ")
        if max(map(len, words)) < HARD_LINE - len(name) - 2:
            return fold(name, words)
    return fold(name, encoded_words(value, MAX_LINE - len(name) - 2))


def address(addr: str) -> str:
    """`addr` checked (dot-atom local part, host name) with an IDN domain in its ASCII form."""
    check_header_value(addr, "address")
    local, at, domain = addr.strip().rpartition("@")
    if not at or not _LOCAL_PART.fullmatch(local):
        raise ValueError(f"{addr!r} is not an address this builder writes (dot-atom@domain).")
    if not domain.isascii():
        try:  # IDNA 2008 with UTS #46 mapping, as email-validator checks addresses
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError:
            raise ValueError(f"{addr!r} has an invalid domain.") from None
    if not DOMAIN.fullmatch(domain):
        raise ValueError(f"{addr!r} has an invalid domain.")
    return f"{local}@{domain}"


def phrase_tokens(name: str, room: int) -> list[str]:
    """A display name as the tokens of a header: atoms, one quoted string, or encoded-words."""
    # A tab in a name is whitespace to address parsers: it becomes a space, and the name is
    # stripped, so what a mail program shows is what we were given.
    name = check_header_value(name, "display name").replace("\t", " ").strip()
    if not name:
        return []
    if _ATEXT_PHRASE.fullmatch(name) and "=?" not in name:
        return name.split(" ")
    if _PRINTABLE.fullmatch(name) and len(name) + 2 <= room and "=?" not in name:
        return ['"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"']
    return encoded_words(name, room)


def mailbox_header(name: str, addrs: Iterable[tuple[str, str]]) -> str:
    """`Name: display <addr>, ...` CRLF: names quoted or RFC 2047-encoded, folded."""
    tokens: list[str] = []
    pairs = list(addrs)
    for i, (display, addr) in enumerate(pairs):
        tail = "," if i < len(pairs) - 1 else ""
        phrase = phrase_tokens(display, MAX_LINE - len(name) - 2)
        tokens += phrase
        tokens.append(f"<{address(addr)}>{tail}" if phrase else f"{address(addr)}{tail}")
    return fold(name, tokens)
