"""The staff roles (viewer, operator, admin) as groups holding the dashboard's permissions.

Kept in the project package so that it never races the partners and consent apps' own migrations. The same
definition (partners/access.py) is applied at run time by `partners.services.staff_roles_sync`.
"""

from __future__ import annotations

from django.db import migrations

# A copy of partners/access.py at the time of writing: migrations must not import code that may change.
PERMISSIONS = {
    "dashboard_view": ("Can see the staff dashboard", 1),
    "dashboard_operate": ("Can run actions on partners from the dashboard", 2),
    "dashboard_admin": ("Can manage staff accounts and see the settings", 3),
}
GROUPS = {"viewer": 1, "operator": 2, "admin": 3}


def create_roles(apps, schema_editor):  # type: ignore[no-untyped-def]
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    # The content type of partners.Partner: created here if the partners app has not been migrated yet
    # (post_migrate later finds it and leaves it be).
    content_type, _ = ContentType.objects.get_or_create(app_label="partners", model="partner")
    permissions = {}
    for codename, (name, _) in PERMISSIONS.items():
        permissions[codename], _ = Permission.objects.get_or_create(
            content_type=content_type, codename=codename, defaults={"name": name}
        )
    for group_name, level in GROUPS.items():
        group, _ = Group.objects.get_or_create(name=group_name)
        group.permissions.add(*(p for c, p in permissions.items() if PERMISSIONS[c][1] <= level))


def remove_roles(apps, schema_editor):  # type: ignore[no-untyped-def]
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    Group.objects.filter(name__in=list(GROUPS)).delete()
    Permission.objects.filter(content_type__app_label="partners", codename__in=list(PERMISSIONS)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
