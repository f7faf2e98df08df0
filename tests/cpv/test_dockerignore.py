"""The image's build context, as Docker reads it through .dockerignore: the product's code and nothing that
could hold a secret (a .env, the var/ directory with its keys and database, certificates, the git history) or
that the product does not run (tests, benchmarks, the simulator)."""

from __future__ import annotations

import shutil
from pathlib import Path

from docker.utils.build import exclude_paths

from tests.conftest import ROOT

SECRET_OR_UNNEEDED = [
    ".env",
    ".env.production",
    "var/vault.key",
    "var/secret_key",
    "var/db.sqlite3",
    "cpv-app-certificate.pem",
    "cpv/client.pem",
    "partners/leftover.key",
    ".git/config",
    ".venv/bin/python",
    "tests/test_anything.py",
    "bench/seed.py",
    "simulator/entra.py",
    "test-output/screenshots/home.png",
    "cpv/__pycache__/settings.cpython-311.pyc",
    "docker-compose.override.yml",
]
NEEDED = [
    "manage.py",
    "requirements.txt",
    "cpv/settings.py",
    "microsoft/identity.py",
    "partners/models.py",
    "tokens/vault/local.py",
    "customers/services.py",
    "consent/services.py",
    "dashboard/views.py",
    "templates/base.html",
    "static/css/site.css",
]


def build_context(tmp_path: Path) -> set[str]:
    shutil.copy(ROOT / ".dockerignore", tmp_path / ".dockerignore")
    for name in SECRET_OR_UNNEEDED + NEEDED:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    patterns = [
        line.strip()
        for line in (tmp_path / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return set(exclude_paths(str(tmp_path), patterns))


def test_nothing_secret_or_unneeded_reaches_the_image(tmp_path: Path) -> None:
    context = build_context(tmp_path)

    assert not context & set(SECRET_OR_UNNEEDED)


def test_the_product_itself_does(tmp_path: Path) -> None:
    context = build_context(tmp_path)

    assert set(NEEDED) <= context


def test_every_top_level_package_of_the_product_is_allowed() -> None:
    allowed = {line.strip().strip("!/") for line in (ROOT / ".dockerignore").read_text().splitlines()}
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists() and p.name not in {"tests", "bench"}}

    assert packages - {"simulator"} <= allowed
    assert "simulator" not in allowed
