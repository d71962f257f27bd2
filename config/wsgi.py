import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

from config import bootstrap

bootstrap.prepare()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# Bodies slower than the minimum rate are cut with 408 (csvault/core/bodyrate.py).
from csvault.core.bodyrate import MinBodyRate  # noqa: E402 (after the settings module is set)

application = MinBodyRate(
    get_wsgi_application(),
    rate=settings.CSVAULT_MIN_BODY_RATE,
    grace=settings.CSVAULT_BODY_GRACE_SECONDS,
)
