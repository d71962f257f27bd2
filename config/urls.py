from django.contrib import admin
from django.contrib.auth.views import LogoutView
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from csvault.core.apis import LoginApi, LogoutApi
from csvault.core.health import healthz, readyz
from csvault.core.metrics import metrics_view
from csvault.datasets import apis, tus
from csvault.web import views as web_views

urlpatterns = [
    path("", web_views.home, name="web-home"),
    path("login/", web_views.LoginView.as_view(), name="web-login"),
    path("logout/", LogoutView.as_view(), name="web-logout"),
    path("datasets/<uuid:dataset_id>/", web_views.dataset_page, name="web-dataset"),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    # Before the admin's own URLs: its login shares the login throttle.
    path("admin/login/", web_views.admin_login, name="admin-login"),
    path("admin/", admin.site.urls),
    path("api/auth/token/", LoginApi.as_view(), name="api-token"),
    path("api/auth/logout/", LogoutApi.as_view(), name="api-logout"),
    path("api/datasets/", apis.DatasetListCreateApi.as_view(), name="dataset-list"),
    path("api/uploads/", tus.TusUploadsApi.as_view(), name="tus-uploads"),
    path("api/uploads/<uuid:dataset_id>", tus.TusUploadApi.as_view(), name="tus-upload"),
    path("api/datasets/<uuid:dataset_id>/", apis.DatasetDetailApi.as_view(), name="dataset-detail"),
    path(
        "api/datasets/<uuid:dataset_id>/progress/",
        apis.DatasetProgressApi.as_view(),
        name="dataset-progress",
    ),
    path(
        "api/datasets/<uuid:dataset_id>/rows/", apis.DatasetRowsApi.as_view(), name="dataset-rows"
    ),
    path(
        "api/datasets/<uuid:dataset_id>/profile/",
        apis.DatasetProfileApi.as_view(),
        name="dataset-profile",
    ),
    path(
        "api/datasets/<uuid:dataset_id>/events/",
        apis.DatasetEventsApi.as_view(),
        name="dataset-events",
    ),
    path(
        "api/datasets/<uuid:dataset_id>/cancel/",
        apis.DatasetCancelApi.as_view(),
        name="dataset-cancel",
    ),
    path(
        "api/datasets/<uuid:dataset_id>/export/",
        apis.DatasetExportApi.as_view(),
        name="dataset-export",
    ),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # Swagger UI with its init script fetched from ?script, not inline: it runs under the
    # Content-Security-Policy's script-src 'self' (config/settings.py).
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
]

handler400 = "csvault.core.exceptions.json_400"
handler404 = "csvault.core.exceptions.json_404"
handler500 = "csvault.core.exceptions.json_500"
