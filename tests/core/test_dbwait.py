"""Short reads that wait without yielding (csvault/core/dbwait.py), in a gevent process
with the connection pool, as gunicorn's gevent workers run csvault."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.db import connection

from tests.helpers import ROOT, _worker_database_url

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the pool is PostgreSQL's"),
]

SCRIPT = """
from gevent import monkey
monkey.patch_all()
import django, greenlet, gevent
django.setup()
from django.db import connection
from csvault.core.dbwait import without_yielding

switches = []
greenlet.settrace(lambda event, args: switches.append(event) if event == "switch" else None)


def query(blocking):
    connection.ensure_connection()
    switches.clear()
    if blocking:
        with without_yielding():
            with connection.cursor() as cursor:
                cursor.execute("SELECT repeat('x', 100000)")
                cursor.fetchall()
    else:
        with connection.cursor() as cursor:
            cursor.execute("SELECT repeat('x', 100000)")
            cursor.fetchall()
    counted = len(switches)
    connection.close()
    return counted


others = [gevent.spawn(gevent.sleep, 0) for _ in range(5)]
print(gevent.spawn(query, False).get(), gevent.spawn(query, True).get())
gevent.joinall(others)
"""


def test_a_read_inside_without_yielding_keeps_the_greenlet_running() -> None:
    env = {
        **os.environ,
        "DATABASE_URL": _worker_database_url(),
        "CSVAULT_DATABASE_POOL": "2",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    yielding, blocking = (int(n) for n in done.stdout.split()[-2:])
    assert yielding >= 2  # the answer (100 kB) is waited for: away to the hub and back
    assert blocking == 0
