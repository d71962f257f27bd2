"""``manage.py rotate_master_key``: re-wrap data keys under a new master key, drop the old."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.db import connection

from csvault.crypto.keyring import generate_master_key_spec
from csvault.datasets.keys import get_keyring
from csvault.datasets.models import Dataset
from csvault.datasets.rotation import (
    RotationReport,
    dataset_keys_rewrap,
    dataset_keys_stale,
)
from csvault.pipeline.ingest import dataset_ingest
from csvault.pipeline.scan import dataset_scan
from tests.csvdata import to_csv, tricky_rows
from tests.helpers import ROOT, ingest, read_all_rows, upload

pytestmark = pytest.mark.django_db

KEY_A = generate_master_key_spec("A")
KEY_B = generate_master_key_spec("B")
KEY_C = generate_master_key_spec("C")


def rotate(*args: str) -> str:
    out = io.StringIO()
    call_command("rotate_master_key", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def read_everything(api: Any, dataset_id: str) -> tuple[Any, ...]:
    # Detail and list come from the cache once warmed: they carry the header sealed
    # under the wrapped key, so a rotation must clear them.
    detail = api.get(f"/api/datasets/{dataset_id}/")
    assert detail.status_code == 200
    listed = api.get("/api/datasets/")
    assert listed.status_code == 200
    listed_columns = {d["id"]: d["columns"] for d in listed.json()["results"]}[dataset_id]
    columns, rows = read_all_rows(api, dataset_id)
    assert detail.json()["columns"] == listed_columns == columns
    exports = []
    for export_format in ("csv", "jsonl"):
        response = api.get(f"/api/datasets/{dataset_id}/export/?format={export_format}")
        assert response.status_code == 200
        exports.append(b"".join(response.streaming_content))
    return columns, rows, exports[0], exports[1]


def test_datasets_read_under_the_new_key_alone_after_rotation(api, other_api, settings):
    settings.CSVAULT_MASTER_KEYS = KEY_A
    ids = [ingest(upload(api, to_csv(tricky_rows(n)))) for n in (3, 40)]
    ids.append(ingest(upload(other_api, b"x,y\n1,2\n")))
    before = {i: read_everything(other_api if i == ids[2] else api, i) for i in ids}
    # Uploaded but not yet scanned: its file must still decrypt after the rotation.
    pending = upload(api, b"p,q\n3,4\n").json()["id"]
    assert set(Dataset.objects.values_list("key_id", flat=True)) == {"A"}

    settings.CSVAULT_MASTER_KEYS = f"{KEY_B},{KEY_A}"
    output = rotate()
    assert "Active master key: B" in output
    assert "Re-wrapped: 4" in output
    assert "Already current: 0" in output
    assert "Could not unwrap: 0" in output
    assert "Key ids still in use: B (4)" in output

    settings.CSVAULT_MASTER_KEYS = KEY_B
    for dataset_id, expected in before.items():
        client = other_api if dataset_id == ids[2] else api
        assert read_everything(client, dataset_id) == expected
    assert dataset_scan(dataset_id=pending, on_clean=None).status == "queued"
    assert dataset_ingest(dataset_id=pending).status == "completed"
    assert read_all_rows(api, pending) == (["p", "q"], [{"row": 1, "values": ["3", "4"]}])

    again = rotate()
    assert "Re-wrapped: 0" in again
    assert "Already current: 4" in again


def test_a_dry_run_writes_nothing(api, settings):
    settings.CSVAULT_MASTER_KEYS = KEY_A
    dataset_id = ingest(upload(api, b"a\n1\n"))
    wrapped = bytes(Dataset.objects.get(id=dataset_id).wrapped_key)
    settings.CSVAULT_MASTER_KEYS = f"{KEY_B},{KEY_A}"
    output = rotate("--dry-run")
    assert "Would re-wrap: 1" in output
    assert "Key ids still in use: A (1)" in output
    dataset = Dataset.objects.get(id=dataset_id)
    assert (dataset.key_id, bytes(dataset.wrapped_key)) == ("A", wrapped)


def test_it_exits_non_zero_naming_the_key_it_cannot_unwrap(api, settings):
    settings.CSVAULT_MASTER_KEYS = KEY_A
    lost = ingest(upload(api, b"a\n1\n"))
    settings.CSVAULT_MASTER_KEYS = KEY_C
    kept = ingest(upload(api, b"a\n2\n"))
    # B is the new key; A is missing from the ring, C is still there.
    settings.CSVAULT_MASTER_KEYS = f"{KEY_B},{KEY_C}"
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError, match="master key ids: A") as raised:
        call_command("rotate_master_key", stdout=out, stderr=err)
    text = out.getvalue() + err.getvalue() + str(raised.value)
    assert "Re-wrapped: 1" in text
    assert "Could not unwrap: 1" in text
    assert "'A'" in err.getvalue()
    for spec in (KEY_A, KEY_B, KEY_C):
        key = spec.split(":", 1)[1]
        assert key not in text
        assert base64.b64decode(key).hex() not in text
    assert Dataset.objects.get(id=lost).key_id == "A"
    assert Dataset.objects.get(id=kept).key_id == "B"


def subprocess_database_url() -> str:
    """The test database as a DATABASE_URL, for a manage.py process."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    auth = f"{db['USER']}{password}@" if db.get("USER") else ""
    return f"postgres://{auth}{db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}/{db['NAME']}"


def manage_py(*args: str, master_keys: str) -> subprocess.CompletedProcess[str]:
    """``python manage.py ...`` in its own process, against the test database."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": subprocess_database_url(),
            "CSVAULT_DATA_DIR": str(django_settings.DATA_DIR),
            "DJANGO_SECRET_KEY": django_settings.SECRET_KEY,
            "CSVAULT_MASTER_KEYS": master_keys,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.django_db(transaction=True)
def test_the_command_fails_through_manage_py_with_a_non_zero_status(api, settings):
    settings.CSVAULT_MASTER_KEYS = KEY_A
    dataset_id = ingest(upload(api, b"a\n1\n"))

    failed = manage_py("rotate_master_key", master_keys=KEY_B)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "Could not unwrap: 1" in failed.stdout
    assert "CommandError: Some data keys could not be unwrapped (master key ids: A)" in (
        failed.stderr
    )
    assert "Traceback" not in failed.stderr
    assert KEY_A.split(":", 1)[1] not in failed.stdout + failed.stderr
    assert Dataset.objects.get(id=dataset_id).key_id == "A"

    done = manage_py("rotate_master_key", master_keys=f"{KEY_B},{KEY_A}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Re-wrapped: 1" in done.stdout
    assert Dataset.objects.get(id=dataset_id).key_id == "B"


def test_a_dataset_deleted_or_rotated_meanwhile_is_never_overwritten(api, settings):
    settings.CSVAULT_MASTER_KEYS = KEY_A
    deleted, rotated, plain = (ingest(upload(api, f"a\n{n}\n".encode())) for n in range(3))
    settings.CSVAULT_MASTER_KEYS = f"{KEY_B},{KEY_A}"
    keyring = get_keyring()
    (batch,) = dataset_keys_stale(keyring=keyring, batch_size=10)
    assert len(batch) == 3

    # Between the read and the write: one dataset is deleted, another re-wrapped by a
    # concurrent run (a different wrapped value under the same new key id).
    assert api.delete(f"/api/datasets/{deleted}/").status_code == 204
    row = Dataset.objects.get(id=rotated)
    concurrent = keyring.rewrap(row.key_id, bytes(row.wrapped_key))
    Dataset.objects.filter(id=rotated).update(key_id=concurrent[0], wrapped_key=concurrent[1])

    report = RotationReport()
    dataset_keys_rewrap(keyring=keyring, rows=batch, report=report)
    assert (report.rewrapped, report.skipped) == (1, 2)
    assert bytes(Dataset.objects.get(id=deleted).wrapped_key) == b""  # still shredded
    row = Dataset.objects.get(id=rotated)
    assert (row.key_id, bytes(row.wrapped_key)) == concurrent
    assert Dataset.objects.get(id=plain).key_id == "B"
    settings.CSVAULT_MASTER_KEYS = KEY_B
    assert read_all_rows(api, rotated)[1] == [{"row": 1, "values": ["1"]}]


def test_deleted_datasets_neither_count_nor_keep_an_old_key_in_use(api, settings):
    settings.CSVAULT_MASTER_KEYS = KEY_A
    kept, deleted = (ingest(upload(api, f"a\n{n}\n".encode())) for n in range(2))
    assert api.delete(f"/api/datasets/{deleted}/").status_code == 204
    # The purge runs in the background; until then the shredded record is still there.
    assert Dataset.objects.filter(id=deleted).exists()
    settings.CSVAULT_MASTER_KEYS = f"{KEY_B},{KEY_A}"
    output = rotate()
    assert "Re-wrapped: 1" in output
    assert "Skipped (deleted or re-wrapped concurrently): 0" in output
    assert "Key ids still in use: B (1)" in output
    settings.CSVAULT_MASTER_KEYS = KEY_B
    assert read_all_rows(api, kept)[1] == [{"row": 1, "values": ["0"]}]


def test_batches_cover_every_dataset_once(api, settings):
    settings.CSVAULT_MASTER_KEYS = KEY_A
    ids = {upload(api, f"a\n{n}\n".encode()).json()["id"] for n in range(5)}
    settings.CSVAULT_MASTER_KEYS = f"{KEY_B},{KEY_A}"
    output = rotate("--batch-size", "2")
    assert "Re-wrapped: 5" in output
    assert {str(i) for i in Dataset.objects.filter(key_id="B").values_list("id", flat=True)} == ids
