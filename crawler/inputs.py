"""The one test of whether input bytes are text at all: for posts (`check`, `links`) and saved
pages (`extract`) alike."""

from __future__ import annotations

import codecs

#: Byte-order marks of the encodings in which NUL bytes are ordinary text.
_WIDE_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def is_binary(data: bytes) -> bool:
    """Whether data is no text file: it has NUL bytes and no UTF-16/32 byte-order mark."""
    return b"\x00" in data and not data.startswith(_WIDE_BOMS)
