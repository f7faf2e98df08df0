"""Partner Center's REST API as App+User (customers, organization profile, ApplicationConsent), failing with
typed errors that say whether retrying can help."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from microsoft import http
from microsoft.errors import MicrosoftError, retry_after

logger = logging.getLogger(__name__)

HTTP_TIMEOUT = (5, 30)
API_VERSION_PREFIX = "/v1"


class PartnerCenterError(MicrosoftError):
    """Partner Center refused or failed a call; the message holds the status and Partner Center's code, no secret."""

    kind = "partner_center_error"

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        code: str = "",
        request_id: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.status = status
        self.code = code
        self.request_id = request_id


class Unauthorized(PartnerCenterError):
    """401: the token is not accepted (expired, wrong audience, or MFA missing from it)."""

    kind = "unauthorized"


class MfaRequired(Unauthorized):
    """401 code 900421: the sign-in lacked MFA, as will any token of this consent; consent again with MFA."""

    kind = "mfa_required"


# Partner Center's error code for an App+User call whose token lacks MFA.
MFA_REQUIRED_CODE = "900421"


class Forbidden(PartnerCenterError):
    """403: the signed-in user lacks the Admin Agent role, or the tenant is not a partner."""

    kind = "forbidden"


class NotFound(PartnerCenterError):
    kind = "not_found"


class AlreadyExists(PartnerCenterError):
    """The consent (or other entry) is already there: for ApplicationConsent, that is success."""

    kind = "already_exists"


class Throttled(PartnerCenterError):
    """429: wait `retry_after` seconds."""

    transient = True
    kind = "throttled"


class Transient(PartnerCenterError):
    """A 5xx answer, a timeout or a broken connection."""

    transient = True
    kind = "transient"


@dataclass(frozen=True)
class CustomerRecord:
    tenant_id: str
    company_name: str
    domain: str
    relationship: str


def _session() -> requests.Session:
    return http.session()


def continuation_headers(link: dict[str, Any]) -> dict[str, str]:
    """The headers for a `links.next` page: its continuation token only, never a header the link names."""
    for header in link.get("headers") or []:
        if isinstance(header, dict) and str(header.get("key", "")).lower() == "ms-continuationtoken":
            value = header.get("value")
            if isinstance(value, str) and value and "\n" not in value and "\r" not in value:
                return {"MS-ContinuationToken": value}
    return {}


class PartnerCenterClient:
    """Calls Partner Center as one partner's user. `access_token` never reaches a repr or a log line."""

    def __init__(self, *, base_url: str, access_token: str, correlation_id: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._access_token = access_token
        self.correlation_id = correlation_id or str(uuid.uuid4())
        # Partner Center's `isMfaCompliant` on the last answer that carried it (None: none did yet).
        self.mfa_compliant: bool | None = None

    def __repr__(self) -> str:
        return f"PartnerCenterClient(base_url={self.base_url!r}, correlation_id={self.correlation_id!r})"

    def _url(self, path_or_uri: str) -> str:
        parts = urlsplit(path_or_uri)
        if parts.scheme or parts.netloc:
            # The bearer token goes only to the Partner Center this client was made for.
            base = urlsplit(self.base_url)
            if (parts.scheme, parts.netloc) != (base.scheme, base.netloc):
                raise PartnerCenterError(f"Partner Center named a link on another host ({parts.netloc}); not followed")
            return path_or_uri
        path = path_or_uri if path_or_uri.startswith("/") else f"/{path_or_uri}"
        if not path.startswith(API_VERSION_PREFIX + "/"):
            path = API_VERSION_PREFIX + path
        return self.base_url + path

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        request_id: str | None = None,
    ) -> requests.Response:
        """One call, asking Partner Center for its MFA verdict (kept in `mfa_compliant`): the 2xx response, else a
        PartnerCenterError. Pass the same `request_id` (MS-RequestId) when retrying."""
        request_id = request_id or str(uuid.uuid4())
        all_headers = {
            **(headers or {}),
            "Authorization": f"Bearer {self._access_token}",
            "Accept": "application/json",
            "MS-RequestId": request_id,
            "MS-CorrelationId": self.correlation_id,
            "ValidateMfa": "true",
        }
        try:
            response = _session().request(method, self._url(path), json=json, headers=all_headers, timeout=HTTP_TIMEOUT)
        except requests.Timeout:
            raise Transient(f"Partner Center did not answer {method} {path} in time", request_id=request_id) from None
        except requests.RequestException as exc:
            raise Transient(
                f"Partner Center could not be reached for {method} {path} ({exc.__class__.__name__})",
                request_id=request_id,
            ) from None
        compliant = mfa_compliance(response)
        if compliant is not None:
            self.mfa_compliant = compliant
        if response.ok:
            return response
        raise _error(response, method, path, request_id)

    def organization_profile(self) -> dict[str, Any]:
        """The partner's organization profile: proves the token works as App+User with Admin Agent."""
        return dict(self.request("GET", "/profiles/organization").json())

    def customers(self, *, page_size: int = 500) -> Iterator[CustomerRecord]:
        """Every customer, following `links.next` to the end."""
        path = f"/customers?size={page_size}"
        headers: dict[str, str] = {}
        seen: set[tuple[str, str]] = set()
        while True:
            page = self.request("GET", path, headers=headers).json()
            for item in page.get("items", []):
                profile = item.get("companyProfile") or {}
                yield CustomerRecord(
                    tenant_id=str(profile.get("tenantId") or item.get("id", "")).lower(),
                    company_name=str(profile.get("companyName", "")),
                    domain=str(profile.get("domain", "")),
                    relationship=str(item.get("relationshipToPartner", "")),
                )
            following = (page.get("links") or {}).get("next")
            if not following:
                return
            headers = continuation_headers(following)
            path = following["uri"]
            page_key = (path, headers.get("MS-ContinuationToken", ""))
            if page_key in seen:
                raise PartnerCenterError("Partner Center returned the same next page twice")
            seen.add(page_key)

    def application_consent_create(
        self, *, customer_tenant_id: str, body: dict[str, Any], request_id: str | None = None
    ) -> bool:
        """POST the app's consent in a customer tenant: True if created, False if already there."""
        try:
            self.request(
                "POST",
                f"/customers/{customer_tenant_id}/applicationconsents",
                json=body,
                request_id=request_id,
            )
        except AlreadyExists:
            return False
        return True

    def application_consent_delete(
        self, *, customer_tenant_id: str, application_id: str, request_id: str | None = None
    ) -> bool:
        """DELETE the vendor app's consent; returns False when there was none to delete."""
        try:
            self.request(
                "DELETE",
                f"/customers/{customer_tenant_id}/applicationconsents/{application_id}",
                request_id=request_id,
            )
        except NotFound:
            return False
        return True


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, str) else ""
    return True if text == "true" else False if text == "false" else None


# Which form of `isMfaCompliant` this process has seen, so the log says it once per form.
_FORMS_SEEN: set[str] = set()


def mfa_compliance(response: requests.Response) -> bool | None:
    """Partner Center's `isMfaCompliant` from a header or the JSON body (Microsoft says neither), or None."""
    found: tuple[str, Any] | None = None
    header = response.headers.get("isMfaCompliant")  # requests compares header names case-insensitively
    if header is not None:
        found = ("header", header)
    elif "json" in response.headers.get("Content-Type", "").lower() and response.content:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            for key, value in body.items():
                if isinstance(key, str) and key.lower() == "ismfacompliant":
                    found = ("body", value)
                    break
    if found is None:
        return None
    form, value = found
    if form not in _FORMS_SEEN:
        _FORMS_SEEN.add(form)
        logger.info(
            "Partner Center answers isMfaCompliant as a %s",
            "response header" if form == "header" else "field of the JSON body",
        )
    return _as_bool(value)


def _error(response: requests.Response, method: str, path: str, request_id: str) -> PartnerCenterError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    code = str(body.get("code", ""))
    description = str(body.get("description", ""))[:300]
    status = response.status_code
    summary = f"Partner Center answered {status} to {method} {path.split('?', 1)[0]}"
    if code or description:
        summary += f": {description or code} (code {code or 'none'})"
    kwargs: dict[str, Any] = {"status": status, "code": code, "request_id": request_id}
    # An existing consent comes back as 409 or as an error saying so; both mean it is there.
    if status == 409 or "permission entry already exists" in description.lower():
        return AlreadyExists(summary, **kwargs)
    if status == 429:
        return Throttled(summary, retry_after=retry_after(response.headers), **kwargs)
    if status >= 500:
        return Transient(summary, **kwargs)
    if status == 401 and code == MFA_REQUIRED_CODE:
        return MfaRequired(summary, **kwargs)
    if status == 401:
        return Unauthorized(summary, **kwargs)
    if status == 403:
        return Forbidden(summary, **kwargs)
    if status == 404:
        return NotFound(summary, **kwargs)
    return PartnerCenterError(summary, **kwargs)
