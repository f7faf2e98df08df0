"""The one error family of the Microsoft clients and the one reading of Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime

from microsoft import graph, identity, partner_center
from microsoft.errors import MicrosoftError, retry_after


def test_retry_after_is_read_in_seconds_milliseconds_or_as_a_date() -> None:
    now = datetime(2015, 10, 21, 7, 27, 30, tzinfo=UTC)
    assert retry_after({"Retry-After": "7"}) == 7.0
    assert retry_after({"retry-after-ms": "1500"}) == 1.5
    assert retry_after({"x-ms-retry-after-ms": "250"}) == 0.25
    assert retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, now=now) == 30.0
    assert retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # in the past: no wait
    assert retry_after({"Retry-After": "-5"}) == 0.0
    assert retry_after({"Retry-After": "soon"}) is None
    assert retry_after(None) is None


def test_every_client_error_says_whether_to_retry_and_after_how_long() -> None:
    transient = [
        identity.Transient("throttled", retry_after=3.0),
        partner_center.Throttled("429", retry_after=3.0),
        partner_center.Transient("503", retry_after=3.0),
        graph.GraphError("429", status=429, transient=True, retry_after=3.0),
    ]
    permanent = [
        identity.ReconsentRequired("expired"),
        identity.InvalidClient("bad credential"),
        partner_center.Forbidden("403"),
        partner_center.MfaRequired("900421"),
        graph.GraphError("403", status=403),
    ]
    for error in transient:
        assert isinstance(error, MicrosoftError)
        assert error.transient and not error.permanent and error.retry_after == 3.0
    for error in permanent:
        assert isinstance(error, MicrosoftError)
        assert not error.transient and error.permanent
