"""Reading an answer: the headers kept, and a text body up to a cap, inflated with a bound.

Only `gzip, deflate` are asked for (ACCEPT_ENCODING), and they are decoded here from the raw
bytes: httpx's decoders inflate a whole network chunk at once (64 KB of a gzip bomb is 64 MB);
this one stops at the cap. A coding not asked for (br, zstd, chains) is read as it is.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterable, Iterable

import httpx

#: Response headers kept in a FetchResult.
KEPT_HEADERS = ("content-type", "content-length", "retry-after", "server", "location")
_KEPT = frozenset(KEPT_HEADERS)

#: Content types whose body is read for extraction; anything else is judged on status alone.
TEXT_TYPES = ("text/", "application/xhtml", "application/xml", "application/json", "+xml")

#: The content codings asked for: only those decoded here with a bound on the decoded size (a
#: gzip bomb stops at max_body). Any other coding a server sends anyway is read as it is.
ACCEPT_ENCODING = "gzip, deflate"


def read_headers(raw: Iterable[tuple[bytes, bytes]]) -> tuple[dict[str, str], str | None]:
    """The kept headers (repeated ones joined with ", ", as httpx does) and the content coding."""
    kept: dict[str, str] = {}
    coding: str | None = None
    for k, v in raw:
        name = k.decode("latin-1").lower()
        if name in _KEPT or name == "content-encoding":
            try:
                value = v.decode("utf-8")
            except UnicodeDecodeError:
                value = v.decode("latin-1")
            if name == "content-encoding":
                coding = value if coding is None else f"{coding}, {value}"
            else:
                kept[name] = f"{kept[name]}, {value}" if name in kept else value
    return kept, coding


def is_text(content_type: str) -> bool:
    """Whether a body of this Content-Type is read (no Content-Type: it is)."""
    ctype = content_type.lower()
    return not ctype or any(t in ctype for t in TEXT_TYPES)


async def read_body(raw: AsyncIterable[bytes], coding: str | None, cap: int) -> tuple[bytes, bool]:
    """At most `cap` bytes of the decoded body (`raw`: its bytes as sent), and whether there
    was more."""
    chunks: list[bytes] = []
    size = 0
    inflater = inflater_for(coding)
    async for chunk in raw:
        if inflater is not None:
            chunk = inflater.decode(chunk, cap - size)
        chunks.append(chunk)
        size += len(chunk)
        if size >= cap:
            return b"".join(chunks)[:cap], True
    return b"".join(chunks), False


class Inflater:
    """gzip or deflate, decoded at most `limit` bytes at a time (a bomb never expands)."""

    def __init__(self, coding: str) -> None:
        self._deflate = coding == "deflate"
        self._fresh = True  # nothing decoded yet: deflate may still turn out to be raw
        wbits = zlib.MAX_WBITS if self._deflate else zlib.MAX_WBITS | 16
        self._z = zlib.decompressobj(wbits)

    def decode(self, data: bytes, limit: int) -> bytes:
        given = data
        out: list[bytes] = []
        room = limit
        z = self._z
        try:
            while data and room > 0 and not z.eof:
                piece = z.decompress(data, room)
                tail = z.unconsumed_tail
                if piece:
                    self._fresh = False
                    out.append(piece)
                    room -= len(piece)
                elif tail == data:
                    break
                data = tail
        except zlib.error as exc:
            if self._deflate and self._fresh:
                # "deflate" sent as a raw deflate stream, without the zlib header (as httpx does)
                self._fresh = False
                self._z = zlib.decompressobj(-zlib.MAX_WBITS)
                return self.decode(given, limit)
            coding = "deflate" if self._deflate else "gzip"
            raise httpx.DecodingError(f"bad {coding} body: {exc}") from exc
        return b"".join(out)


def inflater_for(content_encoding: str | None) -> Inflater | None:
    """The decoder for a Content-Encoding; None to read the bytes as they come."""
    if not content_encoding:
        return None
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if len(codings) == 1 and codings[0] in ("gzip", "x-gzip", "deflate"):
        return Inflater("deflate" if codings[0] == "deflate" else "gzip")
    return None  # none, or a coding not asked for (br, zstd, chains): the bytes as they are
