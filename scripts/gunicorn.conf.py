"""gunicorn settings for ``make web`` / ``make run`` / ``make loadtest`` (environment-driven).

Defaults chosen by measurement (``make loadtest``): docs/performance.md, "Web server
settings", has the numbers behind ``gevent`` and the worker and pool sizes.
"""

import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# gevent: a connection that sends slowly (headers or body) holds a greenlet, not one of a
# few threads, so slow clients cannot take the web tier away (docs/security.md); the body
# reader cuts bodies slower than CSVAULT_MIN_BODY_RATE (csvault/core/bodyrate.py).
worker_class = os.environ.get("WEB_WORKER_CLASS", "gevent")
worker_connections = int(os.environ.get("WEB_WORKER_CONNECTIONS", "1000"))
threads = int(os.environ.get("WEB_THREADS", "4"))  # gthread only
if worker_class == "gevent":
    # Each greenlet is a "thread" to Django: a pool per process bounds the connections.
    os.environ.setdefault("CSVAULT_DATABASE_POOL", os.environ.get("WEB_DATABASE_POOL", "16"))
# Large uploads stream for a long time; don't kill a worker mid-upload.
timeout = int(os.environ.get("WEB_TIMEOUT", "600"))
keepalive = int(os.environ.get("WEB_KEEPALIVE", "5"))
accesslog = os.environ.get("WEB_ACCESS_LOG", "-") or None

# A request body arrives in reads of 64 KiB (csvault/core/bodyrate.py checks the rate
# per piece of that size). gunicorn receives up to max_body_chunk (1 MiB) at a time and
# copies what it holds past each read back into its buffer: about 3 MiB of copying per
# 64 KiB read. Receiving 64 KiB at a time leaves nothing to copy back.
from gunicorn.http.unreader import SocketUnreader  # noqa: E402

SocketUnreader.max_body_chunk = 64 * 1024
