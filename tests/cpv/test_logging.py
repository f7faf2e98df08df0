"""The redaction filter masks token shapes in real log records, exception text included."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from cpv.logs import MASK, JsonFormatter, RedactingFilter, TextFormatter, redact, redact_value

JWT = (
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL2FwaS5wYXJ0bmVyY2VudGVyIiwidGlkIjoiMSJ9."
    "c2lnbmF0dXJlLXBhcnQtdGhhdC1pcy1sb25nLWVub3VnaA"
)
REFRESH = "0.AXoAq8Lk3Zr7TUaS1x9eYpQmC4hGv2Wj0BnFt6Ku5Ds8Ey1Ri7Ow3Pc9Lz2Ma4Nb6Vh0Jg8Sf5Td7Xe1Yq3Ur5Io7Pa9"
CODE = "0.ARwAmF9kQz2Lr8Tx5Wc1Vb7Yn3Hp6Jd4Ks0Ga9Eu2Oi5Zw"
SECRET = "Qx8~wH2.pZr5-Vt9_Kc3nM7yB1fL6dG4"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("tests.redaction")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


@pytest.mark.parametrize(
    "message",
    [
        f"calling Partner Center with {JWT}",
        f"Authorization: Bearer {JWT}",
        f"redeemed refresh_token={REFRESH} for partner 42",
        f'token response {{"access_token": "{JWT}", "refresh_token": "{REFRESH}"}}',
        f"callback POST code={CODE}&state=abc",
        f"client_secret={SECRET}",
        f"the secret: {SECRET}",
        f"an unlabelled token {REFRESH} in passing",
    ],
)
def test_it_masks_token_shapes_in_a_real_record(captured, message: str) -> None:  # type: ignore[no-untyped-def]
    logger, stream = captured

    logger.info("%s", message)

    out = stream.getvalue()
    assert MASK in out
    for secret in (JWT, REFRESH, CODE, SECRET):
        assert secret not in out


def test_it_masks_secrets_in_exception_text(captured) -> None:  # type: ignore[no-untyped-def]
    logger, stream = captured

    try:
        raise RuntimeError(f"token endpoint said no to refresh_token={REFRESH} and {JWT}")
    except RuntimeError:
        logger.exception("renewal failed")

    out = stream.getvalue()
    assert "renewal failed" in out
    assert "RuntimeError" in out
    assert REFRESH not in out
    assert JWT not in out


def test_it_masks_secrets_in_extra_fields_of_a_json_line() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("tests.redaction.json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("partner %s failed", "contoso", extra={"refresh_token": REFRESH, "detail": f"code={CODE}"})
    finally:
        logger.removeHandler(handler)

    line = json.loads(stream.getvalue())
    assert line["message"] == "partner contoso failed"
    assert line["refresh_token"] == MASK
    assert CODE not in line["detail"]


def test_it_leaves_ordinary_text_alone() -> None:
    text = (
        "partner 6f1c2a7e-98d3-4c5b-a1e2-3f4d5c6b7a89 synced 2500 customers from "
        "api.partnercenter.microsoft.com in consent.services.partner_customers_sync; "
        "fingerprint 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    )

    assert redact(text) == text


def test_it_scrubs_json_details_by_key_and_by_shape() -> None:
    detail = {"code": "short", "status": "active", "nested": [{"client_secret": "x"}, f"Bearer {JWT}"]}

    assert redact_value(detail) == {
        "code": MASK,
        "status": "active",
        "nested": [{"client_secret": MASK}, f"Bearer {MASK}"],
    }


def test_every_configured_handler_carries_the_filter() -> None:
    from django.conf import settings

    for name, handler in settings.LOGGING["handlers"].items():
        assert "redact" in handler["filters"], name
    for handler in logging.getLogger().handlers:
        if type(handler).__module__.startswith("_pytest"):
            continue  # pytest's own capture handlers
        assert any(isinstance(f, RedactingFilter) for f in handler.filters), handler


def test_a_text_line_cannot_be_forged_through_a_message() -> None:
    formatter = TextFormatter()
    record = logging.LogRecord(
        "cpv", logging.INFO, __file__, 1, "partner %s", ("Evil\r\n2026-01-01 ERROR x forged",), None
    )

    line = formatter.format(record)

    assert "\n" not in line and "\r" not in line
    assert line.endswith("partner Evil\\r\\n2026-01-01 ERROR x forged")


def test_a_traceback_follows_its_line_indented() -> None:
    formatter = TextFormatter()
    try:
        raise ValueError("bad\n2026-01-01 ERROR forged")
    except ValueError:
        record = logging.LogRecord("cpv", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())

    first, *rest = formatter.format(record).split("\n")

    assert first.endswith("failed") and rest
    assert all(line.startswith("    ") for line in rest)
