"""PostgreSQL (and Redis) helpers for scripts/loadtest.sh (no Django).

``pgdb.py recreate URL``: drop and create the database named in URL (the load
test's private database; never point it at a real one).
``pgdb.py xacts URL``: committed + rolled-back transactions of that database
so far (pg_stat_database); with autocommit, one per query or atomic block.
``pgdb.py statements URL``: total pg_stat_statements calls of that database,
or -1 when the extension is not available.
``pgdb.py flush-redis URL``: empty the Redis database of URL (the load test's
private cache database, so that no key of an earlier run, whose user ids
repeat, is ever served).
"""

from __future__ import annotations

import sys
import time
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql


def _admin_url(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    return urlunsplit(parts._replace(scheme="postgresql", path="/postgres")), name


def _db_url(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(scheme="postgresql"))


def recreate(url: str) -> None:
    admin, name = _admin_url(url)
    if not name.startswith("csvault_load"):
        raise SystemExit(f"refusing to drop {name!r}: the load test database is csvault_load*")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        preload = conn.execute("SHOW shared_preload_libraries").fetchone()
    if preload and "pg_stat_statements" in str(preload[0]):
        with psycopg.connect(_db_url(url), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")


def xacts(url: str) -> int:
    admin, name = _admin_url(url)
    # Backends flush their statistics about once a second when idle.
    time.sleep(2)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", [name]
        ).fetchone()
    return int(row[0]) if row else 0


def statements(url: str) -> int:
    name = _admin_url(url)[1]
    time.sleep(2)
    with psycopg.connect(_db_url(url), autocommit=True) as conn:
        try:
            row = conn.execute(
                "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s "
                "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = %s",
                [name],
            ).fetchone()
        except psycopg.Error:
            return -1
    return int(row[0]) if row else 0


if __name__ == "__main__":
    command, url = sys.argv[1], sys.argv[2]
    if command == "recreate":
        recreate(url)
    elif command == "xacts":
        print(xacts(url))
    elif command == "statements":
        print(statements(url))
    elif command == "flush-redis":
        import redis

        redis.Redis.from_url(url).flushdb()
    else:
        raise SystemExit(__doc__)
