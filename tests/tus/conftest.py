"""The storage tests' S3 fixtures, for resumable uploads on S3."""

from tests.storage.conftest import bucket, s3, s3_server

__all__ = ["bucket", "s3", "s3_server"]
