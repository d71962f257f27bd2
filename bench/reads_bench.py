"""CPU per read request of one gunicorn worker, through Django and on the hot path.

Seeds a user with a completed 1,000-row dataset (in-process scan and ingest), then
starts ``gunicorn config.wsgi`` with ``scripts/gunicorn.conf.py`` and one worker twice,
``CSVAULT_HOT_READS=0`` (every request through Django) and ``=1``, sends keep-alive GETs
one after another for each kind of read (progress, detail, rows page of 100, the list's
first page) and divides the worker's CPU (``/proc``) by the requests. Prints both and
their ratio: the baseline is measured in the same run.

    .venv/bin/python bench/reads_bench.py [--requests 2000]

Needs PostgreSQL and Redis: database ``csvault_reads`` (created and migrated if
missing; ``--database``) and Redis database 14 as the cache (``--cache-db``); exported
``DATABASE_URL``/``CACHE_URL`` are ignored so that a run never touches another's data.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import secrets
import shutil
import subprocess
import tempfile

from ingest_bench import (
    BIN,
    ROOT,
    Service,
    cpu_by_pid,
    free_port,
    process_tree,
    wait_http_ready,
)

KINDS = ("progress", "detail", "rows", "list")


def prepare(env: dict[str, str]) -> tuple[str, str]:
    """Migrate, and give the bench user a completed dataset: (token, dataset id)."""
    subprocess.run(
        [str(BIN / "python"), "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    code = (
        "import io, sys\n"
        "from django.contrib.auth.models import User\n"
        "from rest_framework.authtoken.models import Token\n"
        "from rest_framework.test import APIClient\n"
        "from csvault.datasets.models import Dataset\n"
        "from csvault.pipeline.ingest import dataset_ingest\n"
        "from csvault.pipeline.scan import dataset_scan\n"
        "user, _ = User.objects.get_or_create(username='reads-bench')\n"
        "token, _ = Token.objects.get_or_create(user=user)\n"
        "done = Dataset.objects.filter(owner=user, status='completed', deleted_at=None).first()\n"
        "if done is None:\n"
        "    rows = ''.join(f'{i},name {i},u{i}@example.com,{i}.25,2024-01-{i % 28 + 1:02d},"
        '"Paris, FR","a ""q"", b",true\\n\' for i in range(1000))\n'
        "    body = io.BytesIO(('id,name,email,amount,date,city,note,flag\\n' + rows).encode())\n"
        "    body.name = 'reads.csv'\n"
        "    api = APIClient()\n"
        "    api.credentials(HTTP_AUTHORIZATION=f'Token {token.key}')\n"
        "    answer = api.post('/api/datasets/', {'file': body}, format='multipart')\n"
        "    dataset_id = answer.json()['id']\n"
        "    if dataset_scan(dataset_id=dataset_id, on_clean=None).status == 'queued':\n"
        "        dataset_ingest(dataset_id=dataset_id)\n"
        "    done = Dataset.objects.get(id=dataset_id)\n"
        "print(token.key, done.id, done.status)\n"
    )
    out = subprocess.run(
        [str(BIN / "python"), "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    if out[-1] != "completed":
        raise SystemExit(f"reads_bench: the seed dataset is {out[-1]}, not completed")
    return out[-3], out[-2]


def worker_cpu(web: Service) -> float:
    """CPU seconds the gunicorn workers (not the master) have used so far."""
    return sum(cpu_by_pid([pid for pid in process_tree(web.pid) if pid != web.pid]).values())


def measure(env: dict[str, str], token: str, dataset: str, requests: int) -> dict[str, float]:
    port = free_port()
    web = Service(
        f"reads-web-hot{env['CSVAULT_HOT_READS']}",
        [str(BIN / "gunicorn"), "config.wsgi", "--config", "scripts/gunicorn.conf.py"],
        {**env, "PORT": str(port), "WEB_CONCURRENCY": "1"},
    )
    paths = {
        "progress": f"/api/datasets/{dataset}/progress/",
        "detail": f"/api/datasets/{dataset}/",
        "rows": f"/api/datasets/{dataset}/rows/?after=300&limit=100",
        "list": "/api/datasets/",
    }
    headers = {"Authorization": f"Token {token}"}
    web.start()
    try:
        wait_http_ready(web, port, 30)
        result = {}
        for kind in KINDS:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            for _ in range(50):  # fill the cache, learn the headers, warm the pool
                conn.request("GET", paths[kind], headers=headers)
                answer = conn.getresponse()
                body = answer.read()
                if answer.status != 200:
                    raise SystemExit(
                        f"reads_bench: {kind} answered {answer.status}: {body[:200]!r}"
                    )
            before = worker_cpu(web)
            for _ in range(requests):
                conn.request("GET", paths[kind], headers=headers)
                conn.getresponse().read()
            result[kind] = 1000 * (worker_cpu(web) - before) / requests
            conn.close()
        return result
    finally:
        web.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="per kind and path")
    parser.add_argument("--database", default="csvault_reads")
    parser.add_argument("--cache-db", type=int, default=14)
    args = parser.parse_args()
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    env = {
        k: v for k, v in os.environ.items() if k not in ("CLAMD_URL", "STORAGE_URL", "DJANGO_DEBUG")
    }
    data_dir = tempfile.mkdtemp(prefix="reads-bench-")
    env.update(
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{args.database}",
        CACHE_URL=f"redis://127.0.0.1:6379/{args.cache_db}",
        CELERY_BROKER_URL=f"redis://127.0.0.1:6379/{args.cache_db}",
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        CSVAULT_MASTER_KEYS=f"reads:{key}",
        CSVAULT_DATA_DIR=data_dir,
        DJANGO_SECURE_SSL_REDIRECT="0",
        CSVAULT_THROTTLE_READ="100000000/min",
        LOG_LEVEL="WARNING",
    )
    subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-qc",
            f"DROP DATABASE IF EXISTS {args.database}",
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"CREATE DATABASE {args.database}"],
        check=True,
        capture_output=True,
    )
    token, dataset = prepare(env)
    django = measure({**env, "CSVAULT_HOT_READS": "0"}, token, dataset, args.requests)
    hot = measure({**env, "CSVAULT_HOT_READS": "1"}, token, dataset, args.requests)
    print(f"CPU of one gunicorn worker per request, {args.requests} keep-alive GETs per kind")
    print(f"{'kind':10} {'Django':>9} {'hot path':>9} {'ratio':>7}")
    for kind in KINDS:
        print(
            f"{kind:10} {django[kind]:7.2f} ms {hot[kind]:7.2f} ms {hot[kind] / django[kind]:6.2f}x"
        )
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"DROP DATABASE {args.database}"],
        check=False,
        capture_output=True,
    )
    shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
