"""The unit's reports page (included under /units/<slug>/reports/); a campaign's own report
lives with the campaign (campaigns.urls)."""

from django.urls import path

from campaigns import report_views

urlpatterns = [
    path("", report_views.unit_reports, name="reports"),
]
