"""Prometheus metrics: csvault's counters and histograms, scrape-time gauges, the /metrics view.

Every process (gunicorn workers, Celery workers and their pool children) writes its
counters into ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode, set up
by config.bootstrap.prepare() at every entry point), so a scrape of ``/metrics`` on any
web process sees the sum over every csvault process on that host. Workers on other hosts
serve the same on ``CSVAULT_WORKER_METRICS_PORT`` (see :func:`start_worker_exporter`).

Gauges that describe shared state (datasets by status, queue depth, scanner up) are not
kept by any process: :class:`StateCollector` computes them at scrape time.

Labels carry only fixed vocabularies (status, verdict, scanner, task name, queue): never
dataset ids, user ids or anything from a file.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from csvault.core import logs

logger = logging.getLogger(__name__)


def multiprocess_mode() -> bool:
    """True when metrics go to PROMETHEUS_MULTIPROC_DIR (settings must load first)."""
    from prometheus_client import values

    return bool(getattr(values.ValueClass, "_multiprocess", False))


if not multiprocess_mode():
    # PROMETHEUS_MULTIPROC_DIR was unset when prometheus_client was imported (the process
    # did not call config.bootstrap.prepare() first): its metrics are invisible to /metrics.
    logger.warning("prometheus_client is not in multiprocess mode; metrics stay in-process")

UPLOADS = Counter("csvault_uploads", "Datasets uploaded (accepted and stored).")
UPLOAD_BYTES = Counter("csvault_upload_bytes", "Plaintext bytes of accepted uploads.")
ROWS_INGESTED = Counter("csvault_rows_ingested", "Rows of datasets whose ingest completed.")
INGEST_DURATION = Histogram(
    "csvault_ingest_duration_seconds",
    "Wall time of an ingest run that completed a dataset.",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 2400, 3600),
)
SCAN_VERDICTS = Counter(
    "csvault_scan_verdicts",
    "Malware scan outcomes: clean, infected, too_large (rejected unscanned), unavailable.",
    ["verdict", "scanner"],
)
TASK_RESULTS = Counter(
    "csvault_task_results",
    "Pipeline tasks that returned, by the status they left the dataset in.",
    ["task", "result"],
)
TASK_FAILURES = Counter(
    "csvault_task_failures",
    "Celery tasks that failed with an exception (after their retries).",
    ["task", "exception"],
)
TASK_RETRIES = Counter("csvault_task_retries", "Celery task retries scheduled.", ["task"])
REAPER_REQUEUES = Counter(
    "csvault_reaper_requeues",
    "Stalled datasets whose task the reaper sent again, by task.",
    ["task"],
)


# --- one-line hooks for the services -------------------------------------------


def record_upload(*, dataset_id: object, size: int) -> None:
    """An upload was stored; also names the dataset in the request's log context."""
    UPLOADS.inc()
    UPLOAD_BYTES.inc(size)
    logs.dataset_id.set(str(dataset_id))


def record_ingest(*, rows: int, seconds: float) -> None:
    ROWS_INGESTED.inc(rows)
    INGEST_DURATION.observe(seconds)


def record_scan(verdict: str, scanner: str) -> None:
    SCAN_VERDICTS.labels(verdict=verdict, scanner=scanner).inc()


def record_requeue(task: str) -> None:
    REAPER_REQUEUES.labels(task=task).inc()


# --- scrape-time state -----------------------------------------------------------

# kombu's Redis transport keeps priorities 3, 6 and 9 in lists next to the queue's own.
_REDIS_PRIORITY_SEP = "\x06\x16"
_REDIS_PRIORITIES = (3, 6, 9)


def queue_depths(broker_url: str, transport_options: dict[str, Any]) -> dict[str, int]:
    """Messages waiting in each csvault queue (Redis LLEN, or message files on disk)."""
    from config.celery import all_queues

    queues = all_queues()
    if broker_url.startswith(("redis://", "rediss://")):
        import redis

        client = redis.Redis.from_url(broker_url, socket_connect_timeout=1, socket_timeout=1)
        try:
            pipe = client.pipeline(transaction=False)
            for queue in queues:
                pipe.llen(queue)
                for pri in _REDIS_PRIORITIES:
                    pipe.llen(f"{queue}{_REDIS_PRIORITY_SEP}{pri}")
            lengths = pipe.execute()
        finally:
            client.close()
        per = 1 + len(_REDIS_PRIORITIES)
        return {q: int(sum(lengths[i * per : (i + 1) * per])) for i, q in enumerate(queues)}
    if broker_url.startswith("filesystem://"):
        folder = Path(str(transport_options["data_folder_in"]))
        names = [entry.name for entry in os.scandir(folder) if entry.is_file()]
        return {q: sum(1 for n in names if n.endswith(f".{q}.msg")) for q in queues}
    return {}


def _probe_scanner() -> Any:
    """The configured scanner, with a short timeout when it is a network service."""
    from csvault.scanning import ClamdScanner, get_scanner

    if settings.CLAMD_URL:
        return ClamdScanner(settings.CLAMD_URL, timeout=settings.CSVAULT_PROBE_TIMEOUT)
    return get_scanner()


#: Scrape-time gauges of the apps above core, by part name (the datasets app registers
#: its gauges in its AppConfig.ready()): each yields metric families or raises.
STATE_PARTS: dict[str, Callable[[], Iterable[GaugeMetricFamily]]] = {}


class StateCollector(Collector):
    """Gauges computed at scrape time from the database, the broker and the scanner.

    A part that cannot be read is left out of the scrape (and counted in
    ``csvault_scrape_errors``) so that one outage does not hide every other metric.
    """

    def collect(self) -> Iterator[GaugeMetricFamily]:
        errors = GaugeMetricFamily(
            "csvault_scrape_errors",
            "1 when a part of the scrape-time state could not be read.",
            labels=["part"],
        )
        for part, produce in (
            *STATE_PARTS.items(),
            ("queues", self._queues),
            ("scanner", self._scanner),
        ):
            try:
                yield from produce()
                errors.add_metric([part], 0)
            except Exception as exc:
                logger.warning("metrics: %s unavailable: %s", part, type(exc).__name__)
                errors.add_metric([part], 1)
        yield errors

    def _queues(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "csvault_queue_depth", "Messages waiting in each broker queue.", labels=["queue"]
        )
        for queue, n in queue_depths(
            settings.CELERY_BROKER_URL, settings.CELERY_BROKER_TRANSPORT_OPTIONS
        ).items():
            depth.add_metric([queue], n)
        yield depth

    def _scanner(self) -> Iterator[GaugeMetricFamily]:
        from csvault.scanning import ScannerUnavailable

        up = GaugeMetricFamily(
            "csvault_scanner_up",
            "1 when the malware scanner answered a ping at scrape time.",
            labels=["scanner", "minimal"],
        )
        scanner = _probe_scanner()
        try:
            scanner.ping()
            value = 1
        except ScannerUnavailable:
            value = 0
        up.add_metric([scanner.name, str(bool(scanner.minimal)).lower()], value)
        yield up


def multiprocess_registry() -> CollectorRegistry:
    """A registry that reads every csvault process's metric files on this host."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


# --- exposition --------------------------------------------------------------------


def _authorized(request: HttpRequest) -> bool:
    return _token_accepted(request.headers.get("Authorization", ""))


def _token_accepted(header: str) -> bool:
    token = settings.CSVAULT_METRICS_TOKEN
    if not token:
        return bool(settings.CSVAULT_METRICS_PUBLIC)
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)


def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET /metrics`` in the Prometheus text format: behind CSVAULT_METRICS_TOKEN if
    set, else open only with CSVAULT_METRICS_PUBLIC (embedded mode's default)."""
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405, headers={"Allow": "GET, HEAD"})
    if not _authorized(request):
        return HttpResponse(
            "metrics need Authorization: Bearer <CSVAULT_METRICS_TOKEN> (with no token set, "
            "CSVAULT_METRICS_PUBLIC=1 serves them to anyone)\n",
            status=401,
            content_type="text/plain",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    started = time.monotonic()
    registry = multiprocess_registry()
    registry.register(StateCollector())
    body = generate_latest(registry)
    logger.debug("metrics scraped in %.3f s", time.monotonic() - started)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


def start_worker_exporter(port: int, addr: str = "0.0.0.0") -> None:  # noqa: S104
    """Serve this host's multiprocess metrics on ``port`` (for hosts that run only workers),
    behind the same rule as ``/metrics``: the bearer token ``CSVAULT_METRICS_TOKEN``, or
    open to anyone only with ``CSVAULT_METRICS_PUBLIC``.

    Scrape-time state (datasets, queues, scanner) is left to ``/metrics`` on the web
    servers, so that it is not reported once per host.
    """
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from prometheus_client import make_wsgi_app
    from prometheus_client.exposition import ThreadingWSGIServer

    metrics_app = make_wsgi_app(multiprocess_registry())

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not _token_accepted(environ.get("HTTP_AUTHORIZATION", "")):
            start_response(
                "401 Unauthorized",
                [("Content-Type", "text/plain"), ("WWW-Authenticate", 'Bearer realm="metrics"')],
            )
            return [b"metrics need Authorization: Bearer <CSVAULT_METRICS_TOKEN>\n"]
        return metrics_app(environ, start_response)

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per scrape on stderr would drown the worker's log

    server = make_server(addr, port, app, ThreadingWSGIServer, handler_class=QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True, name="metrics").start()
    if not settings.CSVAULT_METRICS_TOKEN and not settings.CSVAULT_METRICS_PUBLIC:
        logger.warning(
            "worker metrics exporter on %s:%d refuses every scrape: set CSVAULT_METRICS_TOKEN "
            "(or CSVAULT_METRICS_PUBLIC=1)",
            addr,
            port,
        )
    logger.info("worker metrics exporter listening on %s:%d", addr, port)


def record_served_request(
    *, view: str, method: str, status: int, secure: bool, body_bytes: int, seconds: float
) -> None:
    """Count a request answered before Django's middleware (the hot reads,
    csvault/datasets/hotreads.py) in django-prometheus's own metrics, as its two
    middlewares would: /metrics and the alert rules see every request whichever
    path served it."""
    from django_prometheus.middleware import Metrics

    metrics = Metrics.get_instance()
    code = str(status)
    metrics.requests_total.inc()
    metrics.requests_by_method.labels(method=method).inc()
    metrics.requests_by_transport.labels(transport="https" if secure else "http").inc()
    metrics.requests_body_bytes.observe(0)
    metrics.requests_by_view_transport_method.labels(
        view=view, transport="https" if secure else "http", method=method
    ).inc()
    metrics.responses_by_status.labels(status=code).inc()
    metrics.responses_by_status_view_method.labels(status=code, view=view, method=method).inc()
    metrics.responses_by_charset.labels(charset="utf-8").inc()
    metrics.responses_body_bytes.observe(body_bytes)
    metrics.requests_latency_by_view_method.labels(view=view, method=method).observe(seconds)
    metrics.responses_total.inc()
    metrics.requests_latency_before.observe(seconds)
