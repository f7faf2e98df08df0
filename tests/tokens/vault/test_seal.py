"""The sealed envelope: what only the private key opens, bound to its row, its version byte checked."""

from __future__ import annotations

import pytest

from cpv.keys import decode_key, new_key_pair, public_key_of
from tokens.vault.seal import ENVELOPE_V1, SealError, SealRing, open_sealed, seal, seal_key_id


@pytest.fixture
def keys() -> tuple[bytes, bytes]:
    pair = new_key_pair()
    return decode_key(pair.private, what="private"), decode_key(pair.public, what="public")


def test_a_sealed_value_opens_with_the_private_key_alone(keys: tuple[bytes, bytes]) -> None:
    private, public = keys
    nonce, envelope = seal(public=public, name="n", version="v1", plaintext=b"refresh-token")

    assert envelope[0] == ENVELOPE_V1 and b"refresh-token" not in envelope
    assert open_sealed(private=private, name="n", version="v1", nonce=nonce, envelope=envelope) == b"refresh-token"
    other = decode_key(new_key_pair().private, what="other")
    with pytest.raises(SealError):
        open_sealed(private=other, name="n", version="v1", nonce=nonce, envelope=envelope)


def test_each_seal_uses_a_fresh_ephemeral_key(keys: tuple[bytes, bytes]) -> None:
    _, public = keys
    first = seal(public=public, name="n", version="v", plaintext=b"same")
    second = seal(public=public, name="n", version="v", plaintext=b"same")

    assert first[1][1:33] != second[1][1:33] and first[1] != second[1]


@pytest.mark.parametrize(
    ("name", "version", "change"),
    [
        ("other", "v1", None),  # moved to another secret
        ("n", "v2", None),  # moved to another version
        ("n", "v1", lambda e: e[:-1] + bytes([e[-1] ^ 1])),  # a flipped bit
        ("n", "v1", lambda e: bytes([2]) + e[1:]),  # an envelope version this code does not know
        ("n", "v1", lambda e: e[:20]),  # cut short
    ],
)
def test_an_altered_or_moved_envelope_does_not_open(keys: tuple[bytes, bytes], name: str, version: str, change) -> None:  # type: ignore[no-untyped-def]
    private, public = keys
    nonce, envelope = seal(public=public, name="n", version="v1", plaintext=b"t")
    if change is not None:
        envelope = change(envelope)

    with pytest.raises(SealError):
        open_sealed(private=private, name=name, version=version, nonce=nonce, envelope=envelope)


def test_key_ids_name_the_pair_and_never_look_like_a_symmetric_keys(keys: tuple[bytes, bytes]) -> None:
    private, public = keys
    ring = SealRing(public=None, private=[private])

    assert public_key_of(private) == public == ring.public
    assert ring.public_id == seal_key_id(public) and ring.private_ids == [seal_key_id(public)]
    assert ring.public_id.startswith("s") and len(ring.public_id) == 16
    assert private.hex() not in repr(ring) and "SealRing(public_id=" in repr(ring)
