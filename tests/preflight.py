"""Run by `make test` before pytest: the services the suite needs answer, or it says how to start them."""

from __future__ import annotations

import os
import socket
import sys
from urllib.parse import urlsplit

PG_START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
REDIS_START = 'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no'


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


def main() -> int:
    problems = []
    database_url = os.environ.get("DATABASE_URL", "")
    if database_url.startswith(("postgres://", "postgresql://")):
        parts = urlsplit(database_url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 5432
        if not _reachable(host, port):
            problems.append(f"PostgreSQL does not answer at {host}:{port}. Start it with:\n    {PG_START}")
    redis_url = os.environ.get("CPV_TEST_REDIS_URL", "")
    if redis_url:
        parts = urlsplit(redis_url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 6379
        if not _reachable(host, port):
            problems.append(f"Redis does not answer at {host}:{port}. Start it with:\n    {REDIS_START}")
    for tool, package in (("/usr/bin/chromium", "chromium"), ("/usr/bin/certutil", "libnss3-tools")):
        if not os.path.exists(tool):
            problems.append(
                f"{tool} is missing (the browser tests drive it). Install it with:\n    apt-get install {package}"
            )
    if problems:
        sys.stderr.write("The test suite needs these, and they are not here:\n")
        for problem in problems:
            sys.stderr.write(f"  - {problem}\n")
        sys.stderr.write("(or point DATABASE_URL and CPV_TEST_REDIS_URL at running ones)\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
