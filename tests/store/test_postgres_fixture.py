"""The PostgreSQL the tests start (``tests/postgres.py``) is a real server: SQL over TCP on loopback."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.slow  # starts postgres processes


def test_each_database_is_a_real_postgres_over_tcp(postgres: Any) -> None:
    import psycopg2

    url = postgres.create_database("fixture_check")
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("create table t (x int primary key)")
        cur.execute("insert into t values (1), (2)")
        cur.execute("select sum(x), current_database(), inet_server_addr()::text from t")
        total, database, address = cur.fetchone()
    conn.close()
    assert (total, database, address) == (3, "fixture_check", "127.0.0.1/32")
