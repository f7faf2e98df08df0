"""A bulk action's operations read back on one page (queued → running → done with counts), linked from the message
the bulk action shows; each operation's own page, linked from the partner's Operations panel."""

from __future__ import annotations

import re
import uuid

import pytest
from django.utils import timezone

from partners.models import Operation
from tests.factories import active_partner_with_data, client_for

pytestmark = pytest.mark.django_db


def test_a_bulk_actions_message_links_to_its_operations_which_show_queued_running_done_with_counts(  # type: ignore[no-untyped-def]
    operator, monkeypatch
) -> None:
    from tokens import tasks as token_tasks

    monkeypatch.setattr(token_tasks.token_renew, "apply_async", lambda *a, **kw: None)
    a, b, c = (active_partner_with_data(name) for name in ("Alpha", "Bravo", "Charlie"))
    client = client_for(operator)

    done = client.post(
        "/partners/bulk",
        {"action": "renew", "partners": [str(p.code) for p in (a, b, c)], "confirmed": "True"},
        follow=True,
    )
    page = done.content.decode()
    assert "Renew tokens now: queued for 3 partners." in page
    link = re.search(r'<a href="(/operations/bulk/[0-9a-f-]+/)" id="bulk-progress">Follow their progress</a>', page)
    assert link, page

    # One finished with its outcome written, one being renewed, one waiting for a worker.
    rows = {op.partner.name: op for op in Operation.objects.select_related("partner")}
    Operation.objects.filter(pk=rows["Alpha"].pk).update(
        state="done", done=1, message="Renewed.", finished_at=timezone.now()
    )
    monkeypatch.setattr(
        "dashboard.operations._task_state",
        lambda task_id: ("STARTED", None) if task_id == rows["Bravo"].task_id else ("PENDING", None),
    )
    listing = client.get(link.group(1))
    assert listing.status_code == 200
    text = listing.content.decode()
    counts = re.search(r'id="bulk-counts">(.*?)</p>', text, re.S)
    assert counts
    steps = re.sub(r"<[^>]+>", "", counts.group(1))
    assert steps == "1 queued → 1 running → 1 done", steps
    for name in ("Alpha", "Bravo", "Charlie"):
        assert name in text
        assert f'href="/partners/{rows[name].partner.code}/operations/{rows[name].code}"' in text


def test_an_unknown_bulk_id_is_a_404(operator) -> None:  # type: ignore[no-untyped-def]
    assert client_for(operator).get(f"/operations/bulk/{uuid.uuid4()}/").status_code == 404


def test_the_operations_panel_links_each_operation_to_its_page_which_reads_the_row(operator, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tokens import tasks as token_tasks

    monkeypatch.setattr(token_tasks.token_renew, "apply_async", lambda *a, **kw: None)
    partner = active_partner_with_data("Delta")
    client = client_for(operator)
    client.post(f"/partners/{partner.code}/do/renew", {"confirmed": "yes"})
    op = Operation.objects.get(partner=partner)
    Operation.objects.filter(pk=op.pk).update(
        state="failed", done=1, failed=1, message="The refresh token was revoked.", finished_at=timezone.now()
    )

    detail = client.get(f"/partners/{partner.code}/").content.decode()
    url = f"/partners/{partner.code}/operations/{op.code}"
    assert f'<a href="{url}">Token renewal</a>' in detail
    page = client.get(url).content.decode()
    assert "Token renewal" in page and "Delta" in page
    assert "The refresh token was revoked." in page
    assert "failed, seen" in page and "1 of 1 done, 1 failed" in page
