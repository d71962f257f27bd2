"""Datasets and their encrypted rows."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class DatasetStatus(models.TextChoices):
    UPLOADING = "uploading", "Uploading"
    PENDING = "pending", "Pending"
    SCANNING = "scanning", "Scanning"
    QUEUED = "queued", "Queued"
    PROCESSING = "processing", "Processing"
    COMPLETED = "completed", "Completed"
    REJECTED = "rejected", "Rejected"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINAL_STATUSES = frozenset(
    {
        DatasetStatus.COMPLETED,
        DatasetStatus.REJECTED,
        DatasetStatus.FAILED,
        DatasetStatus.CANCELLED,
    }
)


class Dataset(models.Model):
    """One uploaded file and the state of its ingest.

    The id is a random UUID (never a guessable integer in URLs). The header
    names are stored encrypted (``columns_ciphertext``) like the rows; the file
    in storage is encrypted with the same per-dataset data key, which is kept
    only wrapped by a master key (``key_id``). Every write after creation goes
    through ``dataset_update`` (csvault/datasets/update.py): an UPDATE, conditional
    on the expected previous state where there is one, that also clears the cached reads.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="datasets"
    )
    name = models.CharField(max_length=255)
    original_filename = models.CharField(max_length=255, blank=True)
    storage_key = models.CharField(max_length=255)
    size = models.BigIntegerField(help_text="Plaintext size of the uploaded file in bytes.")
    sha256 = models.CharField(max_length=64)
    has_header = models.BooleanField(default=True)
    # Given with the upload, or "" until the scan detects it (csvault/csvio/detect.py).
    delimiter = models.CharField(max_length=1, default=",", blank=True)
    delimiter_detected = models.BooleanField(default=False)
    # A canonical codec name (utf-8, utf-16-le, cp1252...); "" until detected.
    encoding = models.CharField(max_length=32, default="", blank=True)
    encoding_detected = models.BooleanField(default=False)
    status = models.CharField(
        max_length=16, choices=DatasetStatus.choices, default=DatasetStatus.PENDING
    )
    columns_ciphertext = models.BinaryField(null=True, blank=True)
    # Encrypted like the header (they hold header names and values): the spreadsheet
    # habits tolerated, and the column profile; both written when the ingest completes.
    warnings_ciphertext = models.BinaryField(null=True, blank=True)
    profile_ciphertext = models.BinaryField(null=True, blank=True)
    column_count = models.IntegerField(null=True, blank=True)
    row_count = models.BigIntegerField(null=True, blank=True)
    rows_processed = models.BigIntegerField(default=0)
    bytes_processed = models.BigIntegerField(default=0)
    error = models.JSONField(null=True, blank=True)
    key_id = models.CharField(max_length=64)
    wrapped_key = models.BinaryField()
    attempts = models.IntegerField(default=0, help_text="Ingest runs started.")
    scan_attempts = models.IntegerField(default=0, help_text="Malware scans started.")
    scanner = models.CharField(max_length=32, blank=True, help_text="Scanner of the verdict.")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Set by DELETE together with destroying the wrapped key (crypto-shredding);
    # the rows, the file and this record are then purged in the background.
    deleted_at = models.DateTimeField(null=True, blank=True)
    # The client's Idempotency-Key header of the upload ("" when none): a retried
    # upload with the same key gets this dataset back instead of a second one.
    idempotency_key = models.CharField(max_length=255, blank=True, default="")
    # Plaintext bytes received: ``size`` once the upload is complete; while a resumable
    # upload is ``uploading``, how far it has come (its tus Upload-Offset).
    bytes_received = models.BigIntegerField(default=0)

    class Meta:
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="dataset_owner_created"),
            models.Index(fields=["status", "heartbeat_at"], name="dataset_status_heartbeat"),
            models.Index(fields=["owner", "sha256"], name="dataset_owner_sha256"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="dataset_owner_idempotency_key",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=DatasetStatus.values), name="dataset_status_valid"
            ),
            # Rows are readable once completed: never without a clean scan verdict.
            models.CheckConstraint(
                condition=~models.Q(status=DatasetStatus.COMPLETED) | ~models.Q(scanner=""),
                name="dataset_completed_scanned",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


class ProcessedData(models.Model):
    """A block of consecutive rows of one dataset, AES-256-GCM encrypted.

    ``row_number`` is the block's first row; the block says how many rows it
    holds (at most ``BLOCK_MAX_ROWS``; see csvault.csvio.blocks and
    ``csvault.pipeline.rowstore.rows_read``). The composite primary key (dataset, row_number)
    makes a replayed batch unable to store its blocks twice, and an ingest
    resumes after the last committed row, so blocks never overlap.
    """

    pk = models.CompositePrimaryKey("dataset_id", "row_number")
    # No database foreign key and no separate index: the primary key's leading
    # column serves lookups, and a per-row FK check (a deferred trigger per
    # row) made COPY about 7x slower. Rows are deleted by the services (and by
    # Django's cascade when a user is deleted).
    dataset = models.ForeignKey(
        Dataset,
        on_delete=models.CASCADE,
        related_name="rows",
        db_constraint=False,
        db_index=False,
    )
    row_number = models.BigIntegerField()
    data = models.BinaryField()

    class Meta:
        verbose_name_plural = "processed data"

    def __str__(self) -> str:
        return f"rows from {self.row_number} of {self.dataset_id}"


class ResumableUpload(models.Model):
    """The state of a resumable (tus) upload while its dataset is ``uploading``: every
    web host can take the next chunk (csvault/datasets/resumable.py)."""

    dataset = models.OneToOneField(
        Dataset, primary_key=True, on_delete=models.CASCADE, related_name="resumable"
    )
    expires_at = models.DateTimeField()
    # The file's nonce prefix (csvault.crypto.stream.SegmentSealer), and the bytes past
    # the last whole segment, encrypted (seal_tail), until the next chunk completes it.
    prefix = models.BinaryField()
    tail = models.BinaryField(null=True, blank=True)
    # The store's ResumableWrite checkpoint (a local file's size; S3 parts and staging).
    store_state = models.JSONField(default=dict)
    # One request at a time appends: the one holding an unexpired lease.
    lease_token = models.UUIDField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"resumable upload {self.dataset_id}"
