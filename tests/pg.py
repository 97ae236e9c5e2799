"""A throwaway PostgreSQL cluster for the tests, from the system's binaries (Debian's `postgresql`).

`initdb` + `pg_ctl` in a temporary folder, as pytest-postgresql's process fixture does: one cluster
for the session, on a free loopback port (and a unix socket in the same folder), stopped and
removed after. Two roles: `crawler` (trust, owns the test databases) and `secret` (its password is
PASSWORD, for the tests that look for it where it must not be). initdb refuses to run as root, so
a root test run hands the cluster to the `postgres` user (or `nobody`).

Fixtures (registered by tests/conftest.py):
  pg_cluster  the session's cluster (skipped, in one line, where the binaries cannot be found;
              a failure under CI=true, which must run these tests)
  pg_url      a fresh empty database owned by `crawler`, as a postgresql:// URL
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PASSWORD = "s3cret-Pg-pw-9f2c"  # noqa: S105 - the test role's, on a loopback-only cluster
BIN_NAMES = ("initdb", "pg_ctl", "postgres")


def find_bindir() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres: PATH first, then the newest of
    /usr/lib/postgresql/*/bin (where Debian keeps them off PATH)."""
    initdb = shutil.which("initdb")
    candidates = [Path(initdb).resolve().parent] if initdb else []
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    versions.sort(key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0)
    candidates += [Path(p) for p in reversed(versions)]
    for d in candidates:
        if all(os.access(d / name, os.X_OK) for name in BIN_NAMES):
            return d
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _owner() -> pwd.struct_passwd | None:
    """The unprivileged user that runs the cluster when the tests run as root, else None."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists")


class PgCluster:
    """One PostgreSQL server in a temporary folder. start(), stop(), restart(), url()."""

    def __init__(self, bindir: Path, settings: str = "") -> None:
        self.bindir = bindir
        self.settings = settings  # more server options (`-c name=value ...`), for the benches
        self.owner = _owner()
        # Short and outside pytest's root-only tmp folders: the owner must reach it, and a unix
        # socket path must stay under ~100 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="crawler-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self._names = itertools.count(1)
        if self.owner is not None:
            os.chown(self.root, self.owner.pw_uid, self.owner.pw_gid)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        kw: dict[str, object] = {}
        if self.owner is not None:
            kw = {"user": self.owner.pw_uid, "group": self.owner.pw_gid, "extra_groups": []}
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}
        return subprocess.run(
            args,
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            **kw,  # type: ignore[call-overload]
        )

    def _check(self, what: str, proc: subprocess.CompletedProcess[str]) -> None:
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            out = proc.stderr + proc.stdout
            raise RuntimeError(f"{what} failed ({proc.returncode}): {out}{log}")

    def init(self) -> PgCluster:
        self._check(
            "initdb",
            self._run(
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ),
        )
        # Loopback only; the password role must give its password, the others are trusted.
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "host all secret 127.0.0.1/32 scram-sha-256\n"
            "host all all 127.0.0.1/32 trust\n"
        )
        return self

    def start(self) -> PgCluster:
        """Start the server (on a new free port the first time, the same port after)."""
        for attempt in range(5):
            if not self.port or attempt:
                self.port = free_port()
            opts = (
                f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c full_page_writes=off -c max_connections=300 "
                f"-c shared_buffers=32MB {self.settings}"
            )
            proc = self._run(
                str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                "-o", opts, "-w", "-t", "120", "start",
            )  # fmt: skip
            if proc.returncode == 0:
                return self
            if "could not bind" not in self.log.read_text(errors="replace"):
                break  # not a port taken between free_port() and the bind
        self._check("pg_ctl start", proc)
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, down: float = 0.0) -> None:
        """Stop the server (fast: sessions are cut), stay down `down` seconds, start again on
        the same port."""
        self.stop("fast")
        if down:
            time.sleep(down)
        self.start()

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, dbname: str = "postgres", user: str = "crawler", password: str = "") -> str:
        auth = f"{user}:{password}" if password else user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{dbname}"

    def admin(self, sql: str) -> None:
        """Run sql as the superuser (autocommit: CREATE DATABASE needs it)."""
        import psycopg

        with psycopg.connect(self.url(user="postgres"), autocommit=True) as conn:
            conn.execute(sql)

    def setup_roles(self) -> PgCluster:
        self.admin("CREATE ROLE crawler LOGIN CREATEDB")
        self.admin(f"CREATE ROLE secret LOGIN PASSWORD '{PASSWORD}'")
        return self

    def new_database(self, owner: str = "crawler") -> str:
        """A new empty database owned by owner; its name."""
        name = f"t{next(self._names)}"
        self.admin(f"CREATE DATABASE {name} OWNER {owner}")
        return name


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    bindir = find_bindir()
    if bindir is None:
        why = "PostgreSQL binaries (initdb, pg_ctl) not found in PATH or /usr/lib/postgresql/*/bin"
        if os.environ.get("CI"):
            pytest.fail(why + "; CI must run the PostgreSQL tests (.ci/run installs them)")
        pytest.skip(why)
    cluster = PgCluster(bindir)
    try:
        cluster.init().start().setup_roles()
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> str:
    """A fresh, empty database on the session's cluster, owned by the trusted role."""
    return pg_cluster.url(pg_cluster.new_database())
