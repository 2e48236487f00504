"""Cursor pages whose `page_size` is checked: a value that is not a whole number from 1 to the
maximum is a 400 problem naming the parameter, not silently the default size (I10)."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

from api.pagination import ApiCursorPagination


class StrictCursorPagination(ApiCursorPagination):
    """The API's cursor pages, refusing a page size it cannot read."""

    def get_page_size(self, request: Request) -> int:
        given = request.query_params.getlist(self.page_size_query_param)
        if not given:
            return self.page_size
        text = given[-1]
        if len(given) > 1 or not text.isascii() or not text.isdigit():
            raise ValidationError(
                {self.page_size_query_param: [f"Give one whole number, 1 to {self.max_page_size}."]}
            )
        size = int(text)
        if not 1 <= size <= self.max_page_size:
            raise ValidationError(
                {self.page_size_query_param: [f"A page holds 1 to {self.max_page_size} rows."]}
            )
        return size

    def get_schema_operation_parameters(self, view: Any) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_page_size)
        return parameters
