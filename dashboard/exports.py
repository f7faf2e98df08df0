"""CSV downloads of the staff pages (the audit log, the partner list, a partner's customers), streamed a chunk at a
time with no row limit; only what the pages show goes out, never a token or a secret."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from itertools import islice
from typing import Any, TypeVar

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone

from customers.coverage import Coverage
from customers.selectors import coverage_for, customers_of
from customers.words import PROOF_LABELS, access_words, consent_error_words, proof_state, proof_words
from dashboard.selectors import audit_rows
from partners.models import AuditEvent, Customer, Partner
from tokens.selectors import HEALTH_LABELS

T = TypeVar("T")

# Rows read from the database at a time.
CHUNK = 500
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class Echo:
    """A file-like object whose `write` returns what it is given, for csv.writer to stream rows."""

    def write(self, value: str) -> str:
        return value


def cell(value: Any) -> str:
    """A value as a CSV cell: UTC ISO 8601, yes/no, "" for nothing, formula-like text after an apostrophe."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def chunks(items: Iterable[T], size: int = CHUNK) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def csv_response(*, filename: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> StreamingHttpResponse:
    """A CSV download written as it is read: the header line, then one line per row, each cell through `cell`."""
    writer = csv.writer(Echo())

    def lines() -> Iterator[str]:
        yield writer.writerow([cell(h) for h in header])
        for row in rows:
            yield writer.writerow([cell(v) for v in row])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="{filename}-{stamp}.csv"'
    response["Cache-Control"] = "no-store"
    return response


def _chunked(qs: QuerySet[Any], each: Callable[[list[Any]], Iterable[Sequence[Any]]]) -> Iterator[Sequence[Any]]:
    """The queryset's rows CHUNK at a time, each chunk turned into CSV rows by `each`."""
    for chunk in chunks(qs.iterator(chunk_size=CHUNK)):
        yield from each(chunk)


AUDIT_HEADER = ["When (UTC)", "Who", "What", "About", "Detail", "Action", "Request id"]


def audit_csv(events: QuerySet[AuditEvent]) -> StreamingHttpResponse:
    """The audit events given (filtered as the page is), in words, newest first."""

    def each(chunk: list[AuditEvent]) -> Iterator[Sequence[Any]]:
        for row in audit_rows(chunk):
            yield [row.when, row.who, row.what, row.target, row.detail_text, row.event.action, row.event.request_id]

    return csv_response(filename="audit-log", header=AUDIT_HEADER, rows=_chunked(events, each))


PARTNER_HEADER = [
    "Name",
    "Status",
    "Status reason",
    "Primary domain",
    "Tenant id",
    "Contact email",
    "Cloud",
    "Environment",
    "Token health",
    "Token last renewed (UTC)",
    "MFA compliant",
    "Customers",
    "Customers with the app",
    "Customers failing",
    "Created (UTC)",
    "Code",
]


def partners_csv(partners: QuerySet[Partner]) -> StreamingHttpResponse:
    """The partners given (searched, filtered and sorted as the list is; annotated with `health`)."""

    def each(chunk: list[Any]) -> Iterator[Sequence[Any]]:
        coverage = coverage_for([p.pk for p in chunk])
        for p in chunk:
            token = getattr(p, "token", None)
            c = coverage.get(p.pk, Coverage())
            yield [
                p.name,
                p.get_status_display(),
                p.status_reason,
                p.default_domain,
                p.tenant_id,
                p.contact_email,
                p.get_cloud_display(),
                p.get_environment_display(),
                HEALTH_LABELS.get(p.health, p.health),
                token.last_renewed_at if token is not None else None,
                "" if p.mfa_compliant is None else p.mfa_compliant,
                c.customers,
                c.consented,
                c.failed,
                p.created_at,
                p.code,
            ]

    return csv_response(filename="partners", header=PARTNER_HEADER, rows=_chunked(partners, each))


CUSTOMER_HEADER = [
    "Company",
    "Domain",
    "Tenant id",
    "Relationship",
    "ApplicationConsent",
    "Applied (UTC)",
    "Attempts",
    "Last error in words",
    "Last error",
    "GDAP",
    "GDAP in words",
    "GDAP checked (UTC)",
    "In the tenant",
    "In the tenant in words",
    "Verified (UTC)",
    "First seen (UTC)",
    "Last seen (UTC)",
]


def customers_csv(partner: Partner, *, state: str = "") -> StreamingHttpResponse:
    """The partner's present customers (in the state asked for, as on its page) with their ApplicationConsent."""

    def each(chunk: list[Customer]) -> Iterator[Sequence[Any]]:
        for c in chunk:
            consent: Any = getattr(c, "application_consent", None)
            yield [
                c.company_name,
                c.domain,
                c.tenant_id,
                c.relationship,
                consent.get_status_display() if consent is not None else "Not applied yet",
                consent.applied_at if consent is not None else None,
                consent.attempts if consent is not None else 0,
                consent_error_words(consent),
                consent.last_error if consent is not None else "",
                consent.get_access_display() if consent is not None and consent.access else "",
                access_words(consent),
                consent.access_checked_at if consent is not None else None,
                PROOF_LABELS.get(proof_state(consent), ""),
                proof_words(consent),
                consent.verified_at if consent is not None else None,
                c.first_seen_at,
                c.last_seen_at,
            ]

    name = re.sub(r"[^A-Za-z0-9.-]+", "-", partner.default_domain or str(partner.code))
    rows = _chunked(customers_of(partner, state=state), each)
    return csv_response(filename=f"customers-{name}", header=CUSTOMER_HEADER, rows=rows)
