"""Properties of the naming rules and of values, over generated inputs."""

from __future__ import annotations

import re
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokens.vault import InvalidSecretName, SecretValue, validate_secret_name
from tokens.vault.local import LocalVault

KEY_VAULT_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")


@given(st.text(max_size=140))
def test_names_are_accepted_exactly_when_key_vault_would_accept_them(name: str) -> None:
    if KEY_VAULT_NAME.match(name):
        assert validate_secret_name(name) == name.lower()
    else:
        with pytest.raises(InvalidSecretName):
            validate_secret_name(name)


@given(st.text(min_size=1))
def test_a_secret_value_never_shows_itself(value: str) -> None:
    secret = SecretValue(value)
    assert secret.reveal() == value
    assert repr(secret) == "SecretValue('[hidden]')"
    assert str(secret) == f"{secret}" == "[hidden]"


@pytest.mark.django_db
@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(value=st.text(min_size=1, max_size=2000).filter(lambda v: len(v.encode()) <= 25 * 1024))
def test_any_text_round_trips_through_the_local_vault(value: str) -> None:
    vault = LocalVault(keys=[b"k" * 32])
    name = f"prop-{uuid.uuid4().hex}"
    written = vault.write(name=name, value=value)
    assert vault.read(name=name, version=written.version).value.reveal() == value
