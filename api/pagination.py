"""Cursor pagination, the default of every API list: stable under concurrent writes."""

from rest_framework.pagination import CursorPagination


class ApiCursorPagination(CursorPagination):
    """Newest first; `?page_size=` up to 1,000."""

    ordering = "-created_at"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000
