"""The audit log is append-only, enforced by the database itself."""

from __future__ import annotations

from django.db import migrations

POSTGRES_UP = """
CREATE OR REPLACE FUNCTION partners_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'partners_auditevent is append-only: % is not allowed', TG_OP;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER partners_auditevent_no_update BEFORE UPDATE ON partners_auditevent
    FOR EACH ROW EXECUTE FUNCTION partners_auditevent_append_only();
CREATE TRIGGER partners_auditevent_no_delete BEFORE DELETE ON partners_auditevent
    FOR EACH ROW EXECUTE FUNCTION partners_auditevent_append_only();
"""
POSTGRES_DOWN = """
DROP TRIGGER IF EXISTS partners_auditevent_no_update ON partners_auditevent;
DROP TRIGGER IF EXISTS partners_auditevent_no_delete ON partners_auditevent;
DROP FUNCTION IF EXISTS partners_auditevent_append_only();
"""
# SQLite empties tables with DELETE when a test database is flushed, so only updates are refused there.
SQLITE_UP = """
CREATE TRIGGER partners_auditevent_no_update BEFORE UPDATE ON partners_auditevent
BEGIN SELECT RAISE(ABORT, 'partners_auditevent is append-only: UPDATE is not allowed'); END;
"""
SQLITE_DOWN = "DROP TRIGGER IF EXISTS partners_auditevent_no_update;"


def _run(sql_by_vendor: dict[str, str]):
    def run(apps, schema_editor):
        sql = sql_by_vendor.get(schema_editor.connection.vendor)
        if sql:
            schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [("partners", "0001_initial")]

    operations = [
        migrations.RunPython(
            _run({"postgresql": POSTGRES_UP, "sqlite": SQLITE_UP}),
            _run({"postgresql": POSTGRES_DOWN, "sqlite": SQLITE_DOWN}),
        ),
    ]
