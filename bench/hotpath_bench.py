#!/usr/bin/env python3
"""Where the ingest time goes: the hot path stage by stage, in one process.

``make bench`` measures the service end to end; this script takes it apart, so
that a change to the reader, the row cipher or the COPY framing can be judged
in seconds. On one cached bench CSV (see ``ingest_bench.py``) it times, each
stage including the ones before it:

1. ``decrypt``  - the stored file's AEAD stream (64 KiB segments);
2. ``parse``    - + ``CsvStream.read_rows`` (strict UTF-8, csv.reader, widths);
3. ``seal``     - + ``RowCipher.seal_blocks`` (serialise blocks of rows, AES-256-GCM);
4. ``frame``    - + the binary COPY tuples (``RowBatch.add_rows``, what the ingest runs);

with ``--profile``, the C fast path reading the file to grid blocks alone and with
the column profile (``csvault.csvio.profile``) fed every block, and the profile's
share;
with ``--formats``, the in-process ingest of the file as UTF-8 with and without the
column profile and as Windows-1252 (detected, transcoded), each timed against the first;
then, with ``--pg-side``, PostgreSQL's CPU per row for the same COPY stream into
the real table (blocks of rows), the dataset's partition directly, and for
comparison one row per tuple (the layout before blocks) into a plain table with the
same primary key and into one without any index (bracketed by the ``make bench``
ceiling, measured twice);
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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def _batches(stream: Any, size: int) -> Iterator[list[list[str]]]:
    """The rows of an open CSV stream, ``size`` at a time (as the ingest reads them)."""
    while rows := stream.read_rows(size):
        yield rows


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
    from django.conf import settings

    from csvault.crypto.rows import RowCipher
    from csvault.crypto.stream import StreamEncryptor, decrypt_stream
    from csvault.csvio.reader import open_csv
    from csvault.pipeline.rowstore import rows_batch

    key, dataset = secrets.token_bytes(32), uuid.uuid4()
    encryptor = StreamEncryptor(key, dataset)
    stored = encryptor.update(csv_file.read_bytes()) + encryptor.finalize()
    cipher = RowCipher(key, dataset, 1, compress=settings.CSVAULT_COMPRESS_ROWS)

    def chunks() -> Iterator[bytes]:
        source = io.BytesIO(stored)
        return decrypt_stream(key, dataset, iter(lambda: source.read(1 << 20), b""))

    def decrypt() -> None:
        for _ in chunks():
            pass

    def parse() -> None:
        for _ in _batches(open_csv(chunks()), batch):
            pass

    def seal() -> None:
        first = 1
        for part in _batches(open_csv(chunks()), batch):
            cipher.seal_blocks(first, part)
            first += len(part)

    def frame() -> None:
        pending = rows_batch(dataset_id=dataset, first_row_number=1)
        for part in _batches(open_csv(chunks()), batch):
            pending.add_rows(cipher, part)
            if pending.count >= 20_000:  # as the ingest's batches, to bound memory
                following = pending.first_row_number + pending.count
                pending = rows_batch(dataset_id=dataset, first_row_number=following)

    print(f"stages ({rows:,} rows, steps of {batch:,}, gc {'off' if gc_off else 'on'}):")
    if gc_off:
        gc.disable()
    try:
        for label, fn in (
            ("decrypt", decrypt),
            ("parse", parse),
            ("seal", seal),
            ("frame", frame),
        ):
            _timed(label, rows, fn, repeat)
    finally:
        gc.enable()


def profile_stage(csv_file: Path, rows: int, repeat: int) -> None:
    """CPU of the fast path's reading to grid blocks, alone and with the column profile."""
    from ingest_bench import COLUMNS

    from csvault.csvio.fastcsv import open_fast_blocks
    from csvault.csvio.limits import CsvLimits
    from csvault.csvio.profile import Profiler

    def read(profile: bool) -> None:
        fast = open_fast_blocks(
            iter(lambda: source.read(1 << 20), b""), columns=list(COLUMNS), has_header=True,
            delimiter=",", encoding="utf-8", limits=CsvLimits(),
        )  # fmt: skip
        assert fast is not None, "the C fast path is not built"
        profiler = Profiler(len(COLUMNS), decimal_comma=False)
        while (got := fast.read(20_000)) is not None and got[1]:
            if profile:
                profiler.feed_blocks(got[0])

    data = csv_file.read_bytes()
    source = io.BytesIO(data)
    print(f"profile ({rows:,} rows, {len(COLUMNS)} columns, gc off):")
    gc.disable()
    try:
        times = []
        for label, profile in (("fast", False), ("+profile", True)):

            def run(profile: bool = profile) -> None:
                nonlocal source
                source = io.BytesIO(data)
                read(profile)

            times.append(_timed(label, rows, run, repeat))
    finally:
        gc.enable()
    extra = times[1] - times[0]
    print(
        f"  profile: {extra:.3f} s CPU, {extra / times[0] * 100:.0f} % of the fast path's,"
        f" {extra / (rows * len(COLUMNS)) * 1e9:.1f} ns a value",
        flush=True,
    )


def pg_side(csv_file: Path, rows: int) -> None:
    """PostgreSQL's own cost per row: the same binary COPY stream of encrypted rows into
    the real (partitioned, primary-keyed) table, a plain table with the same primary key,
    and a plain table without any index; CPU of the backend from /proc."""
    from django.conf import settings
    from django.db import connection

    from csvault.crypto.rows import RowCipher
    from csvault.csvio.blocks import BLOCK_MAX_ROWS
    from csvault.csvio.reader import open_csv
    from csvault.pipeline.rowstore import (
        _PG_COPY_HEADER,
        _PG_COPY_TRAILER,
        pg_binary_copy_tuples,
    )

    def stream(dataset: uuid.UUID, max_rows: int) -> bytes:
        """The COPY stream of the file's rows sealed in blocks of at most ``max_rows``
        (1: one row per tuple, the layout before blocks)."""
        cipher = RowCipher(
            secrets.token_bytes(32), dataset, 1, compress=settings.CSVAULT_COMPRESS_ROWS
        )
        parts, first = [_PG_COPY_HEADER], 1
        with open(csv_file, "rb") as fh:
            for part in _batches(open_csv(iter(lambda: fh.read(1 << 20), b"")), 4096):
                prefix, starts, ciphertexts = cipher.seal_blocks(first, part, max_rows=max_rows)
                parts.append(pg_binary_copy_tuples(dataset, starts, prefix, ciphertexts))
                first += len(part)
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
            "DROP TABLE IF EXISTS hot_pk, hot_plain; "
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
        for label, target, max_rows in (
            ("csvault table (blocks, hash-partitioned, PK)", table, BLOCK_MAX_ROWS),
            ("its partition directly (no routing)", partition, BLOCK_MAX_ROWS),
            ("one row per tuple: plain table, same PK", "hot_pk", 1),
            ("one row per tuple: plain table, no index", "hot_plain", 1),
        ):
            # A fresh id each time: no dead index entries from earlier runs.
            dataset = partition_dataset if target == partition else uuid.uuid4()
            payload = stream(dataset, max_rows)
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
        cursor.execute("DROP TABLE hot_pk, hot_plain")
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

    from config import bootstrap

    bootstrap.prepare()
    django.setup()


class _NoProfile:
    """A Profiler that does nothing: the ``--formats`` baseline without profiling."""

    def __init__(self, width: int, *, decimal_comma: bool) -> None:
        pass

    def feed_blocks(self, plaintexts: Any) -> None:
        pass

    def feed_rows(self, rows: Any) -> None:
        pass

    def result(self, columns: Any) -> list[Any]:
        return []


def cp1252_copy(csv_file: Path) -> Path:
    """The bench file in Windows-1252 (every character of it has one), cached beside it."""
    path = csv_file.with_name(csv_file.stem + "-cp1252.csv")
    if not path.is_file():
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        with open(csv_file, encoding="utf-8", newline="") as src, open(tmp, "wb") as out:
            while text := src.read(1 << 20):
                out.write(text.encode("cp1252"))
        os.replace(tmp, path)
    return path


def formats(csv_file: Path, rows: int, repeat: int) -> None:
    """Ingest time of the same rows: UTF-8 with and without the profile, and Windows-1252
    (detected and transcoded for the fast path), best of ``repeat`` each."""
    import csvault.pipeline.profiling as profiling

    real = profiling.Profiler
    cp1252 = cp1252_copy(csv_file)
    variants = [
        ("utf-8, no profile", csv_file, _NoProfile),
        ("utf-8", csv_file, real),
        ("cp1252", cp1252, real),
    ]
    best: dict[str, float] = {}
    for _ in range(repeat):
        for label, path, profiler in variants:
            profiling.Profiler = profiler  # type: ignore[misc,assignment]
            try:
                seconds = in_process(path, rows, quiet=True)
            finally:
                profiling.Profiler = real  # type: ignore[misc]
            best[label] = min(best.get(label, seconds), seconds)
    base = best["utf-8, no profile"]
    print(f"ingest by format (in-process, best of {repeat}, {rows:,} rows):")
    for label, _, _ in variants:
        seconds = best[label]
        print(
            f"  {label:<18} {seconds:7.3f} s  {rows / seconds:>11,.0f} rows/s  "
            f"{seconds / base:5.2f}x the time without the profile"
        )


def in_process(csv_file: Path, rows: int, *, quiet: bool = False) -> float:
    """Upload through the API in-process, then scan and ingest with the real services;
    the ingest's seconds."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from rest_framework.test import APIClient

    from csvault.datasets.models import Dataset
    from csvault.datasets.services import dataset_delete
    from csvault.pipeline import tasks
    from csvault.pipeline.ingest import dataset_ingest
    from csvault.pipeline.purge import dataset_purge
    from csvault.pipeline.scan import dataset_scan
    from csvault.scanning import get_scanner

    call_command("migrate", "--noinput", verbosity=0)
    # No broker here: the stages are called directly below.
    tasks.scan_dataset.delay_on_commit = lambda *a, **k: None
    tasks.purge_dataset.delay_on_commit = lambda *a, **k: None
    user = get_user_model().objects.create_user(f"hot-{uuid.uuid4().hex[:10]}")
    client = APIClient()
    client.force_authenticate(user)
    dataset_id: uuid.UUID | None = None
    try:
        before = _rss_mb()
        with open(csv_file, "rb") as fh:
            started = time.perf_counter()
            response = client.post("/api/datasets/", {"file": fh}, format="multipart")
            upload_s = time.perf_counter() - started
        assert response.status_code == 201, response.content
        dataset_id = uuid.UUID(response.json()["id"])
        started = time.perf_counter()
        verdict = dataset_scan(dataset_id=dataset_id, on_clean=None)
        scan_s = time.perf_counter() - started
        assert verdict.status == "queued", verdict
        rss_start = _rss_mb()
        started = time.perf_counter()
        outcome = dataset_ingest(dataset_id=dataset_id)
        ingest_s = time.perf_counter() - started
        assert outcome.rows == rows, outcome
        if quiet:
            return ingest_s
        print(f"in-process (DATABASE_URL {os.environ['DATABASE_URL']}):")
        size = csv_file.stat().st_size
        print(f"  upload     {upload_s:7.3f} s  {size / 1e6 / upload_s:6.1f} MB/s")
        scanner = get_scanner()
        print(f"  scan       {scan_s:7.3f} s  {size / 1e6 / scan_s:6.1f} MB/s  ({scanner.name})")
        print(
            f"  ingest     {ingest_s:7.3f} s  {ingest_s / rows * 1e6:6.2f} us/row  "
            f"{rows / ingest_s:>11,.0f} rows/s"
        )
        print(
            f"  RSS: {before:.0f} MB before the upload, {rss_start:.0f} MB before the ingest, "
            f"peak {_peak_mb():.0f} MB (includes the upload)"
        )
        return ingest_s
    finally:
        if dataset_id is not None:
            dataset_delete(dataset=Dataset.objects.get(id=dataset_id))
            dataset_purge(dataset_id=dataset_id)
        user.delete()


def main(argv: list[str]) -> int:
    from ingest_bench import ensure_csv

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=4096, help="rows per parse step")
    parser.add_argument("--repeat", type=int, default=2, help="best of N per stage")
    parser.add_argument("--gc-on", action="store_true", help="keep the cyclic GC running")
    parser.add_argument("--skip-stages", action="store_true")
    parser.add_argument(
        "--profile", action="store_true", help="the column profile's cost on the fast path"
    )
    parser.add_argument("--database", action="store_true", help="also scan+ingest in-process")
    parser.add_argument(
        "--pg-side", action="store_true", help="PostgreSQL's CPU per row, with and without the PK"
    )
    parser.add_argument(
        "--formats",
        action="store_true",
        help="in-process ingest of UTF-8 with and without the profile, and of Windows-1252",
    )
    args = parser.parse_args(argv)
    csv_file = ensure_csv(args.rows)
    setup_django()
    print(f"load average {'/'.join(f'{x:.2f}' for x in os.getloadavg())}, nproc {os.cpu_count()}")
    if not args.skip_stages:
        stages(csv_file, args.rows, args.batch, args.repeat, gc_off=not args.gc_on)
    if args.profile:
        profile_stage(csv_file, args.rows, args.repeat)
    if args.database or args.pg_side or args.formats:
        from django.core.management import call_command

        call_command("migrate", "--noinput", verbosity=0)
    if args.pg_side:
        pg_side(csv_file, args.rows)
    if args.database:
        in_process(csv_file, args.rows)
    if args.formats:
        formats(csv_file, args.rows, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
