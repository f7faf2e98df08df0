"""A renewal lists the vault secret's versions only now and then (one rotation in RECONCILE_EVERY, and every
rotation near the version budget): the version count stays exact, and a version an interrupted write left
behind is still found and disabled, without a listing call on every renewal."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from partners.models import Partner
from tests.factories import active_partner, pointer_of
from tokens.models import PartnerToken
from tokens.redemption import RECONCILE_EVERY, VERSION_RESERVE
from tokens.renewal import renew_one
from tokens.vault import MAX_VERSIONS, get_vault
from tokens.vault.models import VaultSecretVersion

pytestmark = pytest.mark.django_db


@pytest.fixture
def listings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The secret names whose versions the vault was asked to list."""
    vault = get_vault()
    calls: list[str] = []
    original = vault.versions

    def versions(*, name: str) -> Any:
        calls.append(name)
        return original(name=name)

    monkeypatch.setattr(vault, "versions", versions)
    return calls


def due(partner: Partner, **fields: Any) -> None:
    PartnerToken.objects.filter(partner=partner).update(last_renewed_at=timezone.now() - timedelta(days=8), **fields)


def orphan_of(partner: Partner) -> str:
    """A version written as an interrupted renewal leaves it: enabled, named by no pointer, and old enough."""
    pointer = pointer_of(partner)
    written = get_vault().write(name=pointer.secret_name, value="a token nobody points to")
    VaultSecretVersion.objects.filter(name=pointer.secret_name, version=written.version).update(
        created_at=timezone.now() - timedelta(hours=1)
    )
    return written.version


def enabled(partner: Partner) -> dict[str, bool]:
    return {v.version: v.enabled for v in get_vault().versions(name=pointer_of(partner).secret_name)}


def test_most_renewals_trust_the_pointers_count_and_make_no_listing(  # type: ignore[no-untyped-def]
    cpv_sim, listings, django_capture_on_commit_callbacks
) -> None:
    partner = active_partner(cpv_sim)
    due(partner, generation=3)

    with django_capture_on_commit_callbacks(execute=True):
        assert renew_one(partner_id=partner.pk).outcome == "renewed"

    listings.clear()  # the fixture's own reads below
    after = pointer_of(partner)
    assert after.version_count == len(enabled(partner)) == 2
    assert after.generation == 4


def test_every_eighth_renewal_lists_and_disables_a_version_an_interrupted_write_left(  # type: ignore[no-untyped-def]
    cpv_sim, listings, django_capture_on_commit_callbacks
) -> None:
    partner = active_partner(cpv_sim)
    stray = orphan_of(partner)
    due(partner, generation=RECONCILE_EVERY - 1, version_count=1)  # the pointer does not know of the stray

    with django_capture_on_commit_callbacks(execute=True):
        assert renew_one(partner_id=partner.pk).outcome == "renewed"
    assert listings == []
    assert enabled(partner)[stray] is True

    listings.clear()
    due(partner)
    with django_capture_on_commit_callbacks(execute=True):
        assert renew_one(partner_id=partner.pk).outcome == "renewed"

    assert listings == [pointer_of(partner).secret_name]
    versions = enabled(partner)
    assert versions[stray] is False
    after = pointer_of(partner)
    assert after.version_count == len(versions) == 4
    assert [v for v, on in versions.items() if on] == [after.current_version]


def test_near_the_budget_every_renewal_lists(cpv_sim, listings) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    near = MAX_VERSIONS - VERSION_RESERVE - RECONCILE_EVERY
    due(partner, generation=3, version_count=near)

    assert renew_one(partner_id=partner.pk).outcome == "renewed"

    assert listings == [pointer_of(partner).secret_name]
    # The listing's true count (the vault holds two versions) replaces the pointer's.
    assert pointer_of(partner).version_count == 2
