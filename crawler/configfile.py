"""Configuration files: `crawler.toml`, or `[tool.crawler]` in `pyproject.toml`, found upward.

Only reading and validating the file's own structure lives here; the values of command-line
settings are checked against the CLI's own option types by `cli.py`, so a file and a flag
accept exactly the same things.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from crawler.config import HostRule
from crawler.errors import ConfigError

CONFIG_NAMES = ("crawler.toml", "pyproject.toml")
IGNORE_FILE = ".crawlerignore"

#: Keys of a [hosts."name"] table and the type each expects.
HOST_KEYS: dict[str, str] = {
    "headers": "a table of strings",
    "cookies": "a table of strings",
    "user_agent": "an ASCII string",
    "concurrency": "an integer ≥ 1",
    "interval": "a number of seconds ≥ 0",
    "accept": "a list of HTTP status codes",
}


@dataclass(frozen=True, slots=True)
class FileConfig:
    """What a configuration file says, validated for structure."""

    path: Path | None = None
    values: Mapping[str, Any] = field(default_factory=dict)  # option name → raw value
    hosts: Mapping[str, HostRule] = field(default_factory=dict)
    include: tuple[re.Pattern[str], ...] = ()
    exclude: tuple[re.Pattern[str], ...] = ()  # the file's, then .crawlerignore's
    ignored: tuple[re.Pattern[str], ...] = ()  # .crawlerignore's alone


def find_config(start: Path) -> Path | None:
    """The nearest crawler.toml, or pyproject.toml with [tool.crawler], from start upward."""
    import tomllib  # here: `crawler extract` reads no configuration and starts without it

    here = start.resolve()
    for d in (here, *here.parents):
        candidate = d / "crawler.toml"
        if candidate.is_file():
            return candidate
        pyproject = d / "pyproject.toml"
        if pyproject.is_file():
            try:
                data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
                continue
            if isinstance(data.get("tool"), dict) and "crawler" in data["tool"]:
                return pyproject
    return None


def load_config(path: Path) -> FileConfig:
    """Read and check a configuration file; ConfigError names the file and the key."""
    import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    if path.name == "pyproject.toml":
        tool = data.get("tool", {})
        data = tool.get("crawler", {}) if isinstance(tool, dict) else {}
        prefix = "tool.crawler."
    else:
        prefix = ""
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: {prefix or 'the file'} must be a table")
    values = {k: v for k, v in data.items() if k not in ("hosts", "include", "exclude")}
    hosts = {
        name: _host_rule(path, f"{prefix}hosts.{name}", rule)
        for name, rule in _table(path, f"{prefix}hosts", data.get("hosts", {})).items()
    }
    include = _patterns(path, f"{prefix}include", data.get("include", []))
    exclude = _patterns(path, f"{prefix}exclude", data.get("exclude", []))
    ignore = path.parent / IGNORE_FILE
    ignored = read_ignore_file(ignore) if ignore.is_file() else ()
    return FileConfig(
        path=path,
        values=values,
        hosts=hosts,
        include=include,
        exclude=exclude + ignored,
        ignored=ignored,
    )


def read_ignore_file(path: Path) -> tuple[re.Pattern[str], ...]:
    """Regexes from a .crawlerignore file: one a line, `#` comments and blank lines skipped."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        out.append(_compile(path, f"line {n}", line))
    return tuple(out)


def _table(path: Path, key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: {key}: expected a table, got {type(value).__name__}")
    return value


def _compile(path: Path, key: str, pattern: Any) -> re.Pattern[str]:
    if not isinstance(pattern, str):
        raise ConfigError(f"{path}: {key}: expected a regular expression string, got {pattern!r}")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"{path}: {key}: bad regular expression {pattern!r}: {exc}") from None


def _patterns(path: Path, key: str, value: Any) -> tuple[re.Pattern[str], ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError(f"{path}: {key}: expected a list of regular expressions")
    return tuple(_compile(path, f"{key}[{i}]", p) for i, p in enumerate(value))


def _str_table(path: Path, key: str, value: Any, sent: bool = False) -> dict[str, str]:
    """A table of strings; `sent`: names and values go into requests as they are, so they
    must be ASCII without line breaks (httpx cannot send others, aiohttp would send UTF-8)."""
    table = _table(path, key, value)
    for k, v in table.items():
        if not isinstance(v, str):
            raise ConfigError(f"{path}: {key}.{k}: expected a string, got {v!r}")
        if sent and not _sendable(k):
            raise ConfigError(f"{path}: {key}.{k}: a name must be ASCII, without line breaks")
        if sent and not _sendable(v):
            raise ConfigError(
                f"{path}: {key}.{k}: the value must be ASCII, without line breaks (percent-encode "
                f"the other characters), got {v!r}"
            )
    return table


def _sendable(text: str) -> bool:
    """Whether a header's name or value can go into a request as written."""
    return text.isascii() and not any(c in text for c in "\r\n\x00")


def _host_rule(path: Path, key: str, value: Any) -> HostRule:
    rule = _table(path, key, value)
    for k in rule:
        if k not in HOST_KEYS:
            known = ", ".join(HOST_KEYS)
            raise ConfigError(f"{path}: {key}.{k}: unknown key (known: {known})")

    def expect(cond: bool, k: str) -> None:
        if not cond:
            raise ConfigError(f"{path}: {key}.{k}: expected {HOST_KEYS[k]}, got {rule[k]!r}")

    if "user_agent" in rule:
        ua = rule["user_agent"]
        expect(isinstance(ua, str) and _sendable(ua), "user_agent")
    if "concurrency" in rule:
        c = rule["concurrency"]
        expect(isinstance(c, int) and not isinstance(c, bool) and c >= 1, "concurrency")
    if "interval" in rule:
        i = rule["interval"]
        expect(isinstance(i, int | float) and not isinstance(i, bool) and i >= 0, "interval")
    if "accept" in rule:
        a = rule["accept"]
        ok = isinstance(a, list) and all(isinstance(x, int) and 100 <= x < 1000 for x in a)
        expect(ok, "accept")
    return HostRule(
        headers=_str_table(path, f"{key}.headers", rule.get("headers", {}), sent=True),
        cookies=_str_table(path, f"{key}.cookies", rule.get("cookies", {}), sent=True),
        user_agent=rule.get("user_agent"),
        concurrency=rule.get("concurrency"),
        interval=float(rule["interval"]) if "interval" in rule else None,
        accept=frozenset(rule.get("accept", [])),
    )


def toml_value(value: Any) -> str:
    """value written as TOML, in the form the settings read back."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, timedelta):
        from crawler.settings import format_duration

        return toml_value(format_duration(value))
    from crawler.frontier import Recheck

    if isinstance(value, Recheck):
        return f"{{ ok = {toml_value(value.ok)}, failing = {toml_value(value.failing)} }}"
    if isinstance(value, frozenset | set):
        return toml_value(sorted(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    # A JSON string is a TOML basic string, but for DEL, which TOML wants escaped.
    return json.dumps(str(value), ensure_ascii=False).replace("\x7f", "\\u007f")


def render_config(
    entries: Iterable[tuple[str, Any, str]], fc: FileConfig, secret: Iterable[str] = ()
) -> str:
    """A configuration file of entries (key, value, where it came from) and fc's patterns and
    host rules. Unset values are comments, and so are the `secret` keys (whose values the
    caller hid): header and cookie values are never written."""
    hidden = set(secret)
    lines = [f"# crawler configuration; file read: {fc.path or '(none found)'}"]
    for key, value, source in entries:
        if value is None:
            lines.append(f"# {key} = (not set)  # {source}")
        elif key in hidden and value:
            lines.append(f"# {key} = {toml_value(value)}  # {source}; values are secret: copy them")
        else:
            lines.append(f"{key} = {toml_value(value)}  # {source}")
    own_exclude = fc.exclude[: len(fc.exclude) - len(fc.ignored)]
    for key, pats in (("include", fc.include), ("exclude", own_exclude)):
        src = "file" if pats else "default"
        lines.append(f"{key} = {toml_value([p.pattern for p in pats])}  # {src}")
    for pat in fc.ignored:
        lines.append(f"# exclude (from {IGNORE_FILE}): {toml_value(pat.pattern)}")
    for host, rule in fc.hosts.items():
        lines.append("")
        lines.append(f"[hosts.{toml_value(host)}]")
        if rule.user_agent is not None:
            lines.append(f"user_agent = {toml_value(rule.user_agent)}")
        if rule.concurrency is not None:
            lines.append(f"concurrency = {rule.concurrency}")
        if rule.interval is not None:
            lines.append(f"interval = {toml_value(rule.interval)}")
        if rule.accept:
            lines.append(f"accept = {toml_value(rule.accept)}")
        for what, table in (("headers", rule.headers), ("cookies", rule.cookies)):
            if table:
                names = ", ".join(sorted(table))
                lines.append(f"# {what}: {names} (values hidden; they are in {fc.path})")
    return "\n".join(lines) + "\n"
