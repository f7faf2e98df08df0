from __future__ import annotations

import re

from tests.conftest import ROOT

READ = re.compile(r"""r\.(?:raw|bool|int|choice|required|in_production)\(\s*f?["']([A-Z_{}]+)["']""")


def test_env_example_lists_every_variable_the_settings_read() -> None:
    source = (ROOT / "cpv" / "config.py").read_text()
    names = set(READ.findall(source))
    names = {n for n in names if "{" not in n} | {
        f"{prefix}_{suffix}"
        for prefix in ("CPV", "CPV_SANDBOX")
        for suffix in ("CLIENT_ID", "CLIENT_SECRET", "CLIENT_CERTIFICATE")
    }
    example = {
        line.split("=", 1)[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }

    assert names - example == set()
