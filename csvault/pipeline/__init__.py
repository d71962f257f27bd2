"""The worker side: what happens to an uploaded file after the upload committed.

``claims`` (one state machine for every stage: claim, heartbeat, release, fail),
``scan`` (the malware scan), ``ingest`` (decrypt, parse, seal and store every row),
``rowstore`` and ``writer`` (bulk COPY of sealed row blocks, and the thread that
writes them), ``purge`` (what a delete leaves to the background), ``reaper``
(re-sends stalled work) and ``tasks`` (thin Celery shells). It writes datasets
only through ``csvault.datasets.update.dataset_update`` and never imports the
app's APIs, serializers, services or selectors (``make lint`` checks).
"""
