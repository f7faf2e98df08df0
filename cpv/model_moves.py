"""Migration operations for a model that moves to another app and keeps its table: state-only operations and its
content type handed over; no row is copied or lost."""

from __future__ import annotations

from typing import Any

from django.db import migrations


def _content_type_mover(old_app: str, new_app: str, models: tuple[str, ...]) -> Any:
    def move(apps: Any, schema_editor: Any) -> None:
        content_type = apps.get_model("contenttypes", "ContentType")
        for model in models:
            if content_type.objects.filter(app_label=new_app, model=model).exists():
                continue
            content_type.objects.filter(app_label=old_app, model=model).update(app_label=new_app)

    def back(apps: Any, schema_editor: Any) -> None:
        content_type = apps.get_model("contenttypes", "ContentType")
        for model in models:
            if content_type.objects.filter(app_label=old_app, model=model).exists():
                continue
            content_type.objects.filter(app_label=new_app, model=model).update(app_label=old_app)

    return move, back


def adopt(*, old_app: str, new_app: str, operations: list[Any]) -> list[Any]:
    """For the new app: its operations on the state only, and the moved models' content types handed over."""
    models = tuple(op.name.lower() for op in operations if isinstance(op, migrations.CreateModel))
    move, back = _content_type_mover(old_app, new_app, models)
    return [
        migrations.SeparateDatabaseAndState(state_operations=operations, database_operations=[]),
        migrations.RunPython(move, back, elidable=False),
    ]


def release(operations: list[Any]) -> list[Any]:
    """For the old app: its DeleteModel (and FK AlterField) operations, applied to the state only."""
    return [migrations.SeparateDatabaseAndState(state_operations=operations, database_operations=[])]
