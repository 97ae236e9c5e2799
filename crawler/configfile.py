"""Configuration files: `crawler.toml`, or `[tool.crawler]` in `pyproject.toml`, found upward.

Only reading and validating the file's own structure lives here; the values of command-line
settings are checked against the CLI's own option types by `cli.py`, so a file and a flag
accept exactly the same things.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
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
    "user_agent": "a string",
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
    exclude: tuple[re.Pattern[str], ...] = ()


def find_config(start: Path) -> Path | None:
    """The nearest crawler.toml, or pyproject.toml with [tool.crawler], from start upward."""
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
    if ignore.is_file():
        exclude += read_ignore_file(ignore)
    return FileConfig(path=path, values=values, hosts=hosts, include=include, exclude=exclude)


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


def _str_table(path: Path, key: str, value: Any) -> dict[str, str]:
    table = _table(path, key, value)
    for k, v in table.items():
        if not isinstance(v, str):
            raise ConfigError(f"{path}: {key}.{k}: expected a string, got {v!r}")
    return table


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
        expect(isinstance(rule["user_agent"], str), "user_agent")
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
        headers=_str_table(path, f"{key}.headers", rule.get("headers", {})),
        cookies=_str_table(path, f"{key}.cookies", rule.get("cookies", {})),
        user_agent=rule.get("user_agent"),
        concurrency=rule.get("concurrency"),
        interval=float(rule["interval"]) if "interval" in rule else None,
        accept=frozenset(rule.get("accept", [])),
    )
