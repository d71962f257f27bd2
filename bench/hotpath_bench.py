#!/usr/bin/env python3
"""Where the ingest time goes: the hot path stage by stage, in one process.

``make bench`` measures the service end to end; this script takes it apart, so
that a change to the reader, the row cipher or the COPY framing can be judged
in seconds. On one cached bench CSV (see ``ingest_bench.py``) it times, each
stage including the ones before it:

1. ``decrypt``  - the stored file's AEAD stream (64 KiB segments);
2. ``parse``    - + ``CsvStream.batches`` (strict UTF-8, csv.reader, widths);
3. ``encrypt``  - + ``RowCipher.encrypt_rows`` (serialise, AES-256-GCM);
4. ``frame``    - + the binary COPY tuples (``pg_binary_copy_tuples``);
5. ``native``   - parse + encryption and framing in C (``RowCipher.copy_tuples``);

(``native`` only when the C accelerator is built); then, with ``--pg-side``,
PostgreSQL's CPU per row for the same COPY stream into the real table, the
dataset's partition directly, a plain table with the same primary key, one
without any index and one holding 32 rows per keyed tuple (bracketed by the
``make bench`` ceiling, measured twice);
with ``--database``, ``scan`` (the configured scanner) and the real
``dataset_ingest`` in-process against PostgreSQL, with the peak RSS of this
process. Example::

    .venv/bin/python bench/hotpath_bench.py --rows 1000000 --database
    .venv/bin/python bench/hotpath_bench.py --rows 300000 --skip-stages --pg-side

It uses ``DATABASE_URL`` (default: the bench database) and never a broker.
"""

from __future__ import annotations

import argparse
import base64
import gc
import io
import os
import resource
import secrets
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(label: str, rows: int, fn: Callable[[], object], repeat: int) -> float:
    """Best of ``repeat`` runs, in CPU seconds of this process (robust to a busy machine)."""
    best = best_wall = float("inf")
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        fn()
        best = min(best, time.process_time() - started_cpu)
        best_wall = min(best_wall, time.perf_counter() - started)
    print(
        f"  {label:<10} {best:7.3f} s CPU  {best / rows * 1e6:6.2f} us/row  "
        f"{rows / best:>11,.0f} rows/s per core  (wall {best_wall:.3f} s)",
        flush=True,
    )
    return best


def stages(csv_file: Path, rows: int, batch: int, repeat: int, gc_off: bool) -> None:
    from csvault.crypto.rows import NATIVE_AVAILABLE, RowCipher
    from csvault.crypto.stream import StreamEncryptor, decrypt_stream
    from csvault.datasets.csvreader import open_csv
    from csvault.datasets.rowstore import pg_binary_copy_tuples, pg_tuple_prefix

    key, dataset = secrets.token_bytes(32), uuid.uuid4()
    encryptor = StreamEncryptor(key, dataset)
    stored = encryptor.update(csv_file.read_bytes()) + encryptor.finalize()
    cipher = RowCipher(key, dataset, 1)

    def chunks() -> Iterator[bytes]:
        source = io.BytesIO(stored)
        return decrypt_stream(key, dataset, iter(lambda: source.read(1 << 20), b""))

    def decrypt() -> None:
        for _ in chunks():
            pass

    def parse() -> None:
        for _ in open_csv(chunks()).batches(batch):
            pass

    def encrypt() -> None:
        first = 1
        for part in open_csv(chunks()).batches(batch):
            cipher.encrypt_rows_split(first, part)
            first += len(part)

    def frame() -> None:
        first = 1
        for part in open_csv(chunks()).batches(batch):
            prefix, ciphertexts = cipher.encrypt_rows_split(first, part)
            pg_binary_copy_tuples(dataset, first, prefix, ciphertexts)
            first += len(part)

    tuple_prefix = pg_tuple_prefix(dataset)

    def native() -> None:
        # parse, then encrypt + frame in C (what the ingest runs when it is built)
        first = 1
        for part in open_csv(chunks()).batches(batch):
            if cipher.copy_tuples(first, part, tuple_prefix) is None:
                raise SystemExit("the C accelerator declined a batch (or is not built)")
            first += len(part)

    print(f"stages ({rows:,} rows, steps of {batch:,}, gc {'off' if gc_off else 'on'}):")
    if gc_off:
        gc.disable()
    try:
        for label, fn in (
            ("decrypt", decrypt),
            ("parse", parse),
            ("encrypt", encrypt),
            ("frame", frame),
            *((("native", native),) if NATIVE_AVAILABLE else ()),
        ):
            _timed(label, rows, fn, repeat)
        if not NATIVE_AVAILABLE:
            print("  native     (C accelerator not built)")
    finally:
        gc.enable()


def pg_side(csv_file: Path, rows: int) -> None:
    """PostgreSQL's own cost per row: the same binary COPY stream of encrypted rows into
    the real (partitioned, primary-keyed) table, a plain table with the same primary key,
    and a plain table without any index; CPU of the backend from /proc."""
    from django.db import connection

    from csvault.crypto.rows import RowCipher
    from csvault.datasets.csvreader import open_csv
    from csvault.datasets.rowstore import (
        _PG_COPY_HEADER,
        _PG_COPY_TRAILER,
        pg_binary_copy_tuples,
    )

    def stream(dataset: uuid.UUID, block: int = 1) -> bytes:
        """The COPY stream: one tuple per row, or (block > 1) one per ``block`` rows,
        the same sealed rows length-prefixed one after the other (a storage design
        csvault does not use; measured to show what one index entry per row costs)."""
        cipher = RowCipher(secrets.token_bytes(32), dataset, 1)
        parts, first = [_PG_COPY_HEADER], 1
        pending: list[bytes] = []
        with open(csv_file, "rb") as fh:
            for part in open_csv(iter(lambda: fh.read(1 << 20), b"")).batches(4096):
                prefix, ciphertexts = cipher.encrypt_rows_split(first, part)
                if block == 1:
                    parts.append(pg_binary_copy_tuples(dataset, first, prefix, ciphertexts))
                else:
                    pending.extend(prefix + c for c in ciphertexts)
                first += len(part)
        if block > 1:
            # Blocks numbered 0, 1, ...: each the block's sealed rows, length-prefixed.
            sealed = [
                b"".join(len(b).to_bytes(4, "big") + b for b in pending[n : n + block])
                for n in range(0, len(pending), block)
            ]
            parts.append(pg_binary_copy_tuples(dataset, 0, b"", sealed))
        parts.append(_PG_COPY_TRAILER)
        return b"".join(parts)

    tick = os.sysconf("SC_CLK_TCK")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]

        def backend_cpu() -> float:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / tick

        # Regular tables (temporary ones would skip the WAL, which the real one writes).
        cursor.execute(
            "DROP TABLE IF EXISTS hot_pk, hot_plain, hot_blocks; "
            # Blocks stay in the page, uncompressed (ciphertext does not compress).
            "CREATE TABLE hot_blocks (dataset_id uuid, row_number bigint, data bytea, "
            "PRIMARY KEY (dataset_id, row_number)); "
            "ALTER TABLE hot_blocks ALTER COLUMN data SET STORAGE PLAIN; "
            "CREATE TABLE hot_pk (dataset_id uuid, row_number bigint, data bytea, "
            "PRIMARY KEY (dataset_id, row_number)); "
            "CREATE TABLE hot_plain (dataset_id uuid, row_number bigint, data bytea)"
        )
        # One dataset for the partition run, and the partition its rows hash to.
        partition_dataset = uuid.uuid4()
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s "
            "AND satisfies_hash_partition(p.oid, %s, "
            "substring(pg_get_expr(c.relpartbound, c.oid) from 'remainder (\\d+)')::int, %s)",
            ["datasets_processeddata", 16, partition_dataset],
        )
        partition = cursor.fetchone()[0]
        print(f"PostgreSQL side ({rows:,} encrypted rows, binary COPY, backend CPU from /proc):")
        from ingest_bench import measure_ceiling

        def ceiling() -> None:
            result = measure_ceiling(os.environ["DATABASE_URL"], csv_file, rows)
            print(
                f"  {'make bench ceiling (text COPY of the CSV file)':<46} "
                f"{result['rows_per_second']:>10,} rows/s  "
                f"({result['seconds'] / rows * 1e6:.2f} us/row wall)"
            )

        ceiling()
        table = "datasets_processeddata"
        for label, target in (
            ("csvault table (hash-partitioned, primary key)", table),
            ("its partition directly (no routing)", partition),
            ("plain table, same primary key", "hot_pk"),
            ("plain table, no index", "hot_plain"),
            ("blocks of 32 rows per tuple, primary key", "hot_blocks"),
        ):
            # A fresh id each time: no dead index entries from earlier runs.
            dataset = partition_dataset if target == partition else uuid.uuid4()
            payload = stream(dataset, 32 if target == "hot_blocks" else 1)
            with connection.cursor() as cur:
                cpu, started = backend_cpu(), time.perf_counter()
                with cur.cursor.copy(
                    f"COPY {target} (dataset_id, row_number, data) FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.write(payload)
                wall, cpu = time.perf_counter() - started, backend_cpu() - cpu
                print(
                    f"  {label:<46} {rows / wall:>10,.0f} rows/s  backend CPU "
                    f"{cpu / rows * 1e6:5.2f} us/row"
                )
                if target in (table, partition):
                    cur.execute(f"DELETE FROM {table} WHERE dataset_id = %s", [dataset])
        cursor.execute("DROP TABLE hot_pk, hot_plain, hot_blocks")
    ceiling()  # again: the machine's speed drifts, the bracket shows by how much


def setup_django() -> None:
    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/csvault_bench")
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    os.environ.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        CSVAULT_MASTER_KEYS=f"hot{secrets.token_hex(4)}:{key}",
        DJANGO_SECURE_SSL_REDIRECT="0",
        CSVAULT_DATA_DIR=str(ROOT / "bench" / "out" / "data"),
    )
    os.environ.pop("CELERY_BROKER_URL", None)
    import django

    django.setup()


def in_process(csv_file: Path, rows: int) -> None:
    """Upload through the API in-process, then scan and ingest with the real services."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from rest_framework.test import APIClient

    from csvault.datasets import tasks
    from csvault.datasets.ingest import dataset_ingest
    from csvault.datasets.models import Dataset
    from csvault.datasets.scan import dataset_scan
    from csvault.datasets.services import dataset_delete, dataset_purge
    from csvault.scanning import get_scanner

    call_command("migrate", "--noinput", verbosity=0)
    # No broker here: the stages are called directly below.
    tasks.scan_dataset.delay_on_commit = lambda *a, **k: None  # type: ignore[attr-defined]
    tasks.ingest_dataset.delay_on_commit = lambda *a, **k: None  # type: ignore[attr-defined]
    tasks.purge_dataset.delay_on_commit = lambda *a, **k: None  # type: ignore[attr-defined]
    user = get_user_model().objects.create_user(f"hot-{uuid.uuid4().hex[:10]}")
    client = APIClient()
    client.force_authenticate(user)
    try:
        before = _rss_mb()
        with open(csv_file, "rb") as fh:
            started = time.perf_counter()
            response = client.post("/api/datasets/", {"file": fh}, format="multipart")
            upload_s = time.perf_counter() - started
        assert response.status_code == 201, response.content
        dataset_id = uuid.UUID(response.json()["id"])
        print(f"in-process (DATABASE_URL {os.environ['DATABASE_URL']}):")
        size = csv_file.stat().st_size
        print(f"  upload     {upload_s:7.3f} s  {size / 1e6 / upload_s:6.1f} MB/s")
        started = time.perf_counter()
        verdict = dataset_scan(dataset_id=dataset_id)
        scan_s = time.perf_counter() - started
        scanner = get_scanner()
        print(f"  scan       {scan_s:7.3f} s  {size / 1e6 / scan_s:6.1f} MB/s  ({scanner.name})")
        assert verdict.status == "queued", verdict
        rss_start = _rss_mb()
        started = time.perf_counter()
        outcome = dataset_ingest(dataset_id=dataset_id)
        ingest_s = time.perf_counter() - started
        assert outcome.rows == rows, outcome
        print(
            f"  ingest     {ingest_s:7.3f} s  {ingest_s / rows * 1e6:6.2f} us/row  "
            f"{rows / ingest_s:>11,.0f} rows/s"
        )
        print(
            f"  RSS: {before:.0f} MB before the upload, {rss_start:.0f} MB before the ingest, "
            f"peak {_peak_mb():.0f} MB (includes the upload)"
        )
        dataset_delete(dataset=Dataset.objects.get(id=dataset_id))
        dataset_purge(dataset_id=dataset_id)
    finally:
        user.delete()


def main(argv: list[str]) -> int:
    from ingest_bench import ensure_csv

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=4096, help="rows per parse step")
    parser.add_argument("--repeat", type=int, default=2, help="best of N per stage")
    parser.add_argument("--gc-on", action="store_true", help="keep the cyclic GC running")
    parser.add_argument("--skip-stages", action="store_true")
    parser.add_argument("--database", action="store_true", help="also scan+ingest in-process")
    parser.add_argument(
        "--pg-side", action="store_true", help="PostgreSQL's CPU per row, with and without the PK"
    )
    args = parser.parse_args(argv)
    csv_file = ensure_csv(args.rows)
    setup_django()
    print(f"load average {'/'.join(f'{x:.2f}' for x in os.getloadavg())}, nproc {os.cpu_count()}")
    if not args.skip_stages:
        stages(csv_file, args.rows, args.batch, args.repeat, gc_off=not args.gc_on)
    if args.database or args.pg_side:
        from django.core.management import call_command

        call_command("migrate", "--noinput", verbosity=0)
    if args.pg_side:
        pg_side(csv_file, args.rows)
    if args.database:
        in_process(csv_file, args.rows)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
