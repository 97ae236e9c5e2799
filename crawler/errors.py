"""Failures of the tool itself. A link that fails is a Check with a verdict, never an exception."""

from __future__ import annotations


class CrawlerError(Exception):
    """Base for every error the tool raises; the CLI prints it as one line and exits 1."""

    exit_code = 1


class InputError(CrawlerError):
    """The input post cannot be read (missing, a directory, not text)."""


class ConfigError(CrawlerError):
    """A setting is invalid."""


class StoreError(CrawlerError):
    """The history database cannot be used."""


class NetworkDownError(CrawlerError):
    """Nothing could be asked: the network (or the one service needed) did not answer."""

    exit_code = 4
