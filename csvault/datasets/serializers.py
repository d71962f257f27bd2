"""Input validation and output shapes of the dataset API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from csvault.datasets.keys import dataset_columns, dataset_warnings
from csvault.datasets.models import Dataset, DatasetStatus
from csvault.datasets.progress import progress_from_checkpoint

ROWS_DEFAULT_LIMIT = 100
ROWS_MAX_LIMIT = 1000


class DatasetUploadSerializer(serializers.Serializer):
    file = serializers.FileField(allow_empty_file=True)
    name = serializers.CharField(required=False, allow_blank=True, max_length=255, default="")
    has_header = serializers.BooleanField(required=False, default=True)
    # Empty (the default): detected. One character, or "tab" / "\\t"; which characters
    # may be one is csvault.csvio's to say (dataset_create calls it).
    delimiter = serializers.CharField(
        required=False, default="", allow_blank=True, max_length=8, trim_whitespace=False
    )
    # Empty (the default): detected. A codec name, e.g. utf-8, utf-16, windows-1252.
    encoding = serializers.CharField(required=False, default="", allow_blank=True, max_length=40)


class ProgressSerializer(serializers.Serializer):
    status = serializers.CharField()
    rows_processed = serializers.IntegerField()
    bytes_processed = serializers.IntegerField()
    bytes_total = serializers.IntegerField()
    percent = serializers.FloatField()
    rows_per_second = serializers.FloatField(allow_null=True)
    eta_seconds = serializers.FloatField(allow_null=True)


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    row = serializers.IntegerField(allow_null=True, required=False)
    column = serializers.IntegerField(allow_null=True, required=False)


class WarningSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class DatasetSerializer(serializers.ModelSerializer):
    columns = serializers.SerializerMethodField()
    warnings = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    filename = serializers.CharField(source="original_filename", read_only=True)

    class Meta:
        model = Dataset
        fields = [
            "id",
            "name",
            "filename",
            "status",
            "row_count",
            "columns",
            "size",
            "bytes_received",
            "sha256",
            "has_header",
            "delimiter",
            "delimiter_detected",
            "encoding",
            "encoding_detected",
            "warnings",
            "progress",
            "error",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_columns(self, obj: Dataset) -> list[str]:
        if self.context.get("sealed_columns"):
            return []  # the cached form carries them encrypted (cache.seal_columns)
        return dataset_columns(obj)

    @extend_schema_field(WarningSerializer(many=True))
    def get_warnings(self, obj: Dataset) -> list[dict[str, Any]]:
        if self.context.get("sealed_columns"):
            return []  # the cached form carries them encrypted, with the columns
        return dataset_warnings(obj)

    @extend_schema_field(ProgressSerializer)
    def get_progress(self, obj: Dataset) -> dict[str, Any]:
        return progress_from_checkpoint(dataset=obj)

    @extend_schema_field(ErrorSerializer(allow_null=True))
    def get_error(self, obj: Dataset) -> dict[str, Any] | None:
        return obj.error


class ListQuerySerializer(serializers.Serializer):
    search = serializers.CharField(
        required=False, default="", allow_blank=True, max_length=255, trim_whitespace=True
    )
    status = serializers.ChoiceField(
        choices=DatasetStatus.choices, required=False, default="", allow_blank=True
    )


class RowsQuerySerializer(serializers.Serializer):
    after = serializers.IntegerField(required=False, default=0, min_value=0)
    limit = serializers.IntegerField(
        required=False, default=ROWS_DEFAULT_LIMIT, min_value=1, max_value=ROWS_MAX_LIMIT
    )


class RowSerializer(serializers.Serializer):
    row = serializers.IntegerField()
    values = serializers.ListField(child=serializers.CharField())


def row_page_data(
    columns: list[str],
    rows: list[tuple[int, list[str]]],
    has_more: bool,
    limit: int,
    absolute_uri: Callable[[str], str],
    path: str,
) -> dict[str, Any]:
    """A page of rows as the API answers it (``RowPageSerializer``'s shape); ``next``
    is ``absolute_uri`` of the next page's path when there is one."""
    next_url = None
    if has_more:
        next_url = absolute_uri(f"{path}?{urlencode({'after': rows[-1][0], 'limit': limit})}")
    return {
        "columns": columns,
        "results": [{"row": n, "values": values} for n, values in rows],
        "next": next_url,
    }


class RowPageSerializer(serializers.Serializer):
    columns = serializers.ListField(child=serializers.CharField())
    results = RowSerializer(many=True)
    next = serializers.URLField(allow_null=True)


class ColumnProfileSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.ChoiceField(
        choices=["integer", "number", "boolean", "date", "datetime", "text"]
    )
    count = serializers.IntegerField(help_text="Values that are not null.")
    nulls = serializers.IntegerField()
    min = serializers.JSONField(allow_null=True, help_text="Numbers and dates only.")
    max = serializers.JSONField(allow_null=True, help_text="Numbers and dates only.")
    distinct = serializers.IntegerField()
    distinct_exact = serializers.BooleanField(help_text="False: a HyperLogLog estimate.")
    examples = serializers.ListField(child=serializers.CharField())


class ProfileSerializer(serializers.Serializer):
    row_count = serializers.IntegerField()
    columns = ColumnProfileSerializer(many=True)
