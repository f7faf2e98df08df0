"""Every dependency is locked with its hashes, the product's lock holds only what the product runs, and every
install (the image, the demo, the tests) refuses anything unpinned or altered."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT

LOCKS = {"requirements.txt": "requirements.in", "requirements-demo.txt": "requirements-demo.in",
         "requirements-dev.txt": "requirements-dev.in"}  # fmt: skip
_PIN = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==(?P<version>[^\s;\\]+)")


def locked(lock: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of each requirement in a lock."""
    text = (ROOT / lock).read_text().replace("\\\n", " ")
    found: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        match = _PIN.match(line)
        assert match, f"{lock}: not pinned with ==: {line}"
        found[match["name"].lower().replace("_", "-")] = (match["version"], re.findall(r"--hash=sha256:\w{64}", line))
    return found


def direct(spec: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / spec).read_text().splitlines():
        line = line.strip()
        if line.startswith("-r "):
            pins.update(direct(line.removeprefix("-r ").strip()))
        elif line and not line.startswith("#"):
            match = _PIN.match(line)
            assert match, f"{spec}: not pinned with ==: {line}"
            pins[match["name"].lower().replace("_", "-")] = match["version"]
    return pins


@pytest.mark.parametrize("lock", list(LOCKS))
def test_every_dependency_is_pinned_with_its_hashes(lock: str) -> None:
    requirements = locked(lock)

    assert requirements
    assert all(hashes for _version, hashes in requirements.values()), [n for n, (_, h) in requirements.items() if not h]


@pytest.mark.parametrize(("lock", "spec"), list(LOCKS.items()))
def test_each_lock_holds_its_direct_pins_at_their_versions(lock: str, spec: str) -> None:
    requirements = locked(lock)

    for name, version in direct(spec).items():
        assert requirements[name][0] == version, name


def test_the_products_lock_holds_nothing_only_the_demo_or_the_tests_need() -> None:
    product = locked("requirements.txt")

    assert not {"aiohttp", "pytest", "playwright", "ruff", "mypy", "hypothesis", "docker"} & set(product)
    assert {"django", "msal", "celery", "azure-keyvault-secrets"} <= set(product)


def test_every_install_requires_the_hashes() -> None:
    assert "pip install --require-hashes --no-deps -r requirements.txt" in (ROOT / "Dockerfile").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes --no-deps -r requirements-demo.txt" in makefile
    assert "--require-hashes --no-deps -r requirements-dev.txt" in makefile
    assert not re.search(r"pip install(?![^\n]*--require-hashes)[^\n]*-r requirements", makefile)
