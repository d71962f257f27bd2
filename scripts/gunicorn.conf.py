"""gunicorn settings for ``make web`` / ``make run`` (environment-driven)."""

import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "4"))
# Large uploads stream for a long time; don't kill a worker mid-upload.
timeout = int(os.environ.get("WEB_TIMEOUT", "600"))
accesslog = "-"
