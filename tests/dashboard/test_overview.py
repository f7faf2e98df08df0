"""The overview's numbers equal the same numbers counted the plain way, one partner, token, event and customer
at a time: partners by status and token health, the funnel, token ages, customer coverage and who needs
attention (with their failing customers)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from consent.models import ConsentFlow, ConsentFlowEvent
from cpv.celery import BEAT_SCHEDULE
from customers.coverage import coverage_recount
from customers.models import CustomerConsent
from dashboard import selectors
from dashboard.tasks import overview_refresh_task
from partners.models import Customer, Partner
from tests.factories import active_partner_with_data, client_for
from tokens.models import PartnerToken
from tokens.selectors import HEALTH_CHOICES, token_status

pytestmark = pytest.mark.django_db


def world() -> dict[str, Partner]:
    """Partners in every status and token health, old and new, with flows, customers and failures."""
    now = timezone.now()
    partners = {
        "contoso": active_partner_with_data("Contoso Partners", customers=30, failed=4, age_days=3),
        "fabrikam": active_partner_with_data("Fabrikam Cloud", customers=12, failed=0, age_days=20),
        "northwind": active_partner_with_data("Northwind IT", customers=8, failed=8, age_days=80),
        "old": active_partner_with_data("Old Token", customers=2, failed=0, age_days=100),
        "failing": active_partner_with_data("Failing Renewal", customers=3, failed=1, age_days=10),
        "reconsent": active_partner_with_data("Needs Reconsent", customers=4, failed=2, age_days=50),
        "gone": active_partner_with_data("Deactivated Co", customers=5, failed=5, age_days=85),
        "versionless": active_partner_with_data("No Version", customers=0, age_days=1),
        "invited": Partner.objects.create(name="Invited Only", contact_email="i@example.com"),
        "pending": Partner.objects.create(name="Pending", contact_email="p@example.com", status="pending"),
    }
    PartnerToken.objects.filter(partner=partners["failing"]).update(last_failure_at=now - timedelta(hours=1))
    PartnerToken.objects.filter(partner=partners["versionless"]).update(current_version="")
    Partner.objects.filter(pk=partners["reconsent"].pk).update(status=Partner.Status.RECONSENT_NEEDED)
    Partner.objects.filter(pk=partners["gone"].pk).update(status=Partner.Status.DEACTIVATED)
    Partner.objects.filter(pk__in=[partners["old"].pk, partners["fabrikam"].pk]).update(
        created_at=now - timedelta(days=45)
    )
    # A removed customer whose consent had failed counts nowhere.
    Customer.objects.filter(pk=Customer.objects.filter(partner=partners["contoso"]).order_by("pk")[0].pk).update(
        removed_at=now
    )
    coverage_recount()
    for key, statuses, days_ago in [
        ("contoso", ["created", "redirected", "verified", "vaulted"], 2),
        ("fabrikam", ["created", "redirected", "verified", "vaulted"], 40),
        ("northwind", ["created", "redirected"], 5),
        ("gone", ["created", "verified", "vaulted"], 3),
    ]:
        flow = ConsentFlow.objects.create(partner=partners[key], expires_at=now, status=statuses[-1])
        ConsentFlowEvent.objects.bulk_create(ConsentFlowEvent(flow=flow, status=s) for s in statuses)
        ConsentFlowEvent.objects.filter(flow=flow).update(created_at=now - timedelta(days=days_ago))
    return {k: Partner.objects.select_related("token").get(pk=p.pk) for k, p in partners.items()}


def test_every_figure_of_the_overview_matches_a_plain_count(viewer) -> None:  # type: ignore[no-untyped-def]
    partners = world()
    now = timezone.now()
    everyone = list(Partner.objects.select_related("token"))

    o = selectors.overview(days=30, now=now)

    def pointer(p: Partner) -> PartnerToken | None:
        return getattr(p, "token", None)

    assert {b.hint: b.value for b in o.by_status} == {
        s: sum(p.status == s for p in everyone) for s in Partner.Status.values
    }
    assert {b.hint: b.value for b in o.by_health} == {
        h: sum(token_status(p, pointer(p), now=now) == h for p in everyone) for h, _ in HEALTH_CHOICES
    }
    since = now - timedelta(days=30)
    events = ConsentFlowEvent.objects.filter(created_at__gte=since).select_related("flow__partner")

    def reached(status: str, *, active: bool = False) -> int:
        return len(
            {
                e.flow.partner_id
                for e in events
                if e.status == status and (not active or e.flow.partner.status == Partner.Status.ACTIVE)
            }
        )

    assert [b.value for b in o.funnel] == [
        sum(p.created_at >= since for p in everyone),
        reached("created"),
        reached("vaulted"),
        reached("verified"),
        reached("vaulted", active=True),
    ]
    assert [b.value for b in o.funnel] == [8, 3, 2, 2, 1]
    ages = [
        (now - p.token.last_renewed_at).total_seconds() / 86400
        for p in everyone
        if p.status == Partner.Status.ACTIVE and pointer(p) is not None and p.token.current_version
    ]
    assert [b.value for b in o.token_ages] == [
        sum(low <= age < (high if high is not None else 10**6) for age in ages) for low, high in selectors.AGE_BUCKETS
    ]

    present = Customer.objects.filter(removed_at__isnull=True)
    assert (o.coverage.customers, o.coverage.consented, o.coverage.failed) == (
        present.count(),
        present.filter(application_consent__status=CustomerConsent.Status.APPLIED).count(),
        present.filter(application_consent__status=CustomerConsent.Status.FAILED).count(),
    )
    page = client_for(viewer).get("/").content.decode()
    assert f'{o.coverage.consented} <span class="of">of {o.coverage.customers} customers' in page

    assert [p.name for p in o.attention] == [
        "Needs Reconsent",  # re-consent needed first
        "Failing Renewal",  # then renewals failing
        "Old Token",  # then tokens close to the 90-day limit, oldest first
        "Northwind IT",
        "Contoso Partners",  # then customers failing ApplicationConsent
    ]
    for p in o.attention:
        assert p.failed_customers == present.filter(partner=p, application_consent__status="failed").count()
    assert {p.name: p.reasons for p in o.attention}["Northwind IT"] == [
        "Token expires soon",
        "8 customers failing ApplicationConsent",
    ]
    assert partners["gone"].pk not in {p.pk for p in o.attention}


def test_the_trends_and_attention_are_reused_for_a_minute_while_coverage_stays_live(viewer, operator) -> None:  # type: ignore[no-untyped-def]
    contoso = active_partner_with_data("Contoso Partners", customers=10, failed=0)
    client = client_for(viewer)
    first = client.get("/")
    assert first.context["o"].by_status[2].value == 1  # active
    made = first.context["o"].as_of
    assert f"as of {timezone.localtime(made):%H:%M:%S}" in first.content.decode()

    # A change no staff member made here: the counts over every partner and who needs attention wait; coverage does
    # not.
    fabrikam = active_partner_with_data("Fabrikam Cloud", customers=5, failed=5)
    with CaptureQueriesContext(connection) as cached_queries:
        again = client.get("/")
    o = again.context["o"]
    assert o.as_of == made and o.by_status[2].value == 1
    assert o.coverage.customers == 15 and o.coverage.failed == 5
    assert "Fabrikam Cloud" not in [p.name for p in o.attention]

    fresh = client.get("/?fresh=1").context["o"]
    assert fresh.as_of > made and fresh.by_status[2].value == 2
    assert "Fabrikam Cloud" in [p.name for p in fresh.attention]
    with CaptureQueriesContext(connection) as fresh_queries:
        client.get("/?fresh=1")
    # The trends' fourteen: partners, the consent funnel, the renewals by day, the proof over every customer (every
    # consent, less those of removed customers), who needs attention (a rank at a time: six here, then their rows),
    # the customers without GDAP access and the GDAP notices; and the rows of the partners needing attention, none
    # in the reused trends (no query).
    assert len(cached_queries) == len(fresh_queries) - 15

    # An operator's action drops the cached counts: the overview they go back to shows it.
    client_for(operator).post(f"/partners/{contoso.code}/do/deactivate", {"confirmed": "yes", "reason": "test"})
    assert Partner.objects.get(pk=contoso.pk).status == Partner.Status.DEACTIVATED
    after = client.get("/").context["o"]
    assert after.by_status[2].value == 1 and after.by_status[4].value == 1
    assert fabrikam.pk in [p.pk for p in after.attention]


def test_the_beat_task_makes_the_trends_the_overview_reads_without_counting(viewer) -> None:  # type: ignore[no-untyped-def]
    active_partner_with_data("Contoso Partners", customers=4, failed=1)
    overview_refresh_task()
    made = selectors.overview(cached=True)
    assert [p.name for p in made.attention] == ["Contoso Partners"]

    # Between two runs the page reads what the last one made, in three queries (tokens due, coverage, the rows of
    # those needing attention), whatever the number of partners.
    northwind = active_partner_with_data("Northwind IT", customers=3, failed=3)
    with CaptureQueriesContext(connection) as queries:
        reused = selectors.overview(cached=True)
    assert len(queries) == 3
    assert reused.as_of == made.as_of and [p.name for p in reused.attention] == ["Contoso Partners"]
    assert reused.coverage.failed == 4  # live

    overview_refresh_task()
    later = selectors.overview(cached=True)
    assert later.as_of > made.as_of
    assert {p.name for p in later.attention} == {"Northwind IT", "Contoso Partners"}
    assert {p.name: p.reasons for p in later.attention}[northwind.name] == ["3 customers failing ApplicationConsent"]


def test_beat_makes_the_trends_anew_before_a_page_would_count_them_itself() -> None:
    entry = BEAT_SCHEDULE["dashboard-overview-refresh"]

    assert entry["task"] == overview_refresh_task.name
    assert entry["schedule"] < selectors.TRENDS_SECONDS


def test_a_partner_ranked_and_deleted_since_is_left_out_and_the_rest_read_as_they_are_now() -> None:
    contoso = active_partner_with_data("Contoso Partners", customers=4, failed=1)
    northwind = active_partner_with_data("Northwind IT", customers=3, failed=3)
    overview_refresh_task()
    Partner.objects.filter(pk=northwind.pk).update(deleted_at=timezone.now())
    PartnerToken.objects.filter(partner=contoso).update(last_failure_at=timezone.now())

    [partner] = selectors.overview(cached=True).attention

    assert partner.pk == contoso.pk and partner.health == "failing"
    assert partner.reasons == ["1 customer failing ApplicationConsent"]  # as ranked


def test_the_overview_counts_for_itself_when_the_cache_cannot_be_reached(viewer, settings, caplog) -> None:  # type: ignore[no-untyped-def]
    active_partner_with_data("Contoso Partners", customers=4, failed=1)
    client = client_for(viewer)
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:9/0"}
    }

    response = client.get("/")

    assert response.status_code == 200
    o = response.context["o"]
    assert o.by_status[2].value == 1 and o.coverage.failed == 1
    assert "trends could not be read from the cache" in caplog.text


def test_the_directory_finds_a_partner_by_a_customers_name_or_domain() -> None:
    from dashboard.selectors import partner_directory

    contoso = active_partner_with_data("Contoso", customers=3)
    active_partner_with_data("Fabrikam", customers=2)

    assert list(partner_directory(search="Contoso customer 0002")) == [contoso]
    assert list(partner_directory(search="c1.contoso.example")) == [contoso]
    assert {p.name for p in partner_directory(search="customer 0001")} == {"Contoso", "Fabrikam"}


@pytest.mark.postgres
def test_the_pages_queries_are_never_compiled_by_postgresqls_jit() -> None:
    # The needs-attention ranking is costed past jit_above_cost from about 10,000 partners: compiling it took
    # ~160 ms of every overview, more than the query itself.
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone() == ("off",)
