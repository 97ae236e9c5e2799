"""Which history database: an SQLite file (a path, or sqlite:///path) or PostgreSQL
(postgresql://user@host:port/dbname). Parsing and naming only; the stores live in store.py
(SQLite) and pgstore.py (PostgreSQL).

A password given in a PostgreSQL URL is a secret: a `PgUrl` reads as the URL with the password
replaced by `***` everywhere it is printed, logged or serialised; only `.conninfo` has it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from crawler.errors import ConfigError, CrawlerError
from crawler.redact import MASK

if TYPE_CHECKING:
    from crawler.store import Store

PG_SCHEMES = ("postgresql", "postgres")
SQLITE_PREFIX = "sqlite:///"
_SECRET_PARAMS = frozenset({"password", "sslpassword"})


class PgUrl(str):
    """A PostgreSQL URL whose text is redacted; `conninfo` is what libpq gets."""

    conninfo: str

    def __new__(cls, url: str) -> PgUrl:
        self = super().__new__(cls, redact(url))
        self.conninfo = url
        return self

    def __repr__(self) -> str:
        return f"PgUrl({str.__repr__(self)})"

    def __reduce__(self) -> tuple[type[PgUrl], tuple[str]]:
        return (PgUrl, (self.conninfo,))


Db = Path | PgUrl  # what --db, CRAWLER_DB and `db` in the configuration become


def redact(url: str) -> str:
    """url with any password (in the user part or the query) replaced by ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK  # not even parseable: show nothing of it
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":" + MASK
        netloc = f"{userinfo}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k in _SECRET_PARAMS for k, _ in pairs):
            query = urlencode([(k, MASK if k in _SECRET_PARAMS else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def parse_db(value: str | os.PathLike[str]) -> Db:
    """A --db value: postgresql:// (or postgres://) → PgUrl; sqlite:///path or a path → Path.

    `sqlite:///rel/path` is relative and `sqlite:////abs/path` absolute, as in SQLAlchemy.
    """
    if isinstance(value, PgUrl | Path):
        return value
    text = os.fspath(value)
    scheme, sep, _ = text.partition("://")
    if not sep or "/" in scheme or os.sep in scheme:
        return Path(text)
    scheme = scheme.lower()
    if scheme in PG_SCHEMES:
        parts = urlsplit(text)
        if not parts.hostname and "host=" not in parts.query:
            raise ConfigError(f"{redact(text)}: a PostgreSQL URL needs a host")
        try:
            parts.port  # noqa: B018 - a bad port raises here
        except ValueError:
            raise ConfigError(f"{redact(text)}: bad port in the PostgreSQL URL") from None
        return PgUrl(text)
    if scheme == "sqlite":
        if not text.lower().startswith(SQLITE_PREFIX) or len(text) == len(SQLITE_PREFIX):
            raise ConfigError(
                f"{text}: an SQLite URL is sqlite:///path (a relative path) or "
                "sqlite:////absolute/path"
            )
        return Path(unquote(text[len(SQLITE_PREFIX) :]))
    raise ConfigError(
        f"{redact(text)}: unknown database scheme {scheme!r} "
        "(a path, sqlite:///path or postgresql://user@host:port/dbname)"
    )


def is_postgres(db: Db) -> bool:
    return isinstance(db, PgUrl)


def require_history(db: Db) -> None:
    """Refuse to read an SQLite history that does not exist (a PostgreSQL one is asked)."""
    if isinstance(db, Path) and not db.exists():
        raise CrawlerError(f"no history at {db}: run 'crawler check' first")


def open_store(db: Db) -> Store:
    """Open (creating and migrating if needed) the history database db."""
    if isinstance(db, PgUrl):
        from crawler.pgstore import PgStore

        return PgStore.open(db)
    from crawler.store import Store

    return Store.open(db)
