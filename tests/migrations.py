"""Moving the test database between migrations, for the tests of migrations that move or backfill rows."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection
from django.db.migrations.executor import MigrationExecutor


def migrate(targets: list[tuple[str, str | None]]) -> Any:
    """Migrate to `targets` (app, migration name, or None for none of the app's): the apps' models as they were."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state([node for node in targets if node[1] is not None]).apps


def latest() -> list[tuple[str, str]]:
    return list(MigrationExecutor(connection).loader.graph.leaf_nodes())


@contextmanager
def migrated_to(targets: list[tuple[str, str | None]]) -> Iterator[Any]:
    """Inside, the database as at `targets` (the apps' models given); after, at the latest migrations again."""
    try:
        yield migrate(targets)
    finally:
        migrate(latest())
