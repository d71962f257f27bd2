import os

from django.conf import settings
from django.core.cache import caches
from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

from config import bootstrap

bootstrap.prepare()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# Bodies slower than the minimum rate are cut with 408 (csvault/core/bodyrate.py); the
# hot reads are answered from Redis before Django (csvault/datasets/hotreads.py).
django_application = get_wsgi_application()
# The URLconf (every view and what it imports) and the cache backend (django-redis and
# redis-py) are loaded as the process starts, not by its first request.
get_resolver().url_patterns  # noqa: B018
caches["default"]

from csvault.core.bodyrate import MinBodyRate  # noqa: E402 (after Django is set up)
from csvault.datasets.hotreads import HotReads  # noqa: E402

application = MinBodyRate(
    HotReads(django_application),
    rate=settings.CSVAULT_MIN_BODY_RATE,
    grace=settings.CSVAULT_BODY_GRACE_SECONDS,
)
