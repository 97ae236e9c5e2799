"""Text helpers shared by the extractors: whitespace, sentence trimming, JavaScript strings."""

from __future__ import annotations

import html
import re
import sys

SUMMARY_MAX = 300


MIN_LATIN = 40


MIN_CJK = 15


_CJK_RANGES = (
    (0x3040, 0x30FF),
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xAC00, 0xD7AF),
    (0xF900, 0xFAFF),
)


_SENTENCE_END = re.compile(r"[.!?。！？](?=\s|$|[\"'”’」』）)])|[。！？]")


def normalize_space(s: str) -> str:
    """Collapse runs of whitespace to one space and strip the ends."""
    return " ".join(s.split())


def weighted_length(text: str) -> int:
    """Length of text with each CJK character counted twice (it says about as much as two
    Latin letters or more). For short texts (a challenge page's, a heading): a character
    class of _CJK_RANGES costs re 4-5 ms to compile (it walks every code point of the
    ranges), more than counting them here in every text a run meets."""
    if text.isascii():
        return len(text)
    cjk = 0
    for ch in text:
        o = ord(ch)
        if o >= 0x3040 and any(lo <= o <= hi for lo, hi in _CJK_RANGES):
            cjk += 1
    return len(text) + cjk


def substantial(text: str) -> bool:
    """Whether a paragraph is long enough to stand for the page."""
    if len(text) >= MIN_LATIN:
        return True
    if len(text) < MIN_CJK:
        return False
    cjk = 0
    for ch in text:
        o = ord(ch)
        if o >= 0x3040 and any(lo <= o <= hi for lo, hi in _CJK_RANGES):
            cjk += 1
            if cjk >= MIN_CJK:
                return True
    return False


def trim(text: str, limit: int = SUMMARY_MAX) -> str:
    """Cut `text` to about `limit` characters, at a sentence end when there is one."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    ends = [m.end() for m in _SENTENCE_END.finditer(head)]
    if ends and ends[-1] >= limit // 3:
        return head[: ends[-1]].strip()
    space = head.rfind(" ")
    if space >= limit // 2:
        head = head[:space]
    return head.rstrip(" ,;:，；：") + "…"


_JS_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|u\{[0-9a-fA-F]{1,6}\}|.)", re.S)


_JS_SIMPLE = {"n": "\n", "r": "\r", "t": "\t", "b": "", "f": "", "v": "", "0": ""}


def _js_unescape(s: str) -> str:
    """Undo JavaScript string escapes."""

    def sub(m: re.Match[str]) -> str:
        e = m.group(1)
        if e[0] in "xu" and len(e) > 1:
            digits = e[2:-1] if e.startswith("u{") else e[1:]
            try:
                return chr(int(digits, 16))
            except (ValueError, OverflowError):
                return e
        return _JS_SIMPLE.get(e, e)

    return _JS_ESCAPE.sub(sub, s) if "\\" in s else s


def js_var(text: str, name: str) -> str | None:
    """The first non-empty string literal assigned to JS variable `name`."""
    pattern = re.compile(
        re.escape(name)
        + r"""\s*=\s*(?:htmlDecode\(\s*)?(?P<q>["'])(?P<v>(?:\\.|(?!(?P=q))[^\\\n])*)(?P=q)"""
    )
    for n, m in enumerate(pattern.finditer(text)):
        if n >= 5:
            break
        start = m.start()
        if start and (text[start - 1].isalnum() or text[start - 1] in "_$"):
            continue
        value = normalize_space(html.unescape(_js_unescape(m.group("v"))))
        if value:
            return value
    return None


def shared(text: str | None) -> str | None:
    """A short string interned (the same object for equal values), else as it is."""
    if text and len(text) <= 40:
        return sys.intern(text)
    return text


def cap(text: str | None, limit: int) -> str | None:
    """text cut to limit characters, with an ellipsis when cut."""
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + "…"


def squash(s: str) -> str:
    """Lower-case letters and digits only, for loose comparison."""
    return "".join(c for c in s.casefold() if c.isalnum())


def squash_words(s: str) -> list[str]:
    """Lower-case words of `s`."""
    return re.findall(r"\w+", s.casefold())
