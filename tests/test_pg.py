"""The PostgreSQL backend against a real throwaway cluster (tests/pg.py)."""

from __future__ import annotations

import psycopg
import pytest

from tests.pg import PASSWORD, PgCluster


def test_cluster_trusts_crawler_and_wants_the_secret_roles_password(pg_cluster: PgCluster) -> None:
    db = pg_cluster.new_database()
    with psycopg.connect(pg_cluster.url(db)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("crawler",)
    with psycopg.connect(pg_cluster.url(db, user="secret", password=PASSWORD)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("secret",)
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(pg_cluster.url(db, user="secret", password="wrong")).close()
