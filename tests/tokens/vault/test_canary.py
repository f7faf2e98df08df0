"""A canary secret written through either backend shows up in no log record, exception or database column."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection

from tokens.vault import Vault, secret_name_for, secret_tags
from tokens.vault.models import VaultSecretVersion

pytestmark = pytest.mark.django_db

# Lower-case hex and hyphens: the logging redaction filter leaves this shape alone, so the test proves the
# first line of defence (never passing the value) rather than the last one (masking token-shaped text).
CANARY = f"vault-canary-{uuid.uuid4().hex}"


def exception_texts(exc: BaseException) -> Iterator[str]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield str(current)
        yield repr(current)
        yield from (str(arg) for arg in current.args)
        current = current.__cause__ or current.__context__


def database_values() -> Iterator[tuple[str, str, Any]]:
    """Every value of every column of every table."""
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            columns = [c.name for c in connection.introspection.get_table_description(cursor, table)]
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608 - introspected names
            for row in cursor.fetchall():
                yield from ((table, column, value) for column, value in zip(columns, row, strict=True))


def contains_canary(value: Any) -> bool:
    if isinstance(value, memoryview | bytes | bytearray):
        return CANARY.encode() in bytes(value)
    return value is not None and CANARY in str(value)


def test_the_canary_leaks_nowhere(
    vault: Vault, backend: str, caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest
) -> None:
    for logger_name in (None, "azure", "consent", "urllib3", "django"):
        caplog.set_level(logging.DEBUG, logger=logger_name)
    errors: list[BaseException] = []

    def attempt(action: Callable[[], object]) -> None:
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - every error is collected and its text searched
            errors.append(exc)

    code = uuid.uuid4()
    name = secret_name_for(code)
    tags = secret_tags(partner_code=code, cloud="global", consent_flow_id=uuid.uuid4())
    first = vault.write(name=name, value=CANARY, tags=tags)
    vault.read(name=name)
    vault.read(name=name, version=first.version)
    vault.versions(name=name)
    vault.write(name=name, value=CANARY + "-2", tags=tags)
    vault.disable(name=name, version=first.version)
    attempt(lambda: vault.read(name=name, version=first.version))  # disabled
    vault.delete(name=name)
    attempt(lambda: vault.read(name=name))  # deleted
    vault.write(name=name, value=CANARY + "-3", tags=tags)  # recovers the deleted name first
    attempt(lambda: vault.write(name="not_a_valid_name", value=CANARY))
    attempt(lambda: vault.write(name=name, value=CANARY * 1000))  # too large
    attempt(lambda: vault.write(name=name, value=CANARY, tags={"t": CANARY * 10}))  # tag too long
    if backend == "azure":
        sim = request.getfixturevalue("sim")
        sim.control.inject_fault("vault", method="PUT", status=503, times=None)
        attempt(lambda: vault.write(name=name, value=CANARY + "-503"))
        sim.control.clear_faults()
        sim.control.inject_fault(
            "vault", method="PUT", status=403, body={"error": {"code": "Forbidden", "message": "denied"}}
        )
        attempt(lambda: vault.write(name=name, value=CANARY + "-403"))
        sim.control.inject_fault("vault", method="PUT", status=400, body="plain text error")
        attempt(lambda: vault.write(name=name, value=CANARY + "-400"))
    else:
        row = VaultSecretVersion.objects.filter(name=name).order_by("-id").first()
        assert row is not None
        VaultSecretVersion.objects.filter(pk=row.pk).update(ciphertext=b"\x00" + bytes(row.ciphertext)[1:])
        attempt(lambda: vault.read(name=name))  # integrity error
    assert vault.read(name=name, version=vault.versions(name=name)[1].version).value.reveal() == CANARY + "-2"

    assert len(errors) >= 6
    assert not [text for exc in errors for text in exception_texts(exc) if CANARY in text]
    assert caplog.records, "the test must have captured the vault's own log lines"
    assert CANARY not in caplog.text
    for record in caplog.records:
        assert CANARY not in record.getMessage()
        assert CANARY not in repr(record.__dict__)
    assert not [(table, column) for table, column, value in database_values() if contains_canary(value)]
