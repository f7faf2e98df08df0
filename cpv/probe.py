"""`python -m cpv.probe`: the web container's health check. It asks gunicorn for /healthz over the container's
loopback with the site's public host name (CPV_BASE_URL's), so that it passes where production settings serve only
that name (ALLOWED_HOSTS), and without Django: a probe must stay cheap. Exits 0 when the answer is 200 with
{"status": "ok"}, else 1 and a line on stderr."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import HTTPHandler, OpenerDirector, Request


def probe(environ: Mapping[str, str] = os.environ, *, timeout: float = 4) -> str:
    """ "" when /healthz answered ok, else why not."""
    host = urlsplit(environ.get("CPV_BASE_URL", "")).netloc or "127.0.0.1"
    port = environ.get("CPV_PROBE_PORT", "8000")
    request = Request(f"http://127.0.0.1:{port}/healthz", headers={"Host": host})
    # No redirect handler: a 301 (to https) is a failure to report, not a page to follow off the container.
    opener = OpenerDirector()
    opener.add_handler(HTTPHandler())
    try:
        with opener.open(request, timeout=timeout) as response:
            status, body = response.status, response.read(1000)
    except HTTPError as exc:
        return f"/healthz answered {exc.code} to Host {host}"
    except (URLError, OSError) as exc:
        return f"/healthz did not answer: {exc}"
    if status != 200:
        return f"/healthz answered {status} to Host {host}"
    try:
        ok = json.loads(body).get("status") == "ok"
    except (ValueError, AttributeError):
        ok = False
    return "" if ok else f"/healthz answered 200 without status ok to Host {host}"


def main() -> int:
    problem = probe()
    if problem:
        print(problem, file=sys.stderr)  # noqa: T201 - a health check's one line for `docker inspect`
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
