"""The dataset store's Django ``STORAGES`` entry, from ``STORAGE_URL`` and the AWS_*
variables (config/settings.py reads them; tests build stores of their own with it)."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit


def datasets_storage(
    url: str,
    *,
    endpoint_url: str = "",
    access_key: str = "",
    secret_key: str = "",
    region: str = "us-east-1",
    addressing_style: str = "",
    connect_timeout: float = 5.0,
    read_timeout: float = 60.0,
) -> dict[str, Any]:
    """``file:///abs/path``: a local folder; ``s3://bucket[/prefix]``: an S3-compatible bucket.

    Without keys, boto3 finds credentials its usual way (instance role, ~/.aws).
    Raises ValueError for any other URL.
    """
    parts = urlsplit(url)
    if parts.scheme == "file" and parts.path and parts.netloc in ("", "localhost"):
        return {
            "BACKEND": "csvault.core.storage.LocalStorage",
            "OPTIONS": {"location": unquote(parts.path), "file_permissions_mode": 0o600},
        }
    if parts.scheme == "s3" and "@" in parts.netloc:
        raise ValueError(
            "STORAGE_URL must not carry credentials; use AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or the instance's role)"
        )
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(
            "STORAGE_URL must be file:///path or s3://bucket[/prefix]; got "
            f"{parts.scheme + ':' if parts.scheme else 'a URL without a scheme'}..."
        )
    from botocore.config import Config

    return {
        "BACKEND": "csvault.core.s3storage.S3Store",
        "OPTIONS": {
            "bucket_name": parts.netloc,
            "location": parts.path.strip("/"),
            "access_key": access_key or None,
            "secret_key": secret_key or None,
            "endpoint_url": endpoint_url or None,
            "region_name": region,
            "default_acl": None,
            "querystring_auth": False,
            "file_overwrite": True,
            "client_config": Config(
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                retries={"max_attempts": 3, "mode": "standard"},
                # A custom endpoint (MinIO, Ceph, moto) is addressed by path.
                s3={"addressing_style": addressing_style or ("path" if endpoint_url else "auto")},
                signature_version="s3v4",
                # Checksums only where S3 requires them: S3-compatible stores differ in
                # which of the newer checksum headers they accept.
                request_checksum_calculation="when_required",
            ),
        },
    }
