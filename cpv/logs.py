"""Logging: a redaction filter on every handler (the last line of defence: never hand a token to a log call),
request ids, and text or JSON lines."""

from __future__ import annotations

import contextvars
import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

MASK = "[redacted]"

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
# What the client (or a proxy) sent as X-Request-ID, kept beside the product's own id and never instead of it.
client_request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("client_request_id", default="")

# A JSON Web Token: three base64url segments, the first two starting with '{"' encoded.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
# name=value, name: value, "name": "value" for names that carry secrets. The value is masked whatever
# its length when the name says it is secret; `code` only when the value looks like a code.
_SECRET_NAMES = (
    r"(?:refresh|access|id|bearer|session)?_?token|client_secret|secret|password|passwd|pwd|"  # noqa: S105
    r"code_verifier|client_assertion|assertion|authorization|api[_-]?key|private_key|sig"
)
_NAMED = re.compile(
    r"""(?P<name>["']?\b(?:"""
    + _SECRET_NAMES
    + r""")["']?\s*(?:=|:)\s*)(?P<quote>["']?)(?:Bearer\s+)?(?P<value>[^\s"'&,;}]{4,})""",
    re.IGNORECASE,
)
_CODE = re.compile(r"""(?P<name>["']?\bcode["']?\s*(?:=|:)\s*)(?P<quote>["']?)(?P<value>[A-Za-z0-9._~+/=-]{16,})""")
_BEARER = re.compile(r"\bBearer\s+[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)
# A long opaque run mixing upper case, lower case and digits: a refresh token or code with no label.
# Hex digests, UUIDs, module paths and hostnames do not mix all three.
_OPAQUE = re.compile(r"(?<![A-Za-z0-9._~+=-])[A-Za-z0-9._~+=-]{40,}")


def _opaque(match: re.Match[str]) -> str:
    text = match.group(0)
    if re.search(r"[A-Z]", text) and re.search(r"[a-z]", text) and re.search(r"[0-9]", text):
        return MASK
    return text


def redact(text: str) -> str:
    """Mask anything token-shaped in `text`."""
    if not text:
        return text
    text = _JWT.sub(MASK, text)
    text = _BEARER.sub("Bearer " + MASK, text)
    text = _NAMED.sub(lambda m: f"{m.group('name')}{m.group('quote')}{MASK}", text)
    text = _CODE.sub(lambda m: f"{m.group('name')}{m.group('quote')}{MASK}", text)
    return _OPAQUE.sub(_opaque, text)


def redact_value(value: Any) -> Any:
    """Redact strings inside JSON-like data, dropping the values of keys that name a secret."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {
            key: (MASK if isinstance(key, str) and _is_secret_key(key) else redact_value(item))
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_value(item) for item in value]
    return value


_SECRET_KEY = re.compile(r"^(?:" + _SECRET_NAMES + r"|code)$", re.IGNORECASE)


def _is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.match(key))


_STANDARD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class RedactingFilter(logging.Filter):
    """Rewrites a record so that no handler can print a token from its message, arguments or traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string must not hide the record
            message = f"{record.msg!r} (arguments could not be formatted)"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        # The formatted traceback replaces the live exception, whose arguments may hold a secret.
        record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str | dict | list | tuple):
                setattr(record, key, MASK if _is_secret_key(key) else redact_value(value))
        return True


class RequestIdFilter(logging.Filter):
    """Adds `request_id` (the current request's, or empty for background work) to every record, and the client's
    X-Request-ID as `client_request_id` when it sent one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", ""):
            record.request_id = request_id_var.get()
        client = client_request_id_var.get()
        if client and not getattr(record, "client_request_id", ""):
            record.client_request_id = client
        return True


class TextFormatter(logging.Formatter):
    """`time level logger [request] message key=value ...`, one record a line (CR and LF escaped, so a message cannot
    forge a line); a traceback follows indented."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_line_breaks(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        first, *rest = super().format(record).split("\n")
        request_id = getattr(record, "request_id", "")
        if request_id:
            first += f" request_id={escape_line_breaks(str(request_id))}"
        client = getattr(record, "client_request_id", "")
        if client:
            first += f" client_request_id={escape_line_breaks(str(client))}"
        return "\n".join([first, *("    " + line for line in rest)])


def escape_line_breaks(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for a log pipeline."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", "")
        if request_id:
            payload["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and key != "request_id" and not key.startswith("_"):
                payload[key] = value if isinstance(value, str | int | float | bool | type(None)) else repr(value)
        if record.exc_text:
            payload["exception"] = record.exc_text
        if record.stack_info:
            payload["stack"] = record.stack_info
        return json.dumps(payload, default=str)


def logging_config(*, log_format: str, level: str) -> dict[str, Any]:
    """The LOGGING dict: one console handler with both filters; Django's and Celery's loggers use it."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "redact": {"()": "cpv.logs.RedactingFilter"},
            "request_id": {"()": "cpv.logs.RequestIdFilter"},
        },
        "formatters": {
            "text": {"()": "cpv.logs.TextFormatter"},
            "json": {"()": "cpv.logs.JsonFormatter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": log_format,
                "filters": ["request_id", "redact"],
            },
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django": {"handlers": ["console"], "level": level, "propagate": False},
            # The query log would print every parameter, tokens' fingerprints included.
            "django.db.backends": {"handlers": ["console"], "level": "WARNING", "propagate": False},
            "celery": {"handlers": ["console"], "level": level, "propagate": False},
            # msal and azure-core log request details at DEBUG; keep them at WARNING.
            "msal": {"level": "WARNING"},
            "azure": {"level": "WARNING"},
            "urllib3": {"level": "WARNING"},
        },
    }


def install_on_all_handlers() -> None:
    """Put the redaction filter on every handler of every logger, including ones added by libraries."""
    redactor = RedactingFilter()
    loggers = [logging.getLogger()] + [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(redactor)
