from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from core import access_views, views
from deployments import urls as deployment_urls
from deployments import views as deployment_views
from downloads import views as download_views
from system import views as system_views

urlpatterns = [
    path("health", system_views.ServiceHealthView.as_view(), name="health"),
    path("api/health", system_views.ApiHealthView.as_view(), name="api-health"),
    path("api/system/resources", system_views.ResourcesView.as_view(), name="system-resources"),
    path("api/system/load", system_views.LoadView.as_view(), name="system-load"),
    path("api/system/health", system_views.SystemHealthView.as_view(), name="system-health"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api/models/stats", system_views.StatsView.as_view(), name="catalog-stats"),
    path("api/models/import", download_views.ImportView.as_view(), name="models-import"),
    path("api/models/", include("catalog.urls")),
    path("api/downloads/", include("downloads.urls")),
    path("api/deployments/", include("deployments.urls")),
    path("api/nodes", include(deployment_urls.node_urlpatterns)),
    path("api/engines", deployment_views.EnginesView.as_view(), name="engines"),
    path("api/metrics/targets", system_views.MetricsTargetsView.as_view(), name="metrics-targets"),
    path("api/keys", access_views.KeysView.as_view(), name="keys"),
    path("api/keys/<str:key>", access_views.KeyView.as_view(), name="key"),
    path("api/audit", access_views.AuditView.as_view(), name="audit"),
    path("metrics", system_views.MetricsView.as_view(), name="metrics"),
    path("", include("inference.urls")),
    path("admin/", admin.site.urls),
    # Anything else under /api/ answers in the envelope, whatever DEBUG says.
    re_path(r"^(?:api|v1)/", views.api_not_found),
]

handler404 = views.page_not_found
handler500 = views.server_error
