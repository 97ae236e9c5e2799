"""Fetched text made safe for where it is written: one function per destination.

Everything a page says (titles, summaries, URLs, an error's detail) is hostile. Every destination
first gets the same visible text (`visible`): escape sequences removed (they would drive a
terminal), bidi overrides and zero-width characters removed (they reorder or hide what a reader
sees), controls and line breaks turned into spaces, runs of whitespace made one space, lone
surrogates (undecodable bytes) made U+FFFD. Then each destination adds what it needs:

- `terminal`: nothing more;
- `table_cell`: a Markdown table cell (report.md): capped, Markdown specials (`|` among them)
  backslash-escaped;
- `markdown_text`: text written into the user's own post (`crawler enrich`): also no format,
  private-use or unassigned characters, capped, escaped so that it reads as plain text where it
  lands (a line of its own, after a bare URL, or a link's text);
- `html_text`: report.html, whose Jinja template autoescapes every value (markup is escaped there,
  not here).

Two destinations keep the text's lines, escaped as their readers unescape them:
- `workflow_message`, `workflow_property`: a GitHub Actions workflow command (`::error …`);
- `xml_text`: report.junit.xml, whose ElementTree escapes markup.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

# ANSI/ECMA-48 escape sequences: OSC (window titles, hyperlinks) to its terminator, CSI (colours,
# cursor moves; also its one-byte C1 form), and the other two-byte escapes.
_ESCAPES = re.compile(
    r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|\x1b[@-Z\\-_]"
)
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
# Bidi overrides/isolates, the Arabic letter mark and zero-width characters.
_INVISIBLE = re.compile(r"[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\u061c]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_SPACES = re.compile(r"\s{2,}")
# Anything visible() would change but for the ends: the fast path skips clean text.
_DIRTY = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069"
    r"\ufeff\u061c\ud800-\udfff]|\s\s"
)


def visible(text: str | None) -> str:
    """Text as one plain line: no escape sequence, control, bidi-override or zero-width
    character; whitespace runs as one space; lone surrogates as U+FFFD; trimmed."""
    if not text:
        return ""
    if _DIRTY.search(text) is None:  # the common case: nothing to remove or collapse
        return text.strip()
    s = _ESCAPES.sub("", text)
    s = _INVISIBLE.sub("", _CONTROLS.sub(" ", _SURROGATE.sub("\ufffd", s)))
    return _SPACES.sub(" ", s).strip()


def terminal(text: str | None) -> str:
    """Text fit for a terminal line."""
    return visible(text)


def html_text(text: str | None) -> str:
    """Text for report.html, which escapes it (Jinja autoescaping)."""
    return visible(text)


MAX_CELL = 200
_ENTITY_LIKE = re.compile(r"&(?=#?[0-9A-Za-z]+;)")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#!~])")


def table_cell(text: str | None, max_len: int = MAX_CELL) -> str:
    """Text for a Markdown table cell: one line, capped, specials escaped (and `&` before what
    reads as a character reference, so `&amp;` shows as written)."""
    s = visible(text)
    if len(s) > max_len:
        s = s[: max_len - 1] + "…"
    return _ENTITY_LIKE.sub(r"\\&", _MD_SPECIAL.sub(r"\\\1", s))


_DROP_CATEGORIES = frozenset({"Cf", "Co", "Cn"})
_INLINE_SPECIAL = re.compile(r"[\\`*\[\]<>|$~{}]")
_LONE_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
_SCHEME = re.compile(r"(https?):", re.IGNORECASE)
_LIQUID = re.compile(r"(?<=\\\{)%|%(?=\\\})")  # `{%`/`%}` once the braces are escaped
_BLOCK_MARKER = re.compile(r"[#+\-=:]|\d{1,9}(?=[.)])")


def _plain(text: str) -> str:
    """visible(text) without format, private-use or unassigned characters, U+FFFC or U+FFFD:
    what a post may receive."""
    s = visible(text)
    if not s.isascii():
        s = "".join(
            ch
            for ch in s
            if unicodedata.category(ch) not in _DROP_CATEGORIES and ch not in "\ufffc\ufffd"
        )
        s = " ".join(s.split())
    return s


def markdown_text(
    text: str | None,
    max_len: int = 200,
    *,
    context: Literal["line", "inline", "link"] = "line",
    encoding: str | None = None,
) -> str:
    """Text for the user's post: one line, escaped, capped ("" when nothing is left).

    `context` is "line" (a paragraph of its own: a leading block marker is escaped), "inline"
    (inside the `（…）` after a bare URL: full-width parentheses become ASCII ones) or "link" (the
    text of `[…](url)`). In the last two, `>` and backticks are written as character references,
    since raw HTML or a code span left open earlier in the paragraph would end at them.
    `encoding` drops the characters that encoding cannot hold.
    """
    s = _plain(text or "")
    if encoding is not None:
        s = _plain(s.encode(encoding, errors="ignore").decode(encoding))
    if context == "inline":
        s = s.replace("（", "(").replace("）", ")")
    if len(s) > max_len:
        s = s[: max_len - 1].rstrip() + "…"
    s = _INLINE_SPECIAL.sub(r"\\\g<0>", s)
    s = _LONE_UNDERSCORE.sub(r"\\_", s)
    s = _ENTITY_LIKE.sub(r"\\&", s)
    s = _SCHEME.sub(r"\1\\:", s)
    s = _LIQUID.sub(r"\\%", s)
    if context != "line":
        # inside a paragraph, raw HTML or a code span left open earlier would end at a `>` or a
        # backtick, escaped or not: write them as character references instead
        s = s.replace("\\>", "&gt;").replace("\\`", "&#96;")
    else:
        m = _BLOCK_MARKER.match(s)
        if m is not None:
            s = s[: m.end()] + "\\" + s[m.end() :] if m.group()[0].isdigit() else "\\" + s
    return s


# Controls other than CR and LF (which are escaped): fetched text must not drive the log viewer.
_COMMAND_CONTROLS = re.compile("[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def workflow_message(text: str) -> str:
    """Text for a workflow command's message, escaped as GitHub's runner unescapes it: `%`, CR
    and LF; other controls dropped."""
    s = _COMMAND_CONTROLS.sub("", text)
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def workflow_property(text: str) -> str:
    """Text for a workflow command's property value: as a message, and `:` and `,`."""
    return workflow_message(text).replace(":", "%3A").replace(",", "%2C")


# Not allowed anywhere in an XML 1.0 document, not even as character references.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def xml_text(text: str | None) -> str:
    """Text for an XML 1.0 document (its markup is the serialiser's to escape): the characters
    XML cannot carry dropped."""
    return _NOT_XML.sub("", text or "")
