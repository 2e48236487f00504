"""URLs under /api/: the schema and its docs, and version 1 of the API.

Add a viewset to `router` (or a path to `v1_patterns`); the isolation walk and Schemathesis
cover every route found here.
"""

from csp.constants import UNSAFE_INLINE
from csp.decorators import csp_update
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import SimpleRouter

from api import (
    campaign_views,
    consent_views,
    import_views,
    list_views,
    recipient_views,
    suppression_views,
    views,
)

router = SimpleRouter()
router.register("recipients", recipient_views.RecipientViewSet, basename="api_recipient")
router.register("lists", list_views.ListViewSet, basename="api_list")
router.register("suppressions", suppression_views.SuppressionViewSet, basename="api_suppression")
router.register("campaigns", campaign_views.CampaignViewSet, basename="api_campaign")
router.register("imports", import_views.ImportViewSet, basename="api_import")

v1_patterns = [
    path("key/", views.CurrentKeyView.as_view(), name="api_key_current"),
    path("consent/", consent_views.ConsentView.as_view(), name="api_consent"),
    path("", include(router.urls)),
]

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api_schema"),
    # Swagger UI (served from our static files) adds <style> elements as it renders: inline
    # styles are allowed on this page only; scripts stay 'self'.
    path(
        "docs/",
        csp_update({"style-src": [UNSAFE_INLINE]})(
            SpectacularSwaggerSplitView.as_view(url_name="api_schema")
        ),
        name="api_docs",
    ),
    path("v1/", include(v1_patterns)),
    re_path(r"^.*$", views.NotFoundView.as_view()),
]
