"""The one sealing kit: bound to its record and purpose, and open under a rotated DJANGO_SECRET_KEY."""

from __future__ import annotations

import pytest

from consent import sealing as sign_ins
from cpv import sealing
from events.secrets import secret_open, secret_seal

NEW_KEY = "a-new-django-secret-key-" + "y" * 40


def test_a_sealed_value_opens_only_for_its_purpose_and_record() -> None:
    sealed, _ = sealing.seal(b"the value", info=b"purpose-a", aad=b"record-1")

    assert sealing.unseal(sealed, info=b"purpose-a", aad=b"record-1") == b"the value"
    for info, aad in ((b"purpose-b", b"record-1"), (b"purpose-a", b"record-2")):
        with pytest.raises(sealing.SealError, match="integrity"):
            sealing.unseal(sealed, info=info, aad=aad)
    with pytest.raises(sealing.SealError, match="empty"):
        sealing.unseal(b"", info=b"purpose-a", aad=b"record-1")
    assert b"the value" not in sealed


def test_an_altered_value_does_not_open() -> None:
    sealed, _ = sealing.seal(b"the value", info=b"p", aad=b"r")
    altered = sealed[:-1] + bytes([sealed[-1] ^ 1])

    with pytest.raises(sealing.SealError):
        sealing.unseal(altered, info=b"p", aad=b"r")


def test_a_sign_in_sealed_before_the_secret_key_rotated_still_opens(settings) -> None:  # type: ignore[no-untyped-def]
    blob = sign_ins.seal({"state": "s"}, purpose="portal-sign-in", bound_to="hash")
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = NEW_KEY

    assert sign_ins.unseal(blob, purpose="portal-sign-in", bound_to="hash") == {"state": "s"}
    # What is sealed now is sealed under the new key: it opens without the fallback.
    fresh = sign_ins.seal({"state": "t"}, purpose="portal-sign-in", bound_to="hash")
    settings.SECRET_KEY_FALLBACKS = []
    assert sign_ins.unseal(fresh, purpose="portal-sign-in", bound_to="hash") == {"state": "t"}
    with pytest.raises(sign_ins.SealError):
        sign_ins.unseal(blob, purpose="portal-sign-in", bound_to="hash")


def test_a_named_key_opens_with_that_key_alone_and_a_missing_one_is_named(settings) -> None:  # type: ignore[no-untyped-def]
    sealed, key_id = secret_seal("whsec_x", subscription="sub", slot="current")
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = NEW_KEY

    assert secret_open(sealed, wanted_key_id=key_id, subscription="sub", slot="current") == "whsec_x"
    gone = "0" * 16
    with pytest.raises(sealing.SealError, match=f"key {gone}, which is neither"):
        sealing.unseal(sealed, info=b"cpv-events/webhook-secret/v1", aad=b"x", wanted_key_id=gone)
