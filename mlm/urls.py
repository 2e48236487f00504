"""URL configuration: the shell, the unit pages under /units/<slug>/, admin and health."""

from django.contrib import admin
from django.urls import include, path

from campaigns.webhooks import anymail_urlpatterns
from mlm import views
from mlm.sso import views as sso_views
from mlm.two_factor import two_factor

unit_patterns = [
    path("", views.dashboard, name="dashboard"),
    path("audit/", views.audit_list, name="audit"),
    path("audit/export.csv", views.audit_export, name="audit_export"),
    path("reports/", include("campaigns.report_urls")),
    path("outbox/", views.outbox_list, name="outbox"),
    path("outbox/test/", views.outbox_send_test, name="outbox_send_test"),
    path("outbox/<uuid:message_code>/", views.outbox_detail, name="outbox_detail"),
    path("outbox/<uuid:message_code>/html/", views.outbox_html, name="outbox_html"),
    path("", include("recipients.urls")),
    path("", include("recipients.import_urls")),
    path("", include("recipients.segment_urls")),
    path("", include("consent.unit_urls")),
    path("campaigns/", include("campaigns.urls")),
    path("", include("api.key_urls")),
    path("endpoints/", include("outbound.urls")),
]

urlpatterns = [
    path("", views.home, name="home"),
    path("health/", views.health, name="health"),
    path("accounts/login/", sso_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", sso_views.logout, name="logout"),
    path("sso/", include("mlm.sso.urls")),
    path("accounts/two-factor/", two_factor, name="two_factor"),
    path("admin/", admin.site.urls),
    # Tracking webhooks of the mail providers: anymail's views, events recorded per request.
    path("webhooks/anymail/", include((anymail_urlpatterns(), "anymail"))),
    path("api/", include("api.urls")),
    path("units/<slug:unit_slug>/", include(unit_patterns)),
    path("", include("consent.public_urls")),
    path("", include("campaigns.public_urls")),
]
