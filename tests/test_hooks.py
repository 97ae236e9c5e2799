"""The pre-commit hooks of .pre-commit-hooks.yaml, run as pre-commit runs them: the entry's
words, the hook's args, then the staged Markdown files, in the repository's folder."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.server import LocalServer

yaml = pytest.importorskip("yaml")
ROOT = Path(__file__).resolve().parent.parent
CRAWLER = Path(sys.executable).parent / "crawler"


def _hooks() -> dict[str, dict[str, Any]]:
    data = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    return {h["id"]: h for h in data}


def _run_hook(hook: dict[str, Any], repo: Path, files: list[str], *args: str):
    words = shlex.split(hook["entry"])
    assert words[0] == "crawler"
    return subprocess.run(
        [str(CRAWLER), *words[1:], *hook.get("args", []), *args, *files],
        cwd=repo,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(repo), "LANG": "C.UTF-8"},
        timeout=300,
    )


@pytest.fixture
def repo(tmp_path: Path, server: LocalServer) -> Path:
    (tmp_path / "docs").mkdir()
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"png")
    (tmp_path / "docs" / "guide.md").write_text("# Guide\n\n## Setup steps\n", encoding="utf-8")
    (tmp_path / "README.md").write_text(
        "# Readme\n\n[g](docs/guide.md#setup-steps) ![](/images/a.png)\n\n"
        f"[web]({server.url('/status/404')})\n",
        encoding="utf-8",
    )
    (tmp_path / "BROKEN.md").write_text(
        "[g](docs/guide.md#nowhere) [x](docs/missing.md) ![](/images/b.png)\n", encoding="utf-8"
    )
    return tmp_path


def test_hooks_are_python_hooks_on_markdown() -> None:
    hooks = _hooks()
    assert set(hooks) == {"crawler-local", "crawler-web"}
    for hook in hooks.values():
        assert hook["language"] == "python"
        assert hook["types"] == ["markdown"]
    assert "--offline" in shlex.split(hooks["crawler-local"]["entry"])
    assert "--offline" not in shlex.split(hooks["crawler-web"]["entry"])


def test_local_hook_checks_files_offline_and_writes_nothing(
    repo: Path, server: LocalServer
) -> None:
    hook = _hooks()["crawler-local"]
    before = sorted(p.relative_to(repo) for p in repo.rglob("*"))
    good = _run_hook(hook, repo, ["README.md"], "--root-dir", ".")
    assert good.returncode == 0, good.stdout + good.stderr
    bad = _run_hook(hook, repo, ["README.md", "BROKEN.md"], "--root-dir", ".")
    assert bad.returncode == 3, bad.stdout + bad.stderr
    assert "docs/missing.md" in bad.stdout and "/images/b.png" in bad.stdout
    assert "#nowhere" in bad.stdout
    assert server.hits == {}  # offline: the web link was not fetched
    assert sorted(p.relative_to(repo) for p in repo.rglob("*")) == before  # no reports, history


def test_hooks_pass_files_with_nothing_to_check(repo: Path) -> None:
    """A commit of Markdown files without links (or, offline, without local ones) passes."""
    (repo / "CHANGELOG.md").write_text("# Changelog\n\nNo links.\n", encoding="utf-8")
    (repo / "WEB.md").write_text("[w](https://example.invalid/)\n", encoding="utf-8")
    for files in (["CHANGELOG.md"], ["WEB.md"]):
        r = _run_hook(_hooks()["crawler-local"], repo, files)
        assert r.returncode == 0, r.stdout + r.stderr
    r = _run_hook(_hooks()["crawler-web"], repo, ["CHANGELOG.md"])
    assert r.returncode == 0, r.stdout + r.stderr


def test_web_hook_is_the_opt_in_for_the_network(repo: Path, server: LocalServer) -> None:
    hook = _hooks()["crawler-web"]
    r = _run_hook(hook, repo, ["README.md"], "--root-dir", ".", "--retries", "0")
    assert r.returncode == 3, r.stdout + r.stderr
    assert server.hits["/status/404"] == 1
    assert not (repo / "reports").exists() and not (repo / ".crawler").exists()
