"""Which key role each API view needs: one permission class, roles named on the view."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rest_framework.permissions import SAFE_METHODS, BasePermission

from api.models import ApiKey, ApiRole

if TYPE_CHECKING:  # REST framework imports these classes from settings: no cycle
    from rest_framework.request import Request
    from rest_framework.views import APIView


def roles_needed(view: APIView, method: str) -> tuple[ApiRole, ...]:
    """The roles of which a key needs one: the view's `action_roles[action]`, else
    `read_roles` for safe methods and `write_roles` for the others."""
    action = getattr(view, "action", None)
    per_action = getattr(view, "action_roles", {})
    if action in per_action:
        return tuple(per_action[action])
    if method in SAFE_METHODS:
        return tuple(getattr(view, "read_roles", (ApiRole.VIEWER,)))
    return tuple(getattr(view, "write_roles", (ApiRole.EDITOR,)))


class KeyRole(BasePermission):
    """A key whose role allows one of the view's roles (no key: 401, too weak a role: 403)."""

    message = "This API key's role does not allow this request."

    def has_permission(self, request: Request, view: APIView) -> bool:
        key = request.auth
        if not isinstance(key, ApiKey):
            return False
        needed = roles_needed(view, request.method)
        if any(key.api_role.allows(role) for role in needed):
            return True
        names = " or ".join(str(role.value) for role in needed)
        self.message = f"This needs a key with the role {names}; this key is {key.role}."
        return False
