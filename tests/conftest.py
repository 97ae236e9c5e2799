"""Shared fixtures: a real local HTTP server and a clean environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import LocalServer

pytest_plugins = ["tests.pg"]  # the PostgreSQL cluster fixtures

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def server() -> Iterator[LocalServer]:
    srv = LocalServer().start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(autouse=True)
def _reset_server_counts(request: pytest.FixtureRequest) -> None:
    if "server" in request.fixturenames:
        request.getfixturevalue("server").reset()


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests must never go through a proxy or a custom CA from the developer's shell."""
    for name in list(os.environ):
        if name.lower() in {
            "http_proxy",
            "https_proxy",
            "all_proxy",
            "no_proxy",
            "ssl_cert_file",
            "ssl_cert_dir",
            "requests_ca_bundle",
        } or name.startswith("CRAWLER_"):
            monkeypatch.delenv(name, raising=False)
    # Nor print GitHub annotations or colours because the suite runs in Actions or a terminal.
    for name in ("GITHUB_ACTIONS", "NO_COLOR", "FORCE_COLOR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def history_db(clean_environ: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own history database, never the checkout's."""
    path = tmp_path / "history.sqlite"
    monkeypatch.setenv("CRAWLER_DB", str(path))
    return path


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
