"""Simulated Azure Key Vault: one or several vaults (each on a listener of its own, with its own secrets and
throttling windows; see FIDELITY.md "Several vaults"), the secrets API subset the control panel uses, and the import
of a certificate, which creates the addressable secret holding its private key."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import re
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from simulator.bearer import BearerError, bearer_token, check_bearer
from simulator.entra import SIM_KEY
from simulator.requestlog import LOG_KEY
from simulator.state import Simulator
from simulator.world import VAULT_RESOURCE

logger = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^[0-9A-Za-z-]{1,127}$")
_API_VERSION_RE = re.compile(r"^(7\.[0-9](-preview(\.[0-9]+)?)?|20(2[5-9])-[01][0-9]-[0-3][0-9](-preview)?)$")
LATEST_API_VERSION = "2026-04-01"
RECOVERABLE_DAYS = 90
MAX_VALUE_BYTES = 25 * 1024
MAX_PAGE = 25


@dataclass
class SecretVersion:
    version: str
    value: str
    content_type: str | None
    tags: dict[str, str] | None
    enabled: bool
    nbf: int | None
    exp: int | None
    created: int
    updated: int


@dataclass
class SecretEntry:
    name: str
    versions: list[SecretVersion] = field(default_factory=list)
    deleted_at: int | None = None
    scheduled_purge: int | None = None

    def latest(self) -> SecretVersion:
        return self.versions[-1]

    def find(self, version: str) -> SecretVersion | None:
        for candidate in self.versions:
            if candidate.version == version.lower():
                return candidate
        return None


class VaultStore:
    def __init__(self) -> None:
        self.secrets: dict[str, SecretEntry] = {}

    def get(self, name: str, now: float) -> SecretEntry | None:
        entry = self.secrets.get(name.lower())
        if entry is not None and entry.scheduled_purge is not None and entry.scheduled_purge <= now:
            del self.secrets[name.lower()]
            return None
        return entry

    def to_dict(self) -> dict[str, Any]:
        """Every secret with its versions and values (simulated secrets), for `from_dict`."""
        return {key: asdict(entry) for key, entry in self.secrets.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VaultStore:
        store = cls()
        for key, entry in data.items():
            versions = [SecretVersion(**version) for version in entry.get("versions", [])]
            store.secrets[key] = SecretEntry(**{**entry, "versions": versions})
        return store

    def state(self) -> dict[str, Any]:
        return {
            entry.name: {
                "deleted": entry.deleted_at is not None,
                "deleted_at": entry.deleted_at,
                "versions": [
                    {
                        "version": v.version,
                        "enabled": v.enabled,
                        "content_type": v.content_type,
                        "tags": v.tags,
                        "created": v.created,
                        "updated": v.updated,
                    }
                    for v in entry.versions
                ],
            }
            for entry in self.secrets.values()
        }


def kv_error(
    request: web.Request,
    status: int,
    code: str,
    message: str,
    *,
    inner: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if inner:
        error["innererror"] = {"code": inner}
    entry = request.get(LOG_KEY)
    if entry is not None:
        entry["detail"]["error"] = inner or code
    return _json(request, {"error": error}, status=status, headers=headers)


def _json(request: web.Request, body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    out = {
        "x-ms-keyvault-service-version": "1.9.2600.1",
        "x-ms-keyvault-network-info": "conn_type=Ipv4;addr=127.0.0.1;act_addr_fam=InterNetwork;",
        "x-ms-keyvault-region": "simulator",
        "x-ms-request-id": str(uuid.uuid4()),
        "Cache-Control": "no-cache",
    }
    client_request_id = request.headers.get("x-ms-client-request-id")
    if client_request_id:
        out["x-ms-client-request-id"] = client_request_id
    out.update(headers or {})
    text = "" if body is None else json.dumps(body, separators=(",", ":"))
    return web.Response(text=text, status=status, content_type="application/json", charset="utf-8", headers=out)


def _challenge(sim: Simulator) -> str:
    return f'Bearer authorization="{sim.authority}/{sim.world.vendor.tenant_id}", resource="{VAULT_RESOURCE}"'


def _attributes(version: SecretVersion) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "enabled": version.enabled,
        "created": version.created,
        "updated": version.updated,
        "recoveryLevel": "Recoverable+Purgeable",
        "recoverableDays": RECOVERABLE_DAYS,
    }
    if version.nbf is not None:
        attrs["nbf"] = version.nbf
    if version.exp is not None:
        attrs["exp"] = version.exp
    return attrs


def _vault_url(sim: Simulator) -> str:
    return sim.urls.vault if sim.urls.vault.endswith("/") else sim.urls.vault + "/"


def _bundle(sim: Simulator, entry: SecretEntry, version: SecretVersion, *, value: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": f"{_vault_url(sim)}secrets/{entry.name}/{version.version}",
        "attributes": _attributes(version),
    }
    if value:
        body = {"value": version.value, **body}
    if version.content_type is not None:
        body["contentType"] = version.content_type
    if version.tags is not None:
        body["tags"] = version.tags
    return body


def _deleted_fields(sim: Simulator, entry: SecretEntry) -> dict[str, Any]:
    return {
        "recoveryId": f"{_vault_url(sim)}deletedsecrets/{entry.name}",
        "deletedDate": entry.deleted_at,
        "scheduledPurgeDate": entry.scheduled_purge,
    }


def _item(sim: Simulator, entry: SecretEntry, version: SecretVersion, *, with_version: bool) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": f"{_vault_url(sim)}secrets/{entry.name}" + (f"/{version.version}" if with_version else ""),
        "attributes": _attributes(version),
    }
    if version.content_type is not None:
        item["contentType"] = version.content_type
    if version.tags is not None:
        item["tags"] = version.tags
    return item


def _not_found(request: web.Request, name: str, version: str | None = None) -> web.Response:
    shown = f"{name}/{version}" if version else name
    return kv_error(
        request,
        404,
        "SecretNotFound",
        f"A secret with (name/id) {shown} was not found in this key vault. If you recently deleted this "
        "secret you may be able to recover it using the correct recovery command. For help resolving this "
        "issue, please "
        "see https://go.microsoft.com/fwlink/?linkid=2125182",
    )


def _page(
    request: web.Request, sim: Simulator, items: list[dict[str, Any]], path: str
) -> web.Response | dict[str, Any]:
    try:
        size = int(request.query.get("maxresults", MAX_PAGE))
    except ValueError:
        return kv_error(request, 400, "BadParameter", "maxresults must be an integer.")
    if not 1 <= size <= MAX_PAGE:
        return kv_error(request, 400, "BadParameter", f"maxresults must be between 1 and {MAX_PAGE}.")
    offset = 0
    skip = request.query.get("$skiptoken")
    if skip:
        try:
            offset = int(json.loads(base64.b64decode(skip))["offset"])
        except (ValueError, KeyError, TypeError):
            return kv_error(request, 400, "BadParameter", "The $skiptoken is invalid.")
    page = items[offset : offset + size]
    next_link = None
    if offset + size < len(items):
        token = base64.b64encode(json.dumps({"offset": offset + size}).encode()).decode()
        api_version = request.query.get("api-version", LATEST_API_VERSION)
        next_link = (
            f"{_vault_url(sim)}{path.lstrip('/')}?api-version={api_version}&$skiptoken={token}&maxresults={size}"
        )
    return {"value": page, "nextLink": next_link}


async def _guard(request: web.Request, *, create: bool = False) -> web.Response | None:
    """api-version, authentication, access policy and throttling, in Key Vault's order."""
    sim: Simulator = request.app[SIM_KEY]
    api_version = request.query.get("api-version")
    if not api_version:
        return kv_error(
            request,
            400,
            "BadParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )
    if not _API_VERSION_RE.match(api_version):
        return kv_error(
            request,
            400,
            "BadParameter",
            f"The specified version ({api_version}) is not recognized. Consider using the latest supported "
            "version "
            f"({LATEST_API_VERSION}).",
        )
    challenge = {"WWW-Authenticate": _challenge(sim)}
    try:
        token = bearer_token(request)
        if token is None:
            return kv_error(
                request,
                401,
                "Unauthorized",
                "AKV10000: Request is missing a Bearer or PoP token.",
                headers=challenge,
            )
        claims = check_bearer(sim, token, VAULT_RESOURCE)
    except BearerError as exc:
        return kv_error(request, 401, "Unauthorized", f"AKV10032: {exc.reason}.", headers=challenge)
    detail = request[LOG_KEY]["detail"]
    app_id = str(claims.get("appid") or claims.get("azp") or "")
    detail["app_id"] = app_id
    if claims.get("tid") != sim.world.vendor.tenant_id:
        return kv_error(
            request,
            401,
            "Unauthorized",
            "AKV10032: Invalid issuer. Expected the vault's tenant.",
            headers=challenge,
        )
    if app_id not in sim.world.vault_principals:
        return kv_error(
            request,
            403,
            "Forbidden",
            f"The user, group or application 'appid={app_id};oid={claims.get('oid')}' does not have secrets "
            f"permission on key vault '{sim.vault_name}'. For help resolving this issue, please see "
            "https://go.microsoft.com/fwlink/?linkid=2125287",
            inner="AccessDenied",
        )
    settings = sim.settings
    if settings.vault_limits:
        if create:
            wait = sim.vault_creates.take(settings.vault_create_limit, settings.vault_window)
        else:
            wait = sim.vault_others.take(settings.vault_other_limit, settings.vault_window)
        if wait > 0:
            detail["throttled"] = True
            retry_after = str(max(1, math.ceil(wait)))
            reason = json.dumps(
                {
                    "status": 429,
                    "message": "Too many requests",
                    "limit": "secret-create" if create else "secret-other",
                }
            )
            return kv_error(
                request,
                429,
                "Throttled",
                f"Request was not processed because too many requests were received. Reason: {reason}",
                headers={"Retry-After": retry_after},
            )
    return None


def _check_name(request: web.Request, name: str) -> web.Response | None:
    if not _NAME_RE.match(name):
        return kv_error(request, 400, "BadParameter", f"The request URI contains an invalid name: {name}")
    return None


def _epoch(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("dates are Unix times in seconds")
    return int(value)


async def _create_request(request: web.Request) -> tuple[str, dict[str, Any]] | web.Response:
    """A request that creates a version (a secret's PUT, a certificate's import): the guard, the name, and a JSON body
    with a string `value`; the name and the body, or the refusal."""
    refused = await _guard(request, create=True)
    if refused:
        return refused
    name = request.match_info["name"]
    refused = _check_name(request, name)
    if refused:
        return refused
    try:
        body = await request.json()
    except ValueError:
        return kv_error(request, 400, "BadParameter", "The request body is not valid JSON.")
    if not isinstance(body, dict) or not isinstance(body.get("value"), str):
        return kv_error(request, 400, "BadParameter", "Property 'value' is required and must be a string.")
    return name, body


async def handle_set(request: web.Request) -> web.Response:
    sim: Simulator = request.app[SIM_KEY]
    asked = await _create_request(request)
    if isinstance(asked, web.Response):
        return asked
    name, body = asked
    value = body["value"]
    if len(value.encode()) > MAX_VALUE_BYTES:
        return kv_error(request, 400, "BadParameter", "Secret value exceeds the maximum size of 25 KB.")
    attrs = body.get("attributes") or {}
    tags = body.get("tags")
    if tags is not None and (not isinstance(tags, dict) or len(tags) > 15):
        return kv_error(request, 400, "BadParameter", "Tags must be an object with at most 15 entries.")
    try:
        nbf, exp = _epoch(attrs.get("nbf")), _epoch(attrs.get("exp"))
    except ValueError as exc:
        return kv_error(request, 400, "BadParameter", str(exc))
    now = int(sim.clock.now())
    entry = sim.vault.get(name, now)
    if entry is not None and entry.deleted_at is not None:
        return kv_error(
            request,
            409,
            "Conflict",
            f"Secret {entry.name} is currently in a deleted but recoverable state, and its name cannot be "
            "reused; "
            "in this state, the secret can only be recovered or purged.",
            inner="ObjectIsDeletedButRecoverable",
        )
    limit = sim.settings.vault_version_limit
    if entry is not None and limit is not None and len(entry.versions) >= limit:
        request[LOG_KEY]["detail"]["version_limit"] = True
        return kv_error(
            request,
            400,
            "BadParameter",
            f"Secret {entry.name} already has {len(entry.versions)} versions, the most the simulator allows "
            f"({limit}): a secret with more than {limit} versions can no longer be backed up, and versions "
            "cannot "
            "be deleted.",
            inner="TooManyVersions",
        )
    if entry is None:
        entry = SecretEntry(name=name)
        sim.vault.secrets[name.lower()] = entry
    version = SecretVersion(
        version=uuid.uuid4().hex,
        value=value,
        content_type=body.get("contentType"),
        tags={str(k): str(v) for k, v in tags.items()} if isinstance(tags, dict) else None,
        enabled=bool(attrs.get("enabled", True)),
        nbf=nbf,
        exp=exp,
        created=now,
        updated=now,
    )
    entry.versions.append(version)
    request[LOG_KEY]["detail"]["version"] = version.version
    return _json(request, _bundle(sim, entry, version, value=True))


def _lookup(request: web.Request, sim: Simulator, name: str) -> SecretEntry | web.Response:
    refused = _check_name(request, name)
    if refused:
        return refused
    entry = sim.vault.get(name, sim.clock.now())
    if entry is None or entry.deleted_at is not None:
        return _not_found(request, name)
    return entry


async def handle_get(request: web.Request) -> web.Response:
    sim: Simulator = request.app[SIM_KEY]
    refused = await _guard(request)
    if refused:
        return refused
    name = request.match_info["name"]
    found = _lookup(request, sim, name)
    if isinstance(found, web.Response):
        return found
    requested = request.match_info.get("version", "")
    version = found.find(requested) if requested else found.latest()
    if version is None:
        return _not_found(request, name, requested)
    if not version.enabled:
        return kv_error(
            request,
            403,
            "Forbidden",
            "Operation get is not allowed on a disabled secret.",
            inner="SecretDisabled",
        )
    request[LOG_KEY]["detail"]["version"] = version.version
    return _json(request, _bundle(sim, found, version, value=True))


async def handle_update(request: web.Request) -> web.Response:
    sim: Simulator = request.app[SIM_KEY]
    refused = await _guard(request)
    if refused:
        return refused
    name = request.match_info["name"]
    found = _lookup(request, sim, name)
    if isinstance(found, web.Response):
        return found
    requested = request.match_info.get("version", "")
    version = found.find(requested) if requested else found.latest()
    if version is None:
        return _not_found(request, name, requested)
    try:
        body = await request.json()
    except ValueError:
        return kv_error(request, 400, "BadParameter", "The request body is not valid JSON.")
    if not isinstance(body, dict):
        return kv_error(request, 400, "BadParameter", "The request body must be a JSON object.")
    attrs = body.get("attributes") or {}
    try:
        if "enabled" in attrs:
            version.enabled = bool(attrs["enabled"])
        if "nbf" in attrs:
            version.nbf = _epoch(attrs["nbf"])
        if "exp" in attrs:
            version.exp = _epoch(attrs["exp"])
    except ValueError as exc:
        return kv_error(request, 400, "BadParameter", str(exc))
    if "contentType" in body:
        version.content_type = body["contentType"]
    if "tags" in body:
        tags = body["tags"]
        version.tags = {str(k): str(v) for k, v in tags.items()} if isinstance(tags, dict) else None
    version.updated = int(sim.clock.now())
    detail = request[LOG_KEY]["detail"]
    detail["version"] = version.version
    detail["enabled"] = version.enabled
    return _json(request, _bundle(sim, found, version, value=False))


async def handle_versions(request: web.Request) -> web.Response:
    sim: Simulator = request.app[SIM_KEY]
    refused = await _guard(request)
    if refused:
        return refused
    name = request.match_info["name"]
    found = _lookup(request, sim, name)
    if isinstance(found, web.Response):
        return found
    items = [_item(sim, found, v, with_version=True) for v in found.versions]
    page = _page(request, sim, items, f"secrets/{found.name}/versions")
    return page if isinstance(page, web.Response) else _json(request, page)


async def handle_list(request: web.Request) -> web.Response:
    sim: Simulator = request.app[SIM_KEY]
    refused = await _guard(request)
    if refused:
        return refused
    now = sim.clock.now()
    entries = [e for e in list(sim.vault.secrets.values()) if sim.vault.get(e.name, now) and e.deleted_at is None]
    items = [_item(sim, e, e.latest(), with_version=False) for e in entries]
    page = _page(request, sim, items, "secrets")
    return page if isinstance(page, web.Response) else _json(request, page)


async def handle_delete(request: web.Request) -> web.Response:
    sim: Simulator = request.app[SIM_KEY]
    refused = await _guard(request)
    if refused:
        return refused
    name = request.match_info["name"]
    found = _lookup(request, sim, name)
    if isinstance(found, web.Response):
        return found
    now = int(sim.clock.now())
    found.deleted_at = now
    found.scheduled_purge = now + RECOVERABLE_DAYS * 86400
    body = {**_deleted_fields(sim, found), **_bundle(sim, found, found.latest(), value=False)}
    return _json(request, body)


def _lookup_deleted(request: web.Request, sim: Simulator, name: str) -> SecretEntry | web.Response:
    refused = _check_name(request, name)
    if refused:
        return refused
    entry = sim.vault.get(name, sim.clock.now())
    if entry is None or entry.deleted_at is None:
        return kv_error(request, 404, "SecretNotFound", f"Deleted Secret {name} not found")
    return entry


async def handle_get_deleted(request: web.Request) -> web.Response:
    sim: Simulator = request.app[SIM_KEY]
    refused = await _guard(request)
    if refused:
        return refused
    found = _lookup_deleted(request, sim, request.match_info["name"])
    if isinstance(found, web.Response):
        return found
    return _json(request, {**_deleted_fields(sim, found), **_bundle(sim, found, found.latest(), value=False)})


async def handle_list_deleted(request: web.Request) -> web.Response:
    sim: Simulator = request.app[SIM_KEY]
    refused = await _guard(request)
    if refused:
        return refused
    now = sim.clock.now()
    entries = [e for e in list(sim.vault.secrets.values()) if sim.vault.get(e.name, now) and e.deleted_at is not None]
    items = [{**_deleted_fields(sim, e), **_item(sim, e, e.latest(), with_version=False)} for e in entries]
    page = _page(request, sim, items, "deletedsecrets")
    return page if isinstance(page, web.Response) else _json(request, page)


async def handle_recover(request: web.Request) -> web.Response:
    sim: Simulator = request.app[SIM_KEY]
    refused = await _guard(request)
    if refused:
        return refused
    found = _lookup_deleted(request, sim, request.match_info["name"])
    if isinstance(found, web.Response):
        return found
    found.deleted_at = None
    found.scheduled_purge = None
    return _json(request, _bundle(sim, found, found.latest(), value=False))


async def handle_purge(request: web.Request) -> web.Response:
    sim: Simulator = request.app[SIM_KEY]
    refused = await _guard(request)
    if refused:
        return refused
    found = _lookup_deleted(request, sim, request.match_info["name"])
    if isinstance(found, web.Response):
        return found
    del sim.vault.secrets[found.name.lower()]
    return _json(request, None, status=204)


# --- certificates (import only) --------------------------------------------------------------------------------
# Import Certificate (https://learn.microsoft.com/rest/api/keyvault/certificates/import-certificate/import-certificate):
# `value` is the "Base64 encoded representation of the certificate object to import. This certificate needs to contain
# the private key"; "The certificate to be imported can be in either PFX or PEM format. If the certificate is in PEM
# format the PEM file must contain the key as well as x509 certificates. Key Vault will only accept a key in PKCS#8
# format." The policy's secret_props.contentType names the format (PKCS#12 when absent: CertificatePolicy.ContentType,
# "If not specified, Pkcs12 is assumed"). about-certificates.md: the certificate's "addressable key and secret are also
# created with the same name", and "it can be retrieved from the addressable secret with the private key in either PFX
# or PEM format": the secret holds the PEM text, or the PFX in base64, with that content type.
PEM_CONTENT_TYPE = "application/x-pem-file"
PKCS12_CONTENT_TYPE = "application/x-pkcs12"


def _imported_certificate(value: str, content_type: str) -> tuple[x509.Certificate, str] | str:
    """The certificate and the addressable secret's value of an import, or the reason it is refused."""
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        return "The certificate value is not valid base64."
    if content_type == PEM_CONTENT_TYPE:
        if b"-----BEGIN PRIVATE KEY-----" not in raw:
            return "The PEM file must contain the private key in PKCS#8 format as well as the x509 certificate."
        try:
            serialization.load_pem_private_key(raw, password=None)
            return x509.load_pem_x509_certificate(raw), raw.decode()
        except ValueError:
            return "The PEM file could not be read as a PKCS#8 private key and an x509 certificate."
    try:
        key, certificate, _ = pkcs12.load_key_and_certificates(raw, None)
    except ValueError:
        return "The PFX could not be read without a password."
    if key is None or certificate is None:
        return "The certificate needs to contain the private key."
    return certificate, base64.b64encode(raw).decode()


async def handle_import_certificate(request: web.Request) -> web.Response:
    sim: Simulator = request.app[SIM_KEY]
    asked = await _create_request(request)
    if isinstance(asked, web.Response):
        return asked
    name, body = asked
    policy = body.get("policy")
    secret_props = policy.get("secret_props") if isinstance(policy, dict) else None
    content_type = (secret_props.get("contentType") if isinstance(secret_props, dict) else None) or PKCS12_CONTENT_TYPE
    if content_type not in {PEM_CONTENT_TYPE, PKCS12_CONTENT_TYPE}:
        return kv_error(request, 400, "BadParameter", f"The content type {content_type} is not supported.")
    imported = _imported_certificate(body["value"], content_type)
    if isinstance(imported, str):
        return kv_error(request, 400, "BadParameter", imported)
    certificate, secret_value = imported
    now = int(sim.clock.now())
    entry = sim.vault.get(name, now)
    if entry is not None and entry.deleted_at is not None:
        return kv_error(
            request, 409, "Conflict", f"Certificate {name} is currently in a deleted but recoverable state."
        )
    if entry is not None and any(v.content_type not in {PEM_CONTENT_TYPE, PKCS12_CONTENT_TYPE} for v in entry.versions):
        # create-certificate.md: "If the name is already in use, then the operation fails with an HTTP status code of
        # 409 (conflict)"; a plain secret's name is in use (the words are a GUESS)
        return kv_error(request, 409, "Conflict", f"The name {name} is already in use by a secret.")
    if entry is None:
        entry = SecretEntry(name=name)
        sim.vault.secrets[name.lower()] = entry
    version = SecretVersion(
        version=uuid.uuid4().hex,
        value=secret_value,
        content_type=content_type,
        tags=None,
        enabled=True,
        nbf=int(certificate.not_valid_before_utc.timestamp()),
        exp=int(certificate.not_valid_after_utc.timestamp()),
        created=now,
        updated=now,
    )
    entry.versions.append(version)
    der = certificate.public_bytes(serialization.Encoding.DER)
    base = _vault_url(sim)
    return _json(
        request,
        {
            "id": f"{base}certificates/{entry.name}/{version.version}",
            "kid": f"{base}keys/{entry.name}/{version.version}",
            "sid": f"{base}secrets/{entry.name}/{version.version}",
            "x5t": base64.urlsafe_b64encode(hashlib.sha1(der, usedforsecurity=False).digest()).rstrip(b"=").decode(),
            "cer": base64.b64encode(der).decode(),
            "attributes": _attributes(version),
            "policy": {"secret_props": {"contentType": content_type}},
        },
    )


def setup(app: web.Application) -> None:
    router = app.router
    router.add_get("/secrets", handle_list)
    router.add_get("/secrets/", handle_list)
    router.add_put("/secrets/{name}", handle_set)
    router.add_delete("/secrets/{name}", handle_delete)
    router.add_get("/secrets/{name}", handle_get)
    router.add_get("/secrets/{name}/", handle_get)
    router.add_patch("/secrets/{name}/", handle_update)
    router.add_get("/secrets/{name}/versions", handle_versions)
    router.add_get("/secrets/{name}/{version}", handle_get)
    router.add_patch("/secrets/{name}/{version}", handle_update)
    router.add_post("/certificates/{name}/import", handle_import_certificate)
    router.add_get("/deletedsecrets", handle_list_deleted)
    router.add_get("/deletedsecrets/{name}", handle_get_deleted)
    router.add_delete("/deletedsecrets/{name}", handle_purge)
    router.add_post("/deletedsecrets/{name}/recover", handle_recover)
