"""gunicorn's settings for the image (read from the working directory, /app): the web tier's bind and workers, and
which peers may set the scheme and the client address through X-Forwarded-* headers.

gunicorn trusts those headers from 127.0.0.1 by default. In a container the proxy is not on loopback, but a
process beside gunicorn is, and an operator who sets FORWARDED_ALLOW_IPS=* "to make it work" trusts everyone: here
no peer is trusted unless CPV_TRUST_PROXY=true, the same switch that makes Django trust X-Forwarded-Proto. Then the
peers are FORWARDED_ALLOW_IPS (the proxy's addresses; default: any, as the port is published to the proxy alone).
"""

from __future__ import annotations

import os

TRUE = {"1", "true", "yes", "on"}


def trust_proxy(environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    return environ.get("CPV_TRUST_PROXY", "").strip().lower() in TRUE


bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "3"))
accesslog = "-"
if trust_proxy():
    forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "*")
else:
    forwarded_allow_ips = ""
    # Nothing a client sends may make a request https (Django's SECURE_PROXY_SSL_HEADER is off too).
    secure_scheme_headers: dict[str, str] = {}
