"""The finish of the staff pages: an empty overview that says how to start, back links to the partner list,
timelines that say each thing once, chart labels that fit, a copy button beside each link, the invite form's
checkbox beside its label."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

import pytest
from django.utils import timezone

from consent.models import ConsentFlow, ConsentFlowEvent
from dashboard.selectors import Bar, DaySeries
from dashboard.templatetags.charts import CHAR_WIDTH, WIDTH, day_columns, hbars
from dashboard.templatetags.staff import phrase
from partners.models import Partner
from tests.factories import active_partner_with_data, client_for
from tokens.models import TokenEvent

pytestmark = pytest.mark.django_db


def test_an_empty_overview_says_how_to_invite_the_first_partner(operator, viewer) -> None:  # type: ignore[no-untyped-def]
    page = client_for(operator).get("/?fresh=1").content.decode()

    assert 'id="first-partner"' in page and "Invite your first partner" in page
    assert '<a class="button" href="/consent/staff/invite" id="invite-first-partner">Invite a partner</a>' in page
    looking = client_for(viewer).get("/?fresh=1").content.decode()
    assert "Invite your first partner" in looking and 'id="invite-first-partner"' not in looking
    Partner.objects.create(name="First", contact_email="f@example.com")
    assert 'id="first-partner"' not in client_for(operator).get("/?fresh=1").content.decode()


def test_back_links_lead_to_the_partner_list(operator) -> None:  # type: ignore[no-untyped-def]
    partner = Partner.objects.create(name="Alpha", contact_email="a@example.com")
    client = client_for(operator)

    for url in (f"/partners/{partner.code}/", "/consent/staff/invite"):
        assert '<a href="/partners/">← Partners</a>' in client.get(url).content.decode(), url


def test_the_invite_forms_checkbox_sits_inside_its_label(operator) -> None:  # type: ignore[no-untyped-def]
    page = client_for(operator).get("/consent/staff/invite").content.decode()

    assert re.search(
        r'<label class="check" for="id_send_email"><input type="checkbox" name="send_email"[^>]*> '
        r"Email the link to the contact</label>",
        page,
    ), page[page.find("<form") :]


@pytest.mark.parametrize(
    ("label", "message", "said"),
    [
        ("Came back from Microsoft", "Came back from Microsoft", "Came back from Microsoft"),
        ("Sent to Microsoft", "Sent to Microsoft's sign-in", "Sent to Microsoft's sign-in"),
        ("Token acquired", "Microsoft issued a token", "Token acquired — Microsoft issued a token"),
        ("Failed", "", "Failed"),
    ],
)
def test_an_event_says_its_state_and_message_once(label: str, message: str, said: str) -> None:
    assert phrase(label, message) == said


def test_a_flows_timeline_on_the_partner_page_has_no_repeated_phrase(viewer) -> None:  # type: ignore[no-untyped-def]
    partner = Partner.objects.create(name="Alpha", contact_email="a@example.com")
    flow = ConsentFlow.objects.create(partner=partner, expires_at=timezone.now(), status="vaulted")
    for status, message in [
        ("created", "Started from the consent page"),
        ("redirected", "Sent to Microsoft's sign-in"),
        ("code_received", "Came back from Microsoft"),
        ("token_acquired", "Microsoft issued a token"),
        ("token_acquired", "Microsoft issued a token"),
        ("token_acquired", "Global Administrator role not proven: no wids claim"),
        ("vaulted", "Consented"),
    ]:
        ConsentFlowEvent.objects.create(flow=flow, status=status, message=message)

    page = client_for(viewer).get(f"/partners/{partner.code}/").content.decode()
    timeline = page[page.find('id="flows"') :]

    assert timeline.count("Came back from Microsoft") == 1
    assert timeline.count("Microsoft issued a token") == 1
    assert "Token acquired — Microsoft issued a token" in timeline
    assert "Global Administrator role not proven: no wids claim" in timeline
    assert "Consented — Consented" not in timeline


def test_repeated_token_events_are_said_once_with_how_many_times(viewer) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner_with_data("Alpha", customers=0)
    for _ in range(3):
        TokenEvent.objects.create(partner=partner, kind="retrying", message="Partner Center answered 429")
    TokenEvent.objects.create(partner=partner, kind="renewed", message="Renewed")

    page = client_for(viewer).get(f"/partners/{partner.code}/").content.decode()

    assert page.count("Partner Center answered 429") == 1
    assert "(3 times, the last at" in page
    assert "Renewed — Renewed" not in page


def rows_of(svg: str) -> list[dict[str, Any]]:
    rows = []
    for group in re.findall(r'<g class="row[^"]*">(.*?)</g>', svg):
        label = re.search(r'<text x="0" y="([\d.]+)" class="label">([^<]*)</text>', group)
        bar = re.search(r'<rect x="0" y="([\d.]+)" width="[\d.]+" height="[\d.]+" rx="3" class="track">', group)
        value = re.search(r'<text x="([\d.]+)" y="([\d.]+)" class="value end">([^<]*)</text>', group)
        title = re.search(r"<title>([^<]*)</title>", group)
        assert label and bar and value and title, group
        rows.append(
            {"label_y": float(label.group(1)), "label": label.group(2), "bar_y": float(bar.group(1)),
             "value_y": float(value.group(2)), "value": value.group(3), "title": title.group(1)}
        )  # fmt: skip
    return rows


def test_bar_labels_sit_above_their_bars_and_fit_beside_the_value() -> None:
    long = "Customers failing ApplicationConsent in every tenant they manage for the partner"
    bars = [Bar("Invited", 3), Bar("Re-consent needed", 12345), Bar(long, 7)]

    rows = rows_of(str(hbars(bars, label="Partners")))

    assert len(rows) == 3
    for row in rows:
        # The label's baseline is above the top of its bar: text and bar never overlap.
        assert row["label_y"] + 2 <= row["bar_y"]
        assert row["value_y"] == row["label_y"]
        label_end = len(row["label"]) * CHAR_WIDTH
        value_start = WIDTH - len(row["value"]) * CHAR_WIDTH
        assert label_end < value_start, row
    assert rows[1]["label"] == "Re-consent needed" and rows[1]["value"] == "12345"
    assert rows[2]["label"].endswith("…") and long.startswith(rows[2]["label"][:-1])
    assert rows[2]["title"].startswith(long)


@pytest.mark.parametrize("days", [7, 30, 90])
def test_the_day_columns_labels_do_not_overlap_the_columns_or_each_other(days: int) -> None:
    first = date(2026, 11, 1)
    series = [DaySeries(first + timedelta(days=i), {"renewed": 12345 if i == 0 else 3}) for i in range(days + 1)]

    svg = str(day_columns(series, [("renewed", "Renewed", "ok")], label="Renewals"))

    width = float(re.search(r'viewBox="0 0 ([\d.]+) ', svg).group(1))  # type: ignore[union-attr]
    first_column = min(float(x) for x in re.findall(r'<rect x="([\d.]+)" y="0"', svg))
    top_label = re.search(r'<text x="([\d.]+)" y="12" class="value end">12345</text>', svg)
    assert top_label and float(top_label.group(1)) < first_column
    start = re.search(r'<text x="([\d.]+)" y="[\d.]+" class="label">(01 Nov)</text>', svg)
    end = re.search(r'<text x="([\d.]+)" y="[\d.]+" class="label end">([^<]+)</text>', svg)
    assert start and end
    assert (
        float(start.group(1)) + len(start.group(2)) * CHAR_WIDTH < float(end.group(1)) - len(end.group(2)) * CHAR_WIDTH
    )
    assert float(end.group(1)) <= width
    # As narrow as the bars, so that a phone shows it at its size.
    assert width <= WIDTH


def test_a_new_consent_link_is_shown_in_a_readonly_field_with_a_copy_button(operator) -> None:  # type: ignore[no-untyped-def]
    client = client_for(operator)

    response = client.post(
        "/consent/staff/invite",
        {"name": "Copy Co", "contact_email": "c@example.com", "cloud": "global", "environment": "production"},
        follow=True,
    )

    page = response.content.decode()
    link = re.search(r'<input type="text" id="new-link-1" value="([^"]+)" readonly>', page)
    assert link and "/consent/i/" in link.group(1)
    assert '<button type="button" class="secondary copy-button" data-copy="new-link-1">Copy</button>' in page
    assert '<script src="/js/copy-link.js" defer></script>' in page
    script = client.get("/js/copy-link.js").content.decode()
    assert "navigator.clipboard.writeText" in script and '"Copied"' in script
    # Shown once: a reload has no new link.
    partner = Partner.objects.get(name="Copy Co")
    assert 'id="new-link"' not in client.get(f"/partners/{partner.code}/").content.decode()


def test_a_failed_attempt_says_why_in_words_with_its_code(viewer) -> None:  # type: ignore[no-untyped-def]
    partner = Partner.objects.create(name="Alpha", contact_email="a@example.com")
    ConsentFlow.objects.create(
        partner=partner, expires_at=timezone.now(), status="failed", failure_reason="not_global_admin",
        failure_detail="no Global Administrator in wids",
    )  # fmt: skip

    page = client_for(viewer).get(f"/partners/{partner.code}/").content.decode()

    assert "The partner&#x27;s account is not a Global Administrator" in page
    assert "(<code>not_global_admin</code>: no Global Administrator in wids)" in page
    assert 'id="customers-csv"' not in page  # no customer to download yet
