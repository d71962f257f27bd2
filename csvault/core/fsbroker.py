"""The embedded mode's broker: kombu's filesystem transport, with atomic message files.

kombu's ``filesystem`` transport creates a message file empty, then writes it;
a worker polling the directory can move and read the file in between, get an
empty payload and lose the task (seen in CI: an upload left ``pending`` with
its scan task gone, once the worker polled every 0.1 s instead of every 1 s).
Here a message is written to ``<name>.part`` first and renamed into place in
one step, so a reader only ever sees whole messages: ``_get`` skips the
``.part`` name (it only takes files named ``<...>.<queue>.msg``).

Selected by ``CELERY_BROKER_TRANSPORT`` in config/settings.py when the broker
URL is ``filesystem://``.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Put ``payload`` onto ``queue``: write a temporary file, then rename it."""
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = final + ".part"
        try:
            with open(partial, "wb") as fh:
                fh.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
