"""The signed-in staff member's role, for showing only the links and buttons they may use."""

from __future__ import annotations

from django import template

from partners.access import Role, role_of

register = template.Library()


@register.simple_tag(takes_context=True)
def staff_role(context: template.Context) -> int:
    """The role as a number (0 none, 1 viewer, 2 operator, 3 admin); the permission cache makes it free
    after the view's own check."""
    request = context.get("request")
    role = getattr(request, "staff_role", None)
    if role is None and request is not None:
        role = role_of(request.user)
    return int(role or Role.NONE)
