"""The database cache's table, when the configured cache is one (production without Redis).

Rate limits and sign-in lockouts count in the cache; without this table every public page would fail.
"""

from __future__ import annotations

from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps, schema_editor):  # type: ignore[no-untyped-def]
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [("cpv", "0001_staff_roles")]

    operations = [migrations.RunPython(create_cache_table, migrations.RunPython.noop)]
