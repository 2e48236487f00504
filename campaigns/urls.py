"""Campaign pages of a unit (included under /units/<slug>/campaigns/)."""

from django.urls import path

from campaigns import report_views, setup_views, views

urlpatterns = [
    path("", views.campaign_list, name="campaigns"),
    path("new/", views.campaign_create, name="campaign_create"),
    path("live-preview/", views.live_preview, name="campaign_live_preview"),
    path("live-preview/html/", views.live_preview_html, name="campaign_live_preview_html"),
    path("layouts/", setup_views.layout_list, name="layouts"),
    path("layouts/new/", setup_views.layout_create, name="layout_create"),
    path("layouts/<uuid:layout_code>/", setup_views.layout_edit, name="layout_edit"),
    path("settings/", setup_views.unit_settings, name="campaign_settings"),
    path("settings/from-addresses/new/", setup_views.identity_request, name="identity_request"),
    path("<uuid:campaign_code>/", views.campaign_detail, name="campaign_detail"),
    path("<uuid:campaign_code>/edit/", views.campaign_edit, name="campaign_edit"),
    path("<uuid:campaign_code>/submit/", views.campaign_submit, name="campaign_submit"),
    path("<uuid:campaign_code>/review/", views.campaign_review, name="campaign_review"),
    path("<uuid:campaign_code>/schedule/", views.campaign_schedule, name="campaign_schedule"),
    path("<uuid:campaign_code>/cancel/", views.campaign_cancel, name="campaign_cancel"),
    path(
        "<uuid:campaign_code>/acknowledge/",
        views.campaign_acknowledge,
        name="campaign_acknowledge",
    ),
    path("<uuid:campaign_code>/preview/", views.campaign_preview, name="campaign_preview"),
    path(
        "<uuid:campaign_code>/preview/html/",
        views.campaign_preview_html,
        name="campaign_preview_html",
    ),
    path("<uuid:campaign_code>/test/", views.campaign_test, name="campaign_test"),
    path("<uuid:campaign_code>/progress/", views.campaign_progress, name="campaign_progress"),
    path("<uuid:campaign_code>/report/", report_views.campaign_report, name="campaign_report"),
    path(
        "<uuid:campaign_code>/report.csv",
        report_views.campaign_report_csv,
        name="campaign_report_csv",
    ),
    path("<uuid:campaign_code>/pause/", views.campaign_pause, name="campaign_pause"),
    path("<uuid:campaign_code>/resume/", views.campaign_resume, name="campaign_resume"),
    path(
        "<uuid:campaign_code>/send-in-doubt/",
        views.campaign_send_in_doubt,
        name="campaign_send_in_doubt",
    ),
]
