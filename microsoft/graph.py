"""Microsoft Graph as the partner's consenting user: the user's directory roles, for when no token lists them.
Failures come out as GraphError."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import requests

from microsoft import http
from microsoft.errors import MicrosoftError, retry_after

logger = logging.getLogger(__name__)

HTTP_TIMEOUT = (5, 20)
# The user's memberships (groups and roles) come a page at a time (100 by default); past this many pages the
# listing is taken for a loop.
MAX_PAGES = 100
DIRECTORY_ROLE_TYPE = "#microsoft.graph.directoryRole"


class GraphError(MicrosoftError):
    """Graph refused or failed a call. The message holds the HTTP status and Graph's error code, never a token."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        code: str = "",
        transient: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.status = status
        self.code = code
        self.transient = transient


def _session() -> requests.Session:
    return http.session()


class GraphClient:
    """Calls Microsoft Graph with one delegated access token, which never reaches a repr or a log line."""

    def __init__(self, *, base_url: str, access_token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._access_token = access_token

    def __repr__(self) -> str:
        return f"GraphClient(base_url={self.base_url!r})"

    def _get(self, url: str) -> dict[str, Any]:
        # The bearer token goes only to the Graph this client was made for, whatever a nextLink names.
        parts, base = urlsplit(url), urlsplit(self.base_url)
        if (parts.scheme, parts.netloc) != (base.scheme, base.netloc):
            raise GraphError(f"Microsoft Graph named a link on another host ({parts.netloc}); not followed")
        try:
            response = _session().get(
                url,
                headers={"Authorization": f"Bearer {self._access_token}", "Accept": "application/json"},
                timeout=HTTP_TIMEOUT,
            )
        except requests.RequestException as exc:
            raise GraphError(
                f"Microsoft Graph could not be reached ({exc.__class__.__name__})", transient=True
            ) from None
        if response.ok:
            try:
                body = response.json()
            except ValueError:
                raise GraphError("Microsoft Graph gave an unreadable answer", transient=True) from None
            if not isinstance(body, dict):
                raise GraphError("Microsoft Graph gave an unreadable answer", transient=True)
            return body
        try:
            error = response.json().get("error") or {}
        except (ValueError, AttributeError):
            error = {}
        code = str(error.get("code", "")) if isinstance(error, dict) else ""
        status = response.status_code
        raise GraphError(
            f"Microsoft Graph answered {status}" + (f" ({code})" if code else ""),
            status=status,
            code=code,
            transient=status == 429 or status >= 500,
            retry_after=retry_after(response.headers),
        )

    def directory_role_templates(self) -> list[str | None]:
        """The role template ids of the user's directory roles, direct or through groups; None for an item Graph
        returns without `roleTemplateId`. Raises GraphError."""
        # No OData cast: on a membership list it is an advanced query, refused without `ConsistencyLevel: eventual`.
        url: str | None = f"{self.base_url}/v1.0/me/transitiveMemberOf"
        templates: list[str | None] = []
        for _ in range(MAX_PAGES):
            if url is None:
                return templates
            page = self._get(url)
            for item in page.get("value") or []:
                if (
                    not isinstance(item, dict)
                    or str(item.get("@odata.type", "")).lower() != DIRECTORY_ROLE_TYPE.lower()
                ):
                    continue
                value = item.get("roleTemplateId")
                templates.append(str(value).lower() if value else None)
            next_link = page.get("@odata.nextLink")
            url = str(next_link) if next_link else None
        raise GraphError(f"Microsoft Graph kept paging after {MAX_PAGES} pages of memberships")
