"""The value types of the settings a user gives by flag, environment variable or file.

One validator per kind of value, used for every source: a value is accepted or refused, with
the same words, wherever it comes from, and a refusal is one line naming the source (the flag,
the environment variable, or the file and its key) with exit code 1; `refusals` makes such a
line of a value refused by a type of click's own too. A TOML value must have the
right type (`retries = 2.5` and `workers = true` are refused, not rounded); a flag or an
environment variable is text and is parsed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from crawler.errors import ConfigError

#: Option name → the key a configuration file uses for it, where the two differ.
FILE_KEYS = {"formats": "format"}


def file_key(name: str) -> str:
    """The configuration-file key of the option called name."""
    return FILE_KEYS.get(name, name)


def source_label(param: click.Parameter | None, ctx: click.Context | None) -> str:
    """Where param's value came from, as the user would name it."""
    if param is None or ctx is None or param.name is None:
        return "setting"
    source = ctx.get_parameter_source(param.name)
    if source is click.core.ParameterSource.ENVIRONMENT and isinstance(param.envvar, str):
        return f"{param.envvar} (environment)"
    if source is click.core.ParameterSource.DEFAULT_MAP:
        from crawler.configfile import FileConfig

        fc = ctx.find_object(FileConfig)
        return f"{fc.path if fc else 'configuration file'}: {file_key(param.name)}"
    if source is click.core.ParameterSource.DEFAULT:
        return f"default of {file_key(param.name)}"
    if isinstance(param, click.Argument):
        return param.human_readable_name
    return str(max(param.opts, key=len))


class ToolError(click.ClickException):
    """A CrawlerError as Click shows it: one line, the error's own exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return self.code


def refused(exc: click.BadParameter) -> ConfigError:
    """A value click refused (by a type or a check of click's own, or one written for click),
    refused as Setting refuses one: one line naming where the value came from."""
    if exc.param is not None:
        where = source_label(exc.param, exc.ctx)
    elif isinstance(exc.param_hint, str):
        where = exc.param_hint
    else:
        where = " / ".join(exc.param_hint or ["setting"])
    return ConfigError(f"{where}: {exc.message}")


@contextmanager
def refusals() -> Iterator[None]:
    """Within: a value click refused raises `refused` of it; a missing value stays click's
    usage error (exit 2)."""
    try:
        yield
    except click.MissingParameter:
        raise
    except click.BadParameter as exc:
        raise refused(exc) from None


class Setting(click.ParamType):  # type: ignore[type-arg]
    """A setting's value type: `parse` checks a raw value from any source."""

    name = "value"

    def expected(self) -> str:
        """What a valid value is, in words ("an integer from 0 to 10")."""
        raise NotImplementedError

    def parse(self, value: Any) -> Any:
        """The value, converted; ValueError when it is not valid."""
        raise NotImplementedError

    def refusal(self, value: Any) -> str:
        """The end of the error line for an invalid value."""
        if isinstance(value, bool):  # as TOML writes it
            return f"expected {self.expected()}, got {str(value).lower()}"
        shown = value if isinstance(value, str | int | float | list) else str(value)
        return f"expected {self.expected()}, got {shown!r}"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return self.parse(value)
        except ValueError:
            raise ConfigError(f"{source_label(param, ctx)}: {self.refusal(value)}") from None


def check_file_value(path: object, key: str, param: click.Parameter, raw: Any) -> Any:
    """A configuration file's value for param, checked by its type (each item of a list, for
    a repeatable option); ConfigError names the file and the key."""
    if getattr(param, "multiple", False):
        items = raw if isinstance(raw, list) else [raw]
        return tuple(_check_one(path, key, param.type, item) for item in items)
    return _check_one(path, key, param.type, raw)


def _check_one(path: object, key: str, kind: click.ParamType[Any], raw: Any) -> Any:
    if isinstance(kind, Setting):
        try:
            return kind.parse(raw)
        except ValueError:
            raise ConfigError(f"{path}: {key}: {kind.refusal(raw)}") from None
    try:  # an option declared with a plain click type
        return kind.convert(raw, None, None)
    except click.BadParameter as exc:
        raise ConfigError(f"{path}: {key}: {exc.message}") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _range(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f" from {lo:g} to {hi:g}"
    if lo is not None:
        return f" ≥ {lo:g}"
    return ""


class Int(Setting):
    """An integer in a range: a TOML integer, or text of digits."""

    name = "integer"

    def __init__(self, lo: int | None = None, hi: int | None = None) -> None:
        self.lo, self.hi = lo, hi

    def expected(self) -> str:
        return "an integer" + _range(self.lo, self.hi)

    def parse(self, value: Any) -> int:
        if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(value)
        if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            raise ValueError(value)
        return value


class Workers(Setting):
    """Worker processes: "auto" (kept as that text), or an integer in a range."""

    name = "integer"
    AUTO = "auto"

    def __init__(self, lo: int, hi: int) -> None:
        self.count = Int(lo, hi)

    def expected(self) -> str:
        return f'"{self.AUTO}" or {self.count.expected()}'

    def parse(self, value: Any) -> int | str:
        if isinstance(value, str) and value.strip().lower() == self.AUTO:
            return self.AUTO
        return self.count.parse(value)


class Number(Setting):
    """A finite number in a range: a TOML integer or float, or text like 0.5."""

    name = "number"

    def __init__(self, lo: float | None = None, hi: float | None = None, unit: str = "") -> None:
        self.lo, self.hi, self.unit = lo, hi, unit

    def expected(self) -> str:
        what = f"a number of {self.unit}" if self.unit else "a number"
        return what + _range(self.lo, self.hi)

    def parse(self, value: Any) -> float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValueError(value) from None
        if not _is_number(value) or not math.isfinite(value):
            raise ValueError(value)
        if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            raise ValueError(value)
        return float(value)


class Choice(Setting):
    """One of a few words."""

    name = "choice"

    def __init__(self, *choices: str) -> None:
        self.choices = choices

    def expected(self) -> str:
        return "one of " + ", ".join(self.choices)

    def parse(self, value: Any) -> str:
        if not isinstance(value, str) or value.strip() not in self.choices:
            raise ValueError(value)
        return value.strip()

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        return "[" + "|".join(self.choices) + "]"


class Text(Setting):
    """Any non-empty string (`ascii`: of ASCII characters, as a header's value must be)."""

    name = "text"

    def __init__(self, ascii: bool = False) -> None:
        self.ascii = ascii

    def expected(self) -> str:
        return "a non-empty ASCII string" if self.ascii else "a non-empty string"

    def parse(self, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(value)
        if self.ascii and not value.isascii():
            raise ValueError(value)
        return value


class Bool(Setting, click.types.BoolParamType):
    """true or false: a TOML boolean, or 1/0, true/false, yes/no, on/off."""

    name = "boolean"
    _WORDS = {"1": True, "true": True, "yes": True, "on": True}
    _WORDS |= {"0": False, "false": False, "no": False, "off": False}

    def expected(self) -> str:
        return "true or false"

    def parse(self, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in self._WORDS:
            return self._WORDS[value.strip().lower()]
        raise ValueError(value)


class FilePath(Setting):
    """A path; with must_exist, of a file that exists."""

    name = "path"

    def __init__(self, must_exist: bool = False) -> None:
        self.must_exist = must_exist

    def expected(self) -> str:
        return "the path of an existing file" if self.must_exist else "a path"

    def parse(self, value: Any) -> Path:
        if isinstance(value, Path):
            value = str(value)
        if not isinstance(value, str) or not value:
            raise ValueError(value)
        path = Path(value)
        if self.must_exist and not path.is_file():
            raise ValueError(value)
        return path


class Statuses(Setting):
    """HTTP status codes: a TOML list of integers, or text like 403,999."""

    name = "statuses"

    def expected(self) -> str:
        return "HTTP status codes (100-999), e.g. [403, 999] or 403,999"

    def parse(self, value: Any) -> frozenset[int]:
        if isinstance(value, frozenset):
            return value
        parts: Iterable[Any]
        if isinstance(value, str):
            parts = [p for p in value.replace(" ", "").split(",") if p]
        elif isinstance(value, list) and not any(isinstance(p, str) for p in value):
            parts = value
        else:
            raise ValueError(value)
        return frozenset(Int(100, 999).parse(p) for p in parts)


class Words(Setting):
    """A comma-separated subset of known words (text), or a TOML list of them."""

    name = "list"

    def __init__(self, *known: str) -> None:
        self.known = known

    def expected(self) -> str:
        return "some of " + ", ".join(self.known) + " (comma-separated, or a list)"

    def parse(self, value: Any) -> str:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
        elif isinstance(value, list) and all(isinstance(p, str) for p in value):
            parts = [p.strip() for p in value]
        else:
            raise ValueError(value)
        if any(p not in self.known for p in parts):  # none at all is a choice: `--format ""`
            raise ValueError(value)
        return ",".join(parts)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class Duration(Setting):
    """A duration like 90, 90s, 30m, 12h, 2d or 1w (a TOML number is seconds); with
    `positive`, more than none."""

    name = "duration"

    def __init__(self, positive: bool = False) -> None:
        self.positive = positive

    def expected(self) -> str:
        return ("a duration > 0" if self.positive else "a duration") + " like 30m, 12h or 2d"

    def parse(self, value: Any) -> timedelta:
        if isinstance(value, timedelta):
            out = value
        elif _is_number(value) and value >= 0 and math.isfinite(value):
            out = timedelta(seconds=value)
        else:
            m = _DURATION.match(value) if isinstance(value, str) else None
            if not m:
                raise ValueError(value)
            out = timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
        if self.positive and out <= timedelta(0):
            raise ValueError(value)
        return out


class RecheckAfter(Setting):
    """How long a verdict stands in a budgeted run: one duration for pages that are there
    (7d), or both, `ok=7d,failing=1d` (a TOML table {ok = "7d", failing = "1d"})."""

    name = "recheck"

    def expected(self) -> str:
        return "a duration like 7d, or ok=7d,failing=1d"

    def parse(self, value: Any) -> Any:
        from crawler.frontier import Recheck

        if isinstance(value, Recheck):
            return value
        if isinstance(value, str) and "=" in value:
            pairs = [p.partition("=") for p in value.split(",") if p.strip()]
            value = {k.strip(): v for k, _, v in pairs}
        if isinstance(value, dict):
            if not value or set(value) - {"ok", "failing"}:
                raise ValueError(value)
            length = Duration(positive=True)
            return Recheck(**{k: length.parse(v) for k, v in value.items()})
        return Recheck(ok=Duration(positive=True).parse(value))


def format_duration(value: timedelta) -> str:
    """A duration as Duration reads it back."""
    seconds = value.total_seconds()
    for unit in ("w", "d", "h", "m"):
        if seconds and seconds % _UNITS[unit] == 0:
            return f"{int(seconds // _UNITS[unit])}{unit}"
    return f"{seconds:g}s"
