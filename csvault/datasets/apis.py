"""Dataset endpoints: thin views over services and selectors."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.parsers import MultiPartParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from csvault.audit.models import AuditAction
from csvault.audit.services import audit_record
from csvault.core.errors import UploadRejected
from csvault.core.schema import header, response_header
from csvault.datasets.events import progress_events
from csvault.datasets.export import (
    dataset_export,
    export_response,
    parse_export_format,
    parse_formula_safe,
)
from csvault.datasets.models import Dataset
from csvault.datasets.quotas import quota_check
from csvault.datasets.selectors import (
    dataset_by_idempotency_key,
    dataset_detail,
    dataset_get,
    dataset_list,
    dataset_list_page,
    dataset_profile_get,
    dataset_progress,
    dataset_row_page,
)
from csvault.datasets.serializers import (
    DatasetSerializer,
    DatasetUploadSerializer,
    ListQuerySerializer,
    ProfileSerializer,
    ProgressSerializer,
    RowPageSerializer,
    RowsQuerySerializer,
    row_page_data,
)
from csvault.datasets.services import (
    IdempotentReplay,
    dataset_cancel,
    dataset_create,
    dataset_delete,
)


class DatasetListCreateApi(GenericAPIView[Dataset]):
    parser_classes = [MultiPartParser]
    serializer_class = DatasetSerializer
    throttle_upload = True

    def get_queryset(self) -> Any:
        return dataset_list(owner=self.request.user)  # type: ignore[arg-type]

    @extend_schema(parameters=[ListQuerySerializer], responses=DatasetSerializer(many=True))
    def get(self, request: Request) -> Response:
        filters = ListQuerySerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)

        def paginate(
            datasets: QuerySet[Dataset], item: Callable[[Dataset], dict[str, Any]]
        ) -> dict[str, Any]:
            page = self.paginate_queryset(datasets) or []
            return dict(self.get_paginated_response([item(d) for d in page]).data)

        return Response(
            dataset_list_page(
                owner=request.user,  # type: ignore[arg-type]
                cursor=request.query_params.get("cursor", ""),
                # Normalised (the paginator's own reading: 0200 is 200, junk the default),
                # so spellings of one size share one cache entry.
                page_size=self.paginator.get_page_size(request),  # type: ignore[union-attr]
                paginate=paginate,
                **filters.validated_data,
            )
        )

    @extend_schema(
        request=DatasetUploadSerializer,
        parameters=[
            header(
                "Idempotency-Key",
                "Optional; 1 to 255 visible ASCII characters, else 400 `invalid_idempotency_key`. "
                "A key this user already used answers 200 with that upload's dataset, without "
                "storing this body; two requests racing with one key store one dataset.",
                pattern="^[!-~]{1,255}$",
            ),
            response_header("Idempotent-Replayed", "A replayed answer.", enum=["true"], on=[200]),
        ],
        responses={
            201: DatasetSerializer,
            200: OpenApiResponse(DatasetSerializer, description="The earlier upload's dataset."),
        },
    )
    def post(self, request: Request) -> Response:
        if not request.META.get("CONTENT_LENGTH"):
            # Django reads no body without a Content-Length (chunked or close-delimited);
            # say so instead of a puzzling "no file was submitted".
            raise UploadRejected(
                "Send the upload with a Content-Length header; chunked bodies are not read.",
                code="length_required",
                status_code=411,
            )
        owner = request.user
        key = _idempotency_key(request)
        if key:
            # A retried upload: answer with the first one, without reading this body.
            earlier = dataset_by_idempotency_key(owner=owner, key=key)  # type: ignore[arg-type]
            if earlier is not None:
                return _replayed(earlier)
        # Before the body is read: refuse at once what the quota cannot take.
        quota_check(owner=owner, incoming_bytes=_declared_length(request))  # type: ignore[arg-type]
        serializer = DatasetUploadSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            dataset = dataset_create(
                owner=owner,  # type: ignore[arg-type]
                upload=data["file"],
                name=data["name"],
                has_header=data["has_header"],
                delimiter=data["delimiter"],
                encoding=data["encoding"],
                idempotency_key=key,
            )
        except IdempotentReplay as replay:
            return _replayed(replay.dataset)
        audit_record(AuditAction.UPLOAD, request=request, dataset_id=dataset.id, size=dataset.size)
        return Response(DatasetSerializer(dataset).data, status=status.HTTP_201_CREATED)


def _idempotency_key(request: Request) -> str:
    key = request.headers.get("Idempotency-Key", "").strip()
    if len(key) > 255 or not all(32 < ord(ch) < 127 for ch in key):
        raise UploadRejected(
            "The Idempotency-Key header must be 1 to 255 visible ASCII characters.",
            code="invalid_idempotency_key",
        )
    return key


def _replayed(dataset: Dataset) -> Response:
    response = Response(DatasetSerializer(dataset).data, status=status.HTTP_200_OK)
    response["Idempotent-Replayed"] = "true"
    return response


def _declared_length(request: Request) -> int:
    try:
        return max(int(request.META.get("CONTENT_LENGTH") or 0), 0)
    except ValueError:
        return 0


class DatasetDetailApi(APIView):
    @extend_schema(responses=DatasetSerializer)
    def get(self, request: Request, dataset_id: uuid.UUID) -> Response:
        return Response(dataset_detail(owner=request.user, dataset_id=dataset_id))  # type: ignore[arg-type]

    @extend_schema(responses={204: None})
    def delete(self, request: Request, dataset_id: str) -> Response:
        dataset = dataset_get(owner=request.user, dataset_id=dataset_id)  # type: ignore[arg-type]
        dataset_delete(dataset=dataset)
        audit_record(AuditAction.DELETE, request=request, dataset_id=dataset.id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class DatasetProgressApi(APIView):
    @extend_schema(responses=ProgressSerializer)
    def get(self, request: Request, dataset_id: uuid.UUID) -> Response:
        return Response(dataset_progress(owner=request.user, dataset_id=dataset_id))  # type: ignore[arg-type]


class StreamingApi(APIView):
    """A view whose success is a StreamingHttpResponse and whose errors are JSON.

    Content negotiation would only get in the way: an ``Accept: text/event-stream``
    (or ``text/csv``) would be a 406, and the export's ``?format=`` would be read
    (URL_FORMAT_OVERRIDE) as a renderer name and answered with a 404. Errors are
    JSON whatever the client asks.
    """

    def perform_content_negotiation(
        self, request: Request, force: bool = False
    ) -> tuple[BaseRenderer, str]:
        renderer = JSONRenderer()
        return renderer, renderer.media_type


class DatasetEventsApi(StreamingApi):
    """``GET``: Server-Sent Events of the progress until the dataset is final.

    One ``progress`` event (the progress object as JSON) each time it changes,
    read from the cache like the polling endpoint; ``end`` with the final
    progress when the dataset is final. A stream lasts at most
    ``CSVAULT_SSE_MAX_SECONDS``; ``EventSource`` reconnects by itself (``retry``).
    """

    renderer_classes = [JSONRenderer]  # for errors; the stream is a StreamingHttpResponse

    @extend_schema(
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                OpenApiTypes.STR, description="event: progress / event: end, data: progress JSON"
            )
        }
    )
    def get(self, request: Request, dataset_id: uuid.UUID) -> StreamingHttpResponse:
        owner = request.user
        dataset_progress(owner=owner, dataset_id=dataset_id)  # type: ignore[arg-type]  # 404s now
        response = StreamingHttpResponse(
            progress_events(owner=owner, dataset_id=dataset_id),  # type: ignore[arg-type]
            content_type="text/event-stream",
        )
        response["Cache-Control"] = "no-store"
        response["X-Accel-Buffering"] = "no"  # nginx: pass events through at once
        return response


class DatasetCancelApi(APIView):
    @extend_schema(request=None, responses=DatasetSerializer)
    def post(self, request: Request, dataset_id: str) -> Response:
        dataset = dataset_get(owner=request.user, dataset_id=dataset_id)  # type: ignore[arg-type]
        dataset = dataset_cancel(dataset=dataset)
        audit_record(AuditAction.CANCEL, request=request, dataset_id=dataset.id)
        return Response(DatasetSerializer(dataset).data)


class DatasetProfileApi(APIView):
    @extend_schema(
        responses=ProfileSerializer,
        description="Per column: inferred type, null count, min/max, distinct count and "
        "examples, computed during the ingest (docs/api.md says the exact rules). "
        "409 until the dataset is completed.",
    )
    def get(self, request: Request, dataset_id: uuid.UUID) -> Response:
        return Response(dataset_profile_get(owner=request.user, dataset_id=dataset_id))  # type: ignore[arg-type]


class DatasetRowsApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("after", int, description="Return rows numbered after this one."),
            OpenApiParameter("limit", int, description="Rows per page (at most 1000)."),
        ],
        responses=RowPageSerializer,
    )
    def get(self, request: Request, dataset_id: str) -> Response:
        query = RowsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        after, limit = query.validated_data["after"], query.validated_data["limit"]
        page = dataset_row_page(
            owner=request.user,  # type: ignore[arg-type]
            dataset_id=dataset_id,  # type: ignore[arg-type]
            after=after,
            limit=limit,
        )
        return Response(
            row_page_data(
                page.columns,
                page.rows,
                page.has_more,
                limit,
                request.build_absolute_uri,
                request.path,
            )
        )


class DatasetExportApi(StreamingApi):
    """``GET ?format=csv|jsonl``: the whole dataset as a streamed download.

    400 for another format, 404 for an absent or another user's dataset, 409
    until it is completed; see ``csvault.datasets.export`` for the formats.
    """

    renderer_classes = [JSONRenderer]  # for errors; the export is a StreamingHttpResponse

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "format", str, enum=["csv", "jsonl"], description="csv (default) or jsonl."
            ),
            OpenApiParameter(
                "formula_safe",
                str,
                description="CSV: 1 or true (default) prefix with ' the cells a spreadsheet "
                "would run as a formula; 0 or false export every cell exactly (for programs).",
            ),
        ],
        responses={
            (200, media_type): OpenApiResponse(
                OpenApiTypes.STR,
                description="The dataset as an attachment: RFC 4180 CSV with a header row, "
                'or JSON Lines {"row": n, "data": {column: value, ...}}.',
            )
            for media_type in ("text/csv", "application/x-ndjson")
        },
    )
    def get(self, request: Request, dataset_id: str) -> StreamingHttpResponse:
        return self._export(request, dataset_id, with_body=True)

    @extend_schema(
        parameters=[OpenApiParameter("format", str), OpenApiParameter("formula_safe", str)],
        responses={200: OpenApiResponse(description="GET's status and headers, no row read.")},
    )
    def head(self, request: Request, dataset_id: str) -> StreamingHttpResponse:
        """GET's status and headers without reading a row (servers iterate HEAD bodies too)."""
        return self._export(request, dataset_id, with_body=False)

    def _export(
        self, request: Request, dataset_id: str, *, with_body: bool
    ) -> StreamingHttpResponse:
        export_format = parse_export_format(request.query_params.get("format"))
        formula_safe = parse_formula_safe(request.query_params.get("formula_safe"))
        dataset = dataset_get(owner=request.user, dataset_id=dataset_id)  # type: ignore[arg-type]
        export = dataset_export(
            dataset=dataset, export_format=export_format, formula_safe=formula_safe
        )
        if with_body:
            # formula_safe is recorded when formulas were let through.
            detail: dict[str, Any] = {} if formula_safe else {"formula_safe": False}
            audit_record(
                AuditAction.EXPORT,
                request=request,
                dataset_id=dataset.id,
                format=export_format.value,
                **detail,
            )
        return export_response(export, with_body=with_body)
