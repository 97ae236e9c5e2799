"""Bytes → text: BOM, declared charsets (verified), then detection; also the post reader's."""

from __future__ import annotations

import codecs
import re

from crawler.errors import InputError

PRESCAN = 4096  # bytes searched for a <meta charset> declaration


_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


#: The regexes used on some inputs only are compiled on first use (re's own cache keeps them):
#: each compiled at import was start-up time of every `crawler extract`.
_CT_CHARSET = r"""(?i)charset\s*=\s*["']?\s*([A-Za-z0-9._:\-]+)"""


_META_CHARSET = re.compile(
    rb"""<meta[^>]{0,512}?charset\s*=\s*["']?\s*([A-Za-z0-9._:\-]+)""", re.I | re.S
)


_GB_FAMILY = frozenset({"gb2312", "gbk", "gb18030"})


_UTF16_FAMILY = frozenset({"utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"})


def _codec_name(label: str | None) -> str | None:
    """Python codec name for a charset label, or None when unknown."""
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    if label in {"x-gbk", "gb_2312-80", "gb_2312", "csgb2312", "chinese", "iso-ir-58", "cp936"}:
        return "gb18030"
    if label in {"x-sjis", "shift-jis", "ms_kanji", "windows-31j"}:
        label = "shift_jis"
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return None
    if name in _GB_FAMILY:
        return "gb18030"
    if name in {"latin-1", "iso8859-1", "ascii"}:
        return "cp1252"  # what browsers mean by these labels
    return name


#: Byte-order marks of the encodings in which NUL bytes are ordinary text.
_WIDE_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def is_binary(data: bytes) -> bool:
    """Whether data is no text file: it has NUL bytes and no UTF-16/32 byte-order mark (the
    one test for posts and saved pages alike)."""
    return b"\x00" in data and not data.startswith(_WIDE_BOMS)


def _strict(body: bytes, codec: str) -> str | None:
    """`body` decoded with `codec`, or None when it does not fit."""
    try:
        return body.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None


#: Encodings a web page can have (the WHATWG Encoding Standard's legacy set, by Python name).
_WEB_ENCODINGS = (
    "utf_8",
    "gb18030",
    "big5",
    "shift_jis",
    "euc_jp",
    "iso2022_jp",
    "euc_kr",
    "cp1252",
    "cp1250",
    "cp1251",
    "cp1253",
    "cp1254",
    "cp1255",
    "cp1256",
    "cp1257",
    "cp1258",
    "cp874",
    "koi8_r",
    "koi8_u",
    "iso8859_2",
    "iso8859_5",
    "iso8859_7",
    "iso8859_8",
    "iso8859_15",
    "utf_16_le",
    "utf_16_be",
)


def _detect(body: bytes) -> tuple[str, str]:
    """Decode with charset-normalizer's best guess (last resort: UTF-8 with replacement)."""
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(body[:200_000], cp_isolation=list(_WEB_ENCODINGS)).best()
    except Exception:  # detection must never break extraction
        best = None
    if best is not None and best.encoding:
        codec = _codec_name(best.encoding) or "utf-8"
        if codec in _UTF16_FAMILY and b"<" in body[:64]:  # markup in single bytes: not UTF-16
            return body.decode("utf-8", errors="replace"), "utf-8"
        text = _strict(body, codec)
        if text is not None:
            return text, codec
        if codec == "gb18030" or best.encoding.lower() in {"big5", "cp932", "shift_jis"}:
            return body.decode(codec, errors="replace"), codec
    return body.decode("utf-8", errors="replace"), "utf-8"


def decode(body: bytes, content_type: str | None) -> tuple[str, str]:
    """The text of `body` and the codec that produced it."""
    if not body:
        return "", "utf-8"
    for bom, codec in _BOMS:
        if body.startswith(bom):
            return body[len(bom) :].decode(codec, errors="replace"), codec
    declared: list[str] = []
    if content_type:
        m = re.search(_CT_CHARSET, content_type)
        if m:
            declared.append(m.group(1))
    m2 = _META_CHARSET.search(body, 0, PRESCAN)
    if m2:
        declared.append(m2.group(1).decode("ascii", "replace"))
    utf8: str | None = None
    utf8_tried = False
    for label in declared:
        want = _codec_name(label)
        if want is None:
            continue
        if want in _UTF16_FAMILY:  # a readable ASCII declaration cannot be UTF-16
            want = "utf-8"
        if not utf8_tried:
            utf8, utf8_tried = _strict(body, "utf-8"), True
        if want == "utf-8":
            if utf8 is not None:
                return utf8, "utf-8"
            continue
        if utf8 is not None and not body.isascii():
            return utf8, "utf-8"  # declared something else, but the bytes are UTF-8
        text = _strict(body, want)
        if text is not None:
            return text, want
    if not utf8_tried:
        utf8 = _strict(body, "utf-8")
    if utf8 is not None:
        return utf8, "utf-8"
    if not declared:  # a declaration past the prescan window is still worth verifying
        late = _META_CHARSET.search(body)
        codec_late = _codec_name(late.group(1).decode("ascii", "replace")) if late else None
        if codec_late and codec_late != "utf-8" and codec_late not in _UTF16_FAMILY:
            text = _strict(body, codec_late)
            if text is not None:
                return text, codec_late
    return _detect(body)


def decode_html(body: bytes, content_type: str | None = None) -> str:
    """Decode HTML bytes: BOM, HTTP charset, <meta> charset (all verified), then detection."""
    try:
        return decode(bytes(body), content_type)[0]
    except Exception:  # never raises
        return bytes(body).decode("utf-8", errors="replace")


# ----------------------------------------------------------------- posts (Markdown, HTML files)

_UTF8_BOM = b"\xef\xbb\xbf"
# Characters that never occur in real GBK text decoded as GB18030: C0/C1 controls (other than
# tab, newlines, form feed, escape), private-use code points, the replacement character.
_NOT_TEXT = "[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f-\x9f\ue000-\uf8ff\ufffd\U000f0000-\U0010ffff]"
_NON_ASCII = "[^\x00-\x7f]"


def _looks_like_gbk_text(text: str) -> bool:
    """True when GB18030-decoded text reads like Chinese text rather than mojibake."""
    if re.search(_NOT_TEXT, text):
        return False
    non_ascii = "".join(re.findall(_NON_ASCII, text))
    if not non_ascii:
        return True
    # Real GBK posts use almost only GB2312 characters (two bytes each); Latin-1 or binary
    # data that happens to decode lands in the rare extension areas instead.
    in_gb2312 = len(non_ascii.encode("gb2312", errors="ignore")) // 2
    return in_gb2312 >= 0.8 * len(non_ascii)


def detect_encoding(data: bytes) -> str:
    """Name the encoding of a post's bytes: "utf-8", "utf-8-sig" or "gb18030" (else InputError)."""
    if data.startswith(_UTF8_BOM):
        try:
            data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InputError("not UTF-8 or GBK text") from None
        return "utf-8-sig"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return "utf-8"
    try:
        text = data.decode("gb18030")
    except UnicodeDecodeError:
        raise InputError("not UTF-8 or GBK text") from None
    if not _looks_like_gbk_text(text):
        raise InputError("not UTF-8 or GBK text")
    return "gb18030"
