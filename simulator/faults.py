"""Injected faults: an error answer, an exact Entra error, or latency, for matching requests."""

from __future__ import annotations

import itertools
import logging
import random
import re
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

SERVICES = ("entra", "partner_center", "vault", "graph")


@dataclass
class Fault:
    """One injected fault.

    `times` is how many matching requests it hits (None: until removed); `rate` makes it hit only
    that fraction of the matching requests. A fault with `entra_code` answers the token endpoint
    with Entra's own error body for that AADSTS code and can be narrowed to a tenant, a user (object
    id or UPN), a grant type or a client id. Otherwise it answers `status` with `body` and `headers`
    (after `latency` seconds; a fault with only `latency` delays the real answer).
    """

    id: str
    service: str | None = None
    method: str | None = None
    path: str | None = None
    status: int | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    latency: float = 0.0
    times: int | None = 1
    rate: float | None = None
    entra_code: int | None = None
    tenant: str | None = None
    user: str | None = None
    grant_type: str | None = None
    client_id: str | None = None
    hits: int = 0

    def __post_init__(self) -> None:
        self._path_re = re.compile(self.path) if self.path else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "service": self.service,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "body": self.body,
            "headers": self.headers,
            "latency": self.latency,
            "times": self.times,
            "rate": self.rate,
            "entra_code": self.entra_code,
            "tenant": self.tenant,
            "user": self.user,
            "grant_type": self.grant_type,
            "client_id": self.client_id,
            "hits": self.hits,
        }

    def _matches_http(self, service: str, method: str, path: str) -> bool:
        if self.service and self.service != service:
            return False
        if self.method and self.method.upper() != method.upper():
            return False
        return not (self._path_re and not self._path_re.search(path))


class FaultSet:
    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)
        self._rng = random.Random()

    @property
    def active(self) -> bool:
        return bool(self._faults)

    def add(self, **kwargs: Any) -> Fault:
        service = kwargs.get("service")
        if service is not None and service not in SERVICES:
            raise ValueError(f"unknown service {service!r}; expected one of {', '.join(SERVICES)}")
        if kwargs.get("entra_code") is not None:
            kwargs["service"] = "entra"
        fault = Fault(id=f"fault-{next(self._ids)}", **kwargs)
        if fault.times is not None and fault.times < 1:
            raise ValueError("times must be at least 1 (or null for no limit)")
        self._faults.append(fault)
        logger.info("fault %s added: %s", fault.id, fault.to_dict())
        return fault

    def remove(self, fault_id: str) -> bool:
        before = len(self._faults)
        self._faults = [f for f in self._faults if f.id != fault_id]
        return len(self._faults) != before

    def clear(self) -> None:
        self._faults.clear()

    def list(self) -> list[Fault]:
        return list(self._faults)

    def _consume(self, fault: Fault) -> bool:
        if fault.rate is not None and self._rng.random() >= fault.rate:
            return False
        fault.hits += 1
        if fault.times is not None:
            fault.times -= 1
            if fault.times <= 0:
                self._faults.remove(fault)
        return True

    def match_http(self, service: str, method: str, path: str) -> Fault | None:
        """The first plain (non-Entra-code) fault for this request, consumed; else None."""
        for fault in list(self._faults):
            if fault.entra_code is None and fault._matches_http(service, method, path) and self._consume(fault):
                return fault
        return None

    def match_entra(
        self,
        *,
        path: str,
        tenant: str,
        tid: str | None,
        user: tuple[str, str] | None,
        grant_type: str,
        client_id: str,
    ) -> Fault | None:
        """The first Entra-code fault for this token request, consumed; else None."""
        for fault in list(self._faults):
            if fault.entra_code is None or not fault._matches_http("entra", "POST", path):
                continue
            if fault.tenant and fault.tenant.lower() not in {tenant.lower(), (tid or "").lower()}:
                continue
            if fault.user and (user is None or fault.user.lower() not in {u.lower() for u in user}):
                continue
            if fault.grant_type and fault.grant_type != grant_type:
                continue
            if fault.client_id and fault.client_id != client_id:
                continue
            if self._consume(fault):
                return fault
        return None
