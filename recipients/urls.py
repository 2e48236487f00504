"""Recipient and list pages of a unit (included under /units/<slug>/)."""

from django.urls import path

from recipients import views

urlpatterns = [
    path("lists/", views.list_list, name="lists"),
    path("lists/new/", views.list_create, name="list_create"),
    path("lists/<uuid:list_code>/", views.list_detail, name="list_detail"),
    path("lists/<uuid:list_code>/add/", views.list_add_recipient, name="list_add_recipient"),
    path(
        "lists/<uuid:list_code>/members/<uuid:recipient_code>/remove/",
        views.list_remove_member,
        name="list_remove_member",
    ),
    path("recipients/", views.recipient_list, name="recipients"),
    path("recipients/<uuid:recipient_code>/", views.recipient_detail, name="recipient_detail"),
    path("recipients/<uuid:recipient_code>/grant/", views.recipient_grant, name="recipient_grant"),
    path(
        "recipients/<uuid:recipient_code>/withdraw/",
        views.recipient_withdraw,
        name="recipient_withdraw",
    ),
    path(
        "recipients/<uuid:recipient_code>/export/", views.recipient_export, name="recipient_export"
    ),
    path("recipients/<uuid:recipient_code>/erase/", views.recipient_erase, name="recipient_erase"),
]
