"""Create the load-test accounts and give each one completed dataset.

``python loadtests/seed.py --base http://127.0.0.1:PORT --accounts 100 --rows 1000
--out loadtests/out/accounts.json`` (from the repository root, with the same
environment as the server): the users and their API tokens are created
directly in the database (no password: token only), then one CSV per account
is uploaded through the running server and polled until its worker finishes,
so the seed exercises the real upload -> scan -> ingest path. Writes
``[{"username", "token", "datasets": [id]}]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def create_accounts(count: int, prefix: str) -> list[dict[str, Any]]:
    import django

    from config import bootstrap

    bootstrap.prepare()
    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from rest_framework.authtoken.models import Token

    user_model = get_user_model()
    names = [f"{prefix}{i:04d}" for i in range(count)]
    existing = set(user_model.objects.filter(username__in=names).values_list("username", flat=True))
    unusable = make_password(None)
    user_model.objects.bulk_create(
        [user_model(username=n, password=unusable) for n in names if n not in existing]
    )
    users = list(user_model.objects.filter(username__in=names).order_by("username"))
    Token.objects.bulk_create(
        [Token(user=u, key=Token.generate_key()) for u in users], ignore_conflicts=True
    )
    tokens = dict(Token.objects.filter(user__in=users).values_list("user__username", "key"))
    return [{"username": u.username, "token": tokens[u.username], "datasets": []} for u in users]


def _request(base: str, token: str, path: str, body: bytes | None = None, ctype: str = "") -> Any:
    headers = {"Authorization": f"Token {token}"}
    if ctype:
        headers["Content-Type"] = ctype
    req = urllib.request.Request(base + path, data=body, headers=headers)  # noqa: S310
    with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310
        return json.loads(resp.read())


def seed_dataset(base: str, account: dict[str, Any], rows: int, timeout: float) -> str:
    from csvgen import multipart, small_csv

    body, ctype = multipart({"name": "seed"}, "seed.csv", small_csv(rows))
    dataset_id: str = _request(base, account["token"], "/api/datasets/", body, ctype)["id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = _request(base, account["token"], f"/api/datasets/{dataset_id}/progress/")["status"]
        if status == "completed":
            return dataset_id
        if status in {"failed", "rejected", "cancelled"}:
            raise SystemExit(f"seed dataset {dataset_id} ended {status}")
        time.sleep(0.3)
    raise SystemExit(f"seed dataset {dataset_id} not completed after {timeout:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", required=True)
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--prefix", default=f"load-{uuid.uuid4().hex[:6]}-")
    parser.add_argument("--timeout", type=float, default=180)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    started = time.monotonic()
    accounts = create_accounts(args.accounts, args.prefix)
    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(
            pool.map(lambda a: seed_dataset(args.base, a, args.rows, args.timeout), accounts)
        )
    for account, dataset_id in zip(accounts, ids, strict=True):
        account["datasets"] = [dataset_id]
    Path(args.out).write_text(json.dumps(accounts, indent=1))
    print(
        f"seeded {len(accounts)} accounts with one {args.rows}-row dataset each "
        f"in {time.monotonic() - started:.1f} s -> {args.out}"
    )


if __name__ == "__main__":
    main()
