"""gunicorn settings for ``make web`` / ``make run`` / ``make loadtest`` (environment-driven).

Defaults chosen by measurement (``make loadtest``, README "Load test"): see there
for the numbers behind ``gthread`` and the worker/thread counts.
"""

import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = os.environ.get("WEB_WORKER_CLASS", "gthread")
threads = int(os.environ.get("WEB_THREADS", "4"))
# Large uploads stream for a long time; don't kill a worker mid-upload.
timeout = int(os.environ.get("WEB_TIMEOUT", "600"))
keepalive = int(os.environ.get("WEB_KEEPALIVE", "5"))
accesslog = os.environ.get("WEB_ACCESS_LOG", "-") or None
