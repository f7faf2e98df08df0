"""The simulated world: the vendor's tenant and apps, CSP partners, their users and customers.

A world is plain dataclasses. It comes from `World.generate(seed=...)` (the same seed always gives the
same ids, names, secrets and even the same CPV certificate) or from a JSON file (`World.from_json`),
which may be a full dump (`World.to_json`) or the short form
`{"seed": 1, "partners": 3, "customers_per_partner": 20, "redirect_uris": [...]}`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import math
import random
import string
import time
import uuid
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from simulator import directory as directories
from simulator import gdap
from simulator.directory import Directory
from simulator.gdap import AccessAssignment, Relationship, SecurityGroup

logger = logging.getLogger(__name__)

GLOBAL_ADMIN_ROLE_ID = "62e90394-69f5-4237-9190-012177145e10"
# the implicit "User" (member) role every member user holds; tokens list it in `wids`
USER_ROLE_ID = "b79fbf4d-3ef9-4689-8143-76b194e85509"
# Entra's manifest property `groupMembershipClaims` (reference-app-manifest.md); "None" means the same as null
GROUP_MEMBERSHIP_CLAIMS = (None, "None", "SecurityGroup", "ApplicationGroup", "DirectoryRole", "All")
# the values that put the user's directory roles (`wids`) into the app's tokens (access-token-claims-reference.md)
DIRECTORY_ROLE_CLAIMS = frozenset({"DirectoryRole", "All"})
# what a Conditional Access policy on an authentication context asks: MFA, or nothing (declared without a policy)
AUTHENTICATION_CONTEXT_POLICIES = (None, "mfa")
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
PARTNER_CENTER_APP_ID = "fa3d9a0c-3fb0-42cc-9193-47c7ecd2edbd"
KEY_VAULT_APP_ID = "cfa8b339-82a2-471a-a3c9-0fc0be7a4093"
ARM_APP_ID = "797f4846-ba00-4fd7-ba43-dac1f8f63013"

PARTNER_CENTER_RESOURCE = "https://api.partnercenter.microsoft.com"
GRAPH_RESOURCE = "https://graph.microsoft.com"
VAULT_RESOURCE = "https://vault.azure.net"

DEFAULT_REDIRECT_URI = "http://127.0.0.1:8000/consent/callback"
SECRET_LIFETIME = 2 * 365 * 86400

_COMPANY_WORDS = [
    "Fabrikam",
    "Northwind",
    "Adatum",
    "Tailspin",
    "Wingtip",
    "Litware",
    "Proseware",
    "Woodgrove",
    "Lucerne",
    "Alpine",
    "Coho",
    "Fourth Coffee",
    "Trey Research",
    "Wide World",
    "Humongous",
    "Blue Yonder",
    "Relecloud",
    "Lamna",
    "Munson",
    "Bellows",
    "Datum",
    "Graphic Design",
    "Southridge",
    "Consolidated",
    "Margie",
    "Nod",
    "Van Arsdel",
    "Woodgrove",
    "Fincher",
    "Tasmanian",
]
_COMPANY_SUFFIXES = ["Ltd", "GmbH", "Inc.", "SARL", "BV", "AB", "Oy", "LLC", "S.p.A.", "Pty"]
_FIRST_NAMES = ["Avery", "Blake", "Casey", "Devon", "Emery", "Finley", "Harper", "Jordan", "Kendall", "Logan"]
_LAST_NAMES = ["Nakamura", "Okafor", "Petrov", "Quinn", "Rossi", "Silva", "Tanaka", "Umar", "Vogel", "Weber"]


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _token(rng: random.Random, length: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(rng.choice(alphabet) for _ in range(length))


def _slug(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


@dataclass
class ClientSecret:
    value: str
    key_id: str
    expires_at: float


@dataclass
class ClientCertificate:
    certificate_pem: str
    private_key_pem: str | None = None
    # the keyCredential's keyId (Graph); empty for the seeded certificate, whose id is derived from its thumbprint
    key_id: str = ""
    # the keyCredential's startDateTime/endDateTime (epoch seconds) when addKey gave them; else the certificate's own
    valid_from: float | None = None
    valid_until: float | None = None

    @property
    def _der(self) -> bytes:
        cert = x509.load_pem_x509_certificate(self.certificate_pem.encode())
        return cert.public_bytes(serialization.Encoding.DER)

    @property
    def thumbprint(self) -> str:
        """SHA-1 thumbprint, upper-case hex, as the Azure portal shows it."""
        return hashlib.sha1(self._der, usedforsecurity=False).hexdigest().upper()

    @property
    def thumbprint_sha256(self) -> str:
        return hashlib.sha256(self._der).hexdigest().upper()

    def combined_pem(self) -> str:
        """Private key then certificate, the layout `CPV_CLIENT_CERTIFICATE` points at."""
        return (self.private_key_pem or "") + self.certificate_pem


@dataclass
class FederatedIdentityCredential:
    """A federated identity credential on an app registration (Graph's federatedIdentityCredential): a token whose
    `iss`, `sub` and `aud` match is accepted as the app's client assertion."""

    name: str
    issuer: str
    subject: str
    audiences: list[str] = field(default_factory=list)
    id: str = ""


@dataclass
class ManagedIdentity:
    """A user-assigned managed identity of the vendor's tenant, assigned to the host the control panel runs on:
    its client id (what a workload names it by) and its object (principal) id (its tokens' `sub`)."""

    client_id: str
    principal_id: str
    tenant_id: str


@dataclass
class AppRegistration:
    client_id: str
    display_name: str
    publisher: str
    secrets: list[ClientSecret] = field(default_factory=list)
    certificates: list[ClientCertificate] = field(default_factory=list)
    redirect_uris: list[str] = field(default_factory=list)
    multi_tenant: bool = True
    environment: str = "production"
    # resource URL -> delegated permission names ("user_impersonation", "User.Read", ...)
    delegated_permissions: dict[str, list[str]] = field(default_factory=dict)
    # the manifest's `groupMembershipClaims`: None, "None", "SecurityGroup", "ApplicationGroup", "DirectoryRole"
    # or "All"; "DirectoryRole" and "All" put `wids` into the id_tokens issued to this app
    group_membership_claims: str | None = None
    # the manifest's `identifierUris` (Application ID URIs, `api://<client id>`): an app that exposes an API
    identifier_uris: list[str] = field(default_factory=list)
    # Microsoft Graph application permissions granted (with admin consent) to the app in the vendor's own tenant:
    # the `roles` of its app-only Graph tokens there, e.g. "Application.Read.All" to read its own registration
    graph_app_roles: list[str] = field(default_factory=list)
    # registered in Partner Center's CPV experience ("Enroll as a Control Panel Vendor"): Partner Center serves
    # only enrolled CPV apps (the refusal of another is a GUESS, see FIDELITY.md)
    cpv_enrolled: bool = True
    # the cloud the app is registered in: each cloud's Entra ID knows only its own registrations
    # (authentication-national-cloud.md: "register your application separately in each Azure portal")
    cloud: str = "global"
    # the manifest's `optionalClaims.accessToken` names ("idtyp", ...): the claims a resource adds to the access
    # tokens issued for it ("the resource in the request must set this optional claim")
    access_token_optional_claims: list[str] = field(default_factory=list)
    # Certificates & secrets > Federated credentials: the external tokens (a managed identity's) the app accepts
    federated_credentials: list[FederatedIdentityCredential] = field(default_factory=list)

    @property
    def wants_directory_roles(self) -> bool:
        return self.group_membership_claims in DIRECTORY_ROLE_CLAIMS


@dataclass
class User:
    oid: str
    upn: str
    display_name: str
    global_admin: bool = False
    admin_agent: bool = False
    mfa_registered: bool = True
    # display names of further security groups the user is a direct member of (Graph lists them in memberOf)
    groups: list[str] = field(default_factory=list)
    enabled: bool = True


@dataclass
class Customer:
    tenant_id: str
    domain: str
    company_name: str
    commerce_id: str
    relationship: str = "reseller"


@dataclass
class Partner:
    tenant_id: str
    domain: str
    name: str
    mpn_id: str
    environment: str = "production"
    # None, "mfa_required" (a user without MFA gets AADSTS50076) or "block" (AADSTS53003)
    conditional_access: str | None = None
    users: list[User] = field(default_factory=list)
    customers: list[Customer] = field(default_factory=list)
    # GDAP: the tenant's security groups (AdminAgents is not among them: its members are the users whose
    # `admin_agent` is set) and its delegated admin relationships with customers, with their access assignments
    security_groups: list[SecurityGroup] = field(default_factory=list)
    relationships: list[Relationship] = field(default_factory=list)
    # the cloud the tenant lives in ("global", "usgov", "china"); its customers live there too. Each cloud's Entra ID
    # signs in only its own tenants ("All the national clouds authenticate users separately in each environment")
    cloud: str = "global"

    def group(self, group_id: str) -> SecurityGroup | None:
        return next((g for g in self.security_groups if g.id == group_id), None)

    def group_ids_of(self, user: User) -> set[str]:
        """The ids of the security groups the user is a member of: AdminAgents (the `admin_agent` flag), the
        groups named in `user.groups`, and every group listing the user. Groups hold users only, so direct
        membership is transitive membership."""
        ids = {gdap.group_id(self.tenant_id, name) for name in user.groups}
        if user.admin_agent:
            ids.add(gdap.group_id(self.tenant_id, gdap.ADMIN_AGENTS_GROUP))
        ids.update(g.id for g in self.security_groups if user.oid in g.members)
        return ids

    def gdap_roles(self, user: User, customer_tenant_id: str, now: float) -> set[str]:
        """The role template ids the user holds in the customer's tenant through GDAP (see gdap.roles_in_customer)."""
        return gdap.roles_in_customer(self.relationships, customer_tenant_id, self.group_ids_of(user), now)

    def refresh_relationships(self, now: float) -> None:
        for relationship in self.relationships:
            relationship.refresh(now)


@dataclass
class Vendor:
    """The vendor's own tenant: where its apps are registered and where its staff sign in to the control panel."""

    tenant_id: str
    domain: str
    name: str
    # the vendor's staff accounts (the control panel's Microsoft sign-in for staff)
    users: list[User] = field(default_factory=list)
    # None, "mfa_required" (a user without MFA gets AADSTS50076) or "block" (AADSTS53003)
    conditional_access: str | None = None
    # a vendor is nobody's CSP here: the same shape as a partner's home tenant, with no customers
    customers: list[Customer] = field(default_factory=list)
    # Conditional Access authentication contexts declared in the tenant ("c1".."c25") and what the policy on each
    # asks: "mfa" (a sign-in with MFA satisfies it) or None (declared, no policy: always satisfied)
    authentication_contexts: dict[str, str | None] = field(default_factory=lambda: {"c1": "mfa"})


# The home tenant of a signed-in user: a CSP partner's, or the vendor's own (its staff).
Home = Partner | Vendor


@dataclass
class World:
    seed: int | None
    vendor: Vendor
    cpv_app: AppRegistration
    sandbox_app: AppRegistration
    vault_app: AppRegistration
    partners: list[Partner] = field(default_factory=list)
    # client ids allowed to use the vault (its access policy)
    vault_principals: list[str] = field(default_factory=list)
    # the vendor's apps registered in the national clouds (their `cloud` says which)
    national_apps: list[AppRegistration] = field(default_factory=list)
    # customer tenant id -> its directory (service principals, delegated permission grants); made when first asked
    # for (`directory`), with every workload's service principal
    directories: dict[str, Directory] = field(default_factory=dict)
    # The control panel's token API as a resource of the vendor's tenant (its Application ID URI), and the vendor's
    # own systems registered there that ask it for tokens with the client-credentials grant.
    token_api_app: AppRegistration | None = None
    vendor_client_apps: list[AppRegistration] = field(default_factory=list)
    # user-assigned managed identities assigned to the control panel's hosts (the App Service endpoint serves them)
    managed_identities: list[ManagedIdentity] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._index: dict[str, tuple[str, Any]] | None = None
        self._users: dict[str, tuple[User, Home]] | None = None

    # ----- lookups -----
    def _build_index(self) -> None:
        index: dict[str, tuple[str, Any]] = {}
        users: dict[str, tuple[User, Home]] = {}
        index[self.vendor.tenant_id] = ("vendor", self.vendor)
        index[self.vendor.domain.lower()] = ("vendor", self.vendor)
        for staff in self.vendor.users:
            users[staff.oid] = (staff, self.vendor)
            users[staff.upn.lower()] = (staff, self.vendor)
        for partner in self.partners:
            index[partner.tenant_id] = ("partner", partner)
            index[partner.domain.lower()] = ("partner", partner)
            for user in partner.users:
                users[user.oid] = (user, partner)
                users[user.upn.lower()] = (user, partner)
            for customer in partner.customers:
                # a customer may have several partners; the first one wins for naming
                index.setdefault(customer.tenant_id, ("customer", customer))
                index.setdefault(customer.domain.lower(), ("customer", customer))
        self._index = index
        self._users = users

    def invalidate(self) -> None:
        self._index = None
        self._users = None

    def tenant(self, tenant: str) -> tuple[str, Any] | None:
        """("vendor" | "partner" | "customer", object) for a tenant id or domain, else None."""
        if self._index is None:
            self._build_index()
        return (self._index or {}).get(tenant.lower())

    def user(self, key: str) -> tuple[User, Home] | None:
        """A user and its home tenant (a partner, or the vendor for its staff), by object id or UPN."""
        if self._users is None:
            self._build_index()
        return (self._users or {}).get(key.lower())

    def partner(self, tenant_id: str) -> Partner | None:
        found = self.tenant(tenant_id)
        return found[1] if found and found[0] == "partner" else None

    def apps(self) -> list[AppRegistration]:
        extra = [self.token_api_app] if self.token_api_app is not None else []
        return [self.cpv_app, self.sandbox_app, self.vault_app, *extra, *self.vendor_client_apps, *self.national_apps]

    def national_app(self, cloud: str) -> AppRegistration | None:
        return next((app for app in self.national_apps if app.cloud == cloud), None)

    def tenant_cloud(self, kind: str, obj: Any) -> str:
        """The cloud a tenant found by `tenant` lives in: a partner's own, a customer's partner's, else global."""
        if kind == "partner":
            return str(obj.cloud)
        if kind == "customer":
            partners = self.partners_of(obj.tenant_id)
            return partners[0].cloud if partners else "global"
        return "global"

    def app(self, client_id: str) -> AppRegistration | None:
        for app in self.apps():
            if app.client_id == client_id:
                return app
        return None

    def partners_of(self, customer_tenant_id: str) -> list[Partner]:
        return [p for p in self.partners if any(c.tenant_id == customer_tenant_id for c in p.customers)]

    def directory(self, tenant_id: str) -> Directory | None:
        """The directory of a customer tenant (made, with every workload, when first asked for); None for a tenant
        that is nobody's customer."""
        key = tenant_id.lower()
        found = self.directories.get(key)
        if found is None:
            kind = self.tenant(key)
            if kind is None or kind[0] != "customer":
                return None
            found = self.directories[key] = Directory.new(key)
        return found

    def secret_values(self) -> list[str]:
        values = [s.value for app in self.apps() for s in app.secrets]
        values += [c.private_key_pem for app in self.apps() for c in app.certificates if c.private_key_pem]
        return values

    # ----- changes -----
    def add_customer(self, partner: Partner, *, company_name: str | None = None, rng: random.Random) -> Customer:
        """A new customer of the partner, with a working GDAP relationship (as generated customers have)."""
        customer = _make_customer(rng, len(partner.customers), company_name=company_name)
        partner.customers.append(customer)
        _seed_gdap(partner, [customer])
        self.invalidate()
        return customer

    def remove_customer(self, partner: Partner, customer_tenant_id: str) -> bool:
        before = len(partner.customers)
        partner.customers = [c for c in partner.customers if c.tenant_id != customer_tenant_id]
        partner.relationships = [r for r in partner.relationships if r.customer_tenant_id != customer_tenant_id]
        self.invalidate()
        return len(partner.customers) != before

    def set_gdap_state(
        self,
        partner: Partner,
        customer: Customer,
        state: str,
        *,
        now: float,
        user: User | None = None,
        group: str | None = None,
    ) -> list[Relationship]:
        """Replace the customer's GDAP relationships with the preset `state` (GDAP_STATES) arranged for `user`
        (default: the partner's `admin@`); `group="own"` assigns the roles to a new group of the customer's own
        holding the user. Returns the customer's relationships. Raises ValueError for an unknown state or group."""
        return _apply_gdap_state(partner, customer, state, now=now, user=user, group=group)

    # ----- (de)serialisation -----
    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "vendor": asdict(self.vendor),
            "cpv_app": asdict(self.cpv_app),
            "sandbox_app": asdict(self.sandbox_app),
            "vault_app": asdict(self.vault_app),
            "partners": [asdict(p) for p in self.partners],
            "vault_principals": list(self.vault_principals),
            "national_apps": [asdict(a) for a in self.national_apps],
            "directories": {tid: d.to_dict() for tid, d in self.directories.items()},
            "token_api_app": asdict(self.token_api_app) if self.token_api_app is not None else None,
            "vendor_client_apps": [asdict(a) for a in self.vendor_client_apps],
            "managed_identities": [asdict(m) for m in self.managed_identities],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> World:
        if "vendor" not in data:
            return cls.generate(
                seed=int(data.get("seed", 1)),
                partners=int(data.get("partners", 3)),
                customers_per_partner=int(data.get("customers_per_partner", 5)),
                redirect_uris=list(data.get("redirect_uris", [])),
                gdap_showcase=bool(data.get("gdap_showcase", False)),
                consent_showcase=bool(data.get("consent_showcase", False)),
            )
        if data.get("token_api_app"):
            token_api_app = _app_from_dict(data["token_api_app"])
            client_apps = [_app_from_dict(a) for a in data.get("vendor_client_apps", [])]
        else:
            # a state written before the token API's apps: they come from the seed, as a new world's do
            token_api_app, client_apps = _token_api_apps(data.get("seed"), data["vendor"]["name"])
        return cls(
            seed=data.get("seed"),
            vendor=_vendor_from_dict(data["vendor"]),
            cpv_app=_app_from_dict(data["cpv_app"]),
            sandbox_app=_app_from_dict(data["sandbox_app"]),
            vault_app=_app_from_dict(data["vault_app"]),
            partners=[_partner_from_dict(p) for p in data.get("partners", [])],
            vault_principals=list(data.get("vault_principals") or [data["vault_app"]["client_id"]]),
            national_apps=[_app_from_dict(a) for a in data.get("national_apps", [])],
            directories={tid: Directory.from_dict(d) for tid, d in (data.get("directories") or {}).items()},
            token_api_app=token_api_app,
            vendor_client_apps=client_apps,
            managed_identities=[ManagedIdentity(**m) for m in data.get("managed_identities", [])],
        )

    @classmethod
    def from_json(cls, text: str) -> World:
        return cls.from_dict(json.loads(text))

    @classmethod
    def load(cls, path: Path | str) -> World:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    def copy(self) -> World:
        return World.from_dict(self.to_dict())

    def add_redirect_uris(self, uris: list[str]) -> None:
        for app in (self.cpv_app, self.sandbox_app, *self.national_apps):
            for uri in uris:
                if uri not in app.redirect_uris:
                    app.redirect_uris.append(uri)

    # ----- generation -----
    @classmethod
    def generate(
        cls,
        *,
        seed: int = 1,
        partners: int = 3,
        customers_per_partner: int = 5,
        redirect_uris: list[str] | None = None,
        gdap_showcase: bool = False,
        consent_showcase: bool = False,
        now: float | None = None,
    ) -> World:
        """A reproducible world: the same arguments always give the same world. Every customer has a working GDAP
        relationship (GDAP_STATES "active"). `gdap_showcase` adds to the first partner one customer per GDAP
        state, its dates counted from `now` (default: the time of the call). `consent_showcase` adds to the first
        partner one customer per CONSENT_SHOWCASE state (its CPV app consented, drifted, missing a workload)."""
        rng = random.Random(seed)
        vendor = Vendor(tenant_id=_uuid(rng), domain="contosocpv.onmicrosoft.com", name="Contoso CPV")
        vendor.users = _make_vendor_staff(seed, vendor.domain)
        uris = list(redirect_uris or [])
        if DEFAULT_REDIRECT_URI not in uris:
            uris.insert(0, DEFAULT_REDIRECT_URI)
        # fixed far-future expiry so that the world does not depend on when it was generated
        expiry = dt.datetime(2045, 1, 1, tzinfo=dt.UTC).timestamp()
        cpv_app = AppRegistration(
            client_id=_uuid(rng),
            display_name="Contoso Control Panel",
            publisher=vendor.name,
            secrets=[ClientSecret(value=f"Sim8Q~SIMCANARY{_token(rng, 30)}", key_id=_uuid(rng), expires_at=expiry)],
            certificates=[_deterministic_certificate(f"cpv:{seed}", "Contoso Control Panel")],
            redirect_uris=list(uris),
            delegated_permissions={
                PARTNER_CENTER_RESOURCE: ["user_impersonation"],
                # the Graph permissions the control panel registers (its README): sign-in, and reading the
                # consenting user's directory roles and the partner's GDAP relationships
                GRAPH_RESOURCE: [
                    "User.Read",
                    "RoleManagement.Read.Directory",
                    "DelegatedAdminRelationship.Read.All",
                    "GroupMember.Read.All",
                ],
            },
            # read its own registration in the vendor's tenant (the control panel's self-check)
            graph_app_roles=["Application.Read.All"],
        )
        sandbox_app = AppRegistration(
            client_id=_uuid(rng),
            display_name="Contoso Control Panel (integration sandbox)",
            publisher=vendor.name,
            secrets=[ClientSecret(value=f"Sim8Q~SIMCANARY{_token(rng, 30)}", key_id=_uuid(rng), expires_at=expiry)],
            redirect_uris=list(uris),
            environment="sandbox",
            delegated_permissions=dict(cpv_app.delegated_permissions),
        )
        vault_app = AppRegistration(
            client_id=_uuid(rng),
            display_name="Contoso Control Panel token vault",
            publisher=vendor.name,
            secrets=[ClientSecret(value=f"Sim8Q~SIMCANARY{_token(rng, 30)}", key_id=_uuid(rng), expires_at=expiry)],
            multi_tenant=False,
        )
        token_api_app, client_apps = _token_api_apps(seed, vendor.name)
        world = cls(
            seed=seed,
            vendor=vendor,
            cpv_app=cpv_app,
            sandbox_app=sandbox_app,
            vault_app=vault_app,
            vault_principals=[vault_app.client_id],
            token_api_app=token_api_app,
            vendor_client_apps=client_apps,
        )
        for index in range(partners):
            world.partners.append(_make_partner(rng, index, customers_per_partner))
        for partner in world.partners:
            _seed_gdap(partner, partner.customers)
        if gdap_showcase and world.partners:
            _add_gdap_showcase(world.partners[0], seed, time.time() if now is None else now)
        if consent_showcase and world.partners:
            world.add_consent_showcase(world.partners[0])
        world.national_apps = [_national_app(cloud, seed, cpv_app) for cloud in NATIONAL_CLOUDS]
        return world

    # ----- customer tenants: the CPV app's consent -----
    def consent_app(
        self,
        customer_tenant_id: str,
        app: AppRegistration,
        grants: list[tuple[str, list[str]]],
        *,
        now: float,
        create_missing: bool = False,
    ) -> Directory:
        """The vendor app consented in the customer tenant (as Partner Center's ApplicationConsent does it): its
        service principal and one AllPrincipals grant per resource. Raises directory.MissingResource (unless
        `create_missing` makes a missing Microsoft resource's service principal)."""
        found = self.directory(customer_tenant_id)
        if found is None:
            raise ValueError(f"no customer tenant {customer_tenant_id}")
        found.consent(
            app_id=app.client_id,
            display_name=app.display_name,
            owner_tenant_id=self.vendor.tenant_id,
            publisher=app.publisher,
            grants=grants,
            now=now,
            create_missing=create_missing,
        )
        return found

    def add_consent_showcase(self, partner: Partner) -> None:
        """One customer of the partner per CONSENT_SHOWCASE state, named after it ("Consent showcase: drifted"),
        from a generator of its own (no other id moves)."""
        rng = random.Random(f"consent-showcase:{self.seed}:{partner.tenant_id}")
        for state in CONSENT_SHOWCASE:
            customer = _make_customer(rng, len(partner.customers), company_name=f"Consent showcase: {state}")
            partner.customers.append(customer)
            _seed_gdap(partner, [customer])
            self.invalidate()
            self.set_consent_state(customer.tenant_id, state, now=CONSENTED_AT)

    def set_consent_state(self, customer_tenant_id: str, state: str, *, now: float) -> Directory:
        """Arrange the CPV app's consent in the customer tenant as the preset `state` (CONSENT_STATES)."""
        if state not in CONSENT_STATES:
            raise ValueError(f"unknown consent state {state!r}; one of {', '.join(CONSENT_STATES)}")
        found = self.directory(customer_tenant_id)
        if found is None:
            raise ValueError(f"no customer tenant {customer_tenant_id}")
        found.remove_app(self.cpv_app.client_id)
        for workload in directories.DEFAULT_WORKLOADS:
            found.add_workload(workload)
        if state == "none":
            return found
        if state == "no_exchange":
            found.remove_workload("exchange")
        self.consent_app(customer_tenant_id, self.cpv_app, list(SHOWCASE_GRANTS), now=now)
        if state == "drifted":
            found.narrow(self.cpv_app.client_id, directories.GRAPH_APP_ID, [DRIFTED_PERMISSION])
        elif state == "grants_deleted":
            found.remove_grants(self.cpv_app.client_id)
        return found


def _make_vendor_staff(seed: int, domain: str) -> list[User]:
    """The vendor's staff accounts, from a generator of their own so that adding them changed no other id."""
    rng = random.Random(f"vendor-staff:{seed}")
    people = [
        ("staff.admin", "Avery Admin", True),  # an administrator of the control panel, MFA registered
        ("staff.operator", "Olu Operator", True),
        ("staff.nomfa", "Noel NoMFA", False),  # no MFA method registered
        ("staff.stranger", "Sam Stranger", True),  # a vendor employee with no control-panel account
    ]
    return [
        User(oid=_uuid(rng), upn=f"{login}@{domain}", display_name=name, mfa_registered=mfa)
        for login, name, mfa in people
    ]


def _make_partner(rng: random.Random, index: int, customers: int) -> Partner:
    word = _COMPANY_WORDS[index % len(_COMPANY_WORDS)]
    name = f"{word} Cloud Partners {index + 1}" if index >= len(_COMPANY_WORDS) else f"{word} Cloud Partners"
    domain = f"{_slug(word)}csp{index + 1}.onmicrosoft.com"
    partner = Partner(
        tenant_id=_uuid(rng),
        domain=domain,
        name=name,
        mpn_id=str(rng.randint(1_000_000, 9_999_999)),
        environment="production",
    )
    people = [
        ("admin", True, True, True),  # everything: the account that should consent
        ("globaladmin", True, False, True),  # Global Administrator without Admin Agent
        ("agent", False, True, True),  # Admin Agent who is not Global Administrator
        ("nomfa", True, True, False),  # both roles but no MFA registered
        ("user", False, False, True),  # an ordinary user
    ]
    for login, ga, aa, mfa in people:
        first = rng.choice(_FIRST_NAMES)
        last = rng.choice(_LAST_NAMES)
        partner.users.append(
            User(
                oid=_uuid(rng),
                upn=f"{login}@{domain}",
                display_name=f"{first} {last} ({login})",
                global_admin=ga,
                admin_agent=aa,
                mfa_registered=mfa,
            )
        )
    for j in range(customers):
        partner.customers.append(_make_customer(rng, j))
    return partner


def _make_customer(rng: random.Random, index: int, company_name: str | None = None) -> Customer:
    tenant_id = _uuid(rng)
    if company_name is None:
        word = _COMPANY_WORDS[rng.randrange(len(_COMPANY_WORDS))]
        company_name = f"{word} {_COMPANY_SUFFIXES[rng.randrange(len(_COMPANY_SUFFIXES))]} {index + 1}"
    return Customer(
        tenant_id=tenant_id,
        domain=f"{_slug(company_name)}{tenant_id[:6]}.onmicrosoft.com",
        company_name=company_name,
        commerce_id=_uuid(rng),
    )


def _token_api_apps(seed: int | None, publisher: str) -> tuple[AppRegistration, list[AppRegistration]]:
    """The token API's registration (single-tenant, exposing `api://<client id>`) and two of the vendor's systems
    that call it, from a generator of their own so that adding them changed no other id."""
    rng = random.Random(f"token-api:{seed}")
    expiry = dt.datetime(2045, 1, 1, tzinfo=dt.UTC).timestamp()
    api_id = _uuid(rng)
    api = AppRegistration(
        client_id=api_id,
        display_name="Contoso Control Panel token API",
        publisher=publisher,
        multi_tenant=False,
        identifier_uris=[f"api://{api_id}"],
        # configured as the README asks of the token API's registration
        access_token_optional_claims=["idtyp"],
    )
    clients = [
        AppRegistration(
            client_id=_uuid(rng),
            display_name=name,
            publisher=publisher,
            secrets=[ClientSecret(value=f"Sim8Q~SIMCANARY{_token(rng, 30)}", key_id=_uuid(rng), expires_at=expiry)],
            multi_tenant=False,
        )
        for name in ("Contoso billing", "Contoso provisioning")
    ]
    return api, clients


def _app_from_dict(data: dict[str, Any]) -> AppRegistration:
    data = dict(data)
    data["secrets"] = [ClientSecret(**s) for s in data.get("secrets", [])]
    data["certificates"] = [ClientCertificate(**c) for c in data.get("certificates", [])]
    data["federated_credentials"] = [FederatedIdentityCredential(**f) for f in data.get("federated_credentials", [])]
    return AppRegistration(**data)


def _vendor_from_dict(data: dict[str, Any]) -> Vendor:
    data = dict(data)
    data["users"] = [User(**u) for u in data.get("users", [])]
    data["customers"] = [Customer(**c) for c in data.get("customers", [])]
    return Vendor(**data)


def _partner_from_dict(data: dict[str, Any]) -> Partner:
    data = dict(data)
    data["users"] = [User(**u) for u in data.get("users", [])]
    data["customers"] = [Customer(**c) for c in data.get("customers", [])]
    written_before_gdap = "relationships" not in data
    data["security_groups"] = [SecurityGroup(**g) for g in data.get("security_groups", [])]
    data["relationships"] = [Relationship.from_dict(r) for r in data.get("relationships", [])]
    partner = Partner(**data)
    if written_before_gdap:
        # a world (or state file) written before GDAP was modelled: its customers keep working
        _seed_gdap(partner, partner.customers)
    return partner


# ----- customer tenants -----
# the presets of `World.set_consent_state` (and of the control call `consent_state`): the CPV app not consented;
# consented with SHOWCASE_GRANTS; consented and then drifted (DRIFTED_PERMISSION taken out of the Graph grant);
# consented and then its grants deleted; consented in a tenant without Exchange Online's service principal
CONSENT_STATES = ("none", "consented", "drifted", "grants_deleted", "no_exchange")
CONSENT_SHOWCASE = ("consented", "drifted", "no_exchange")
# what the control panel's ApplicationConsent grants by default (its CPV_APPLICATION_GRANTS)
SHOWCASE_GRANTS = ((directories.GRAPH_APP_ID, ["Domain.ReadWrite.All", "User.ReadWrite.All", "Directory.Read.All"]),)
DRIFTED_PERMISSION = "Directory.Read.All"
CONSENTED_AT = dt.datetime(2026, 6, 1, tzinfo=dt.UTC).timestamp()


# ----- GDAP -----
# the presets of `World.set_gdap_state` (and of the control call `gdap_state`)
GDAP_STATES = (
    "active",
    "none",
    "approval_pending",
    "no_consent_role",
    "role_unassigned",
    "assignment_pending",
    "user_not_in_group",
    "expiring",
    "expiring_global_admin",
    "expired",
    "terminated",
    "mlt",
)


def _gdap_uuid(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "gdap:" + ":".join(parts)))


def _relationship_id(partner: Partner, *parts: str) -> str:
    # Graph's ids are two GUIDs joined by a dash; in Microsoft's examples the second is the same for every
    # relationship of a partner (GUESS: the partner's tenant id)
    return f"{_gdap_uuid(partner.tenant_id, *parts)}-{partner.tenant_id}"


def _default_group(partner: Partner) -> SecurityGroup:
    """The partner's "GDAP Cloud Application Administrators" group (admin@ and agent@), made when missing."""
    found = partner.group(gdap.group_id(partner.tenant_id, gdap.DEFAULT_GROUP))
    if found is not None:
        return found
    logins = {"admin", "agent"}
    members = [u.oid for u in partner.users if u.upn.split("@", 1)[0] in logins]
    if not members:
        members = [u.oid for u in partner.users if u.admin_agent]
    group = SecurityGroup(gdap.group_id(partner.tenant_id, gdap.DEFAULT_GROUP), gdap.DEFAULT_GROUP, members)
    partner.security_groups.append(group)
    return group


def _seed_gdap(partner: Partner, customers: list[Customer]) -> None:
    """A working relationship per customer, as generated worlds have them: Cloud Application Administrator and
    Directory Readers for P730D, extended by P180D, active since GENERATED_ACTIVATED, assigned to the default
    group. Ids derive from the tenant ids (a world's other ids do not move)."""
    group = _default_group(partner)
    activated = gdap.GENERATED_ACTIVATED
    for customer in customers:
        relationship = Relationship(
            id=_relationship_id(partner, customer.tenant_id, "generated"),
            display_name=f"{customer.company_name} GDAP"[:50],
            customer_tenant_id=customer.tenant_id,
            customer_name=customer.company_name,
            roles=list(gdap.DEFAULT_ROLES),
            status="active",
            duration=gdap.DEFAULT_DURATION,
            auto_extend=gdap.AUTO_EXTEND,
            created=activated - 3 * gdap.DAY,
            last_modified=activated,
            activated=activated,
            end=activated + gdap.duration_seconds(gdap.DEFAULT_DURATION),
            assignments=[
                AccessAssignment(
                    id=_gdap_uuid(partner.tenant_id, customer.tenant_id, "generated", "assignment"),
                    group_id=group.id,
                    roles=list(gdap.DEFAULT_ROLES),
                    status="active",
                    created=activated,
                    last_modified=activated,
                )
            ],
        )
        partner.relationships.append(relationship)


def _find_partner_user(partner: Partner, user: User | None) -> User:
    if user is not None:
        return user
    admin = next((u for u in partner.users if u.upn.split("@", 1)[0] == "admin"), None)
    if admin is None:
        raise ValueError("the partner has no admin@ user: name the user")
    return admin


def _group_named(partner: Partner, name: str, members: list[str]) -> SecurityGroup:
    group = partner.group(gdap.group_id(partner.tenant_id, name))
    if group is None:
        group = SecurityGroup(gdap.group_id(partner.tenant_id, name), name, [])
        partner.security_groups.append(group)
    for oid in members:
        if oid not in group.members:
            group.members.append(oid)
    return group


def _apply_gdap_state(
    partner: Partner, customer: Customer, state: str, *, now: float, user: User | None, group: str | None
) -> list[Relationship]:
    if state not in GDAP_STATES:
        raise ValueError(f"unknown GDAP state {state!r}; one of {', '.join(GDAP_STATES)}")
    if group not in (None, "own"):
        raise ValueError('group must be null or "own"')
    person = _find_partner_user(partner, user)
    partner.relationships = [r for r in partner.relationships if r.customer_tenant_id != customer.tenant_id]
    if state == "none":
        return []
    serial = uuid.uuid4().hex
    day = gdap.DAY
    if state == "mlt":
        relationship = _mlt_relationship(partner, customer, serial, now)
        partner.relationships.append(relationship)
        return [relationship]
    if group == "own":
        container = _group_named(partner, f"GDAP {customer.company_name}", [person.oid])
    elif state == "user_not_in_group":
        container = _group_named(partner, f"GDAP {customer.company_name} (no members)", [])
    else:
        container = _group_named(partner, gdap.DEFAULT_GROUP, [person.oid])
    roles = list(gdap.DEFAULT_ROLES)
    if state == "no_consent_role":
        roles = [gdap.DIRECTORY_READERS, gdap.GLOBAL_READER]
    elif state == "expiring_global_admin":
        roles = [gdap.GLOBAL_ADMINISTRATOR, gdap.DIRECTORY_READERS]
    duration = gdap.DEFAULT_DURATION
    auto_extend = gdap.AUTO_EXTEND
    status = "active"
    assignment_status: str | None = "active"
    activated: float | None = now - 30 * day
    end: float | None = None
    if state == "approval_pending":
        status, assignment_status, activated = "approvalPending", None, None
    elif state == "role_unassigned":
        assignment_status = None
    elif state == "assignment_pending":
        assignment_status = "pending"
    elif state in ("expiring", "expiring_global_admin"):
        auto_extend = gdap.NO_AUTO_EXTEND
        activated = now + 10 * day - gdap.duration_seconds(duration)
    elif state == "expired":
        auto_extend = gdap.NO_AUTO_EXTEND
        activated = now - 10 * day - gdap.duration_seconds(duration)
        status, assignment_status = "expired", "deleted"
    elif state == "terminated":
        status, assignment_status, end = "terminated", "deleted", now - 5 * day
    created = (now - 3 * day) if activated is None else activated - 2 * day
    if activated is not None and end is None:
        end = activated + gdap.duration_seconds(duration)
    last_modified = end if status in ("expired", "terminated") and end is not None else (activated or created)
    relationship = Relationship(
        id=_relationship_id(partner, customer.tenant_id, serial),
        display_name=f"{customer.company_name} {state}"[:50],
        customer_tenant_id=customer.tenant_id,
        customer_name=customer.company_name,
        roles=roles,
        status=status,
        duration=duration,
        auto_extend=auto_extend,
        created=created,
        last_modified=last_modified,
        activated=activated,
        end=end,
    )
    if assignment_status is not None:
        relationship.assignments.append(
            AccessAssignment(
                id=_gdap_uuid(relationship.id, "assignment"),
                group_id=container.id,
                roles=list(roles),
                status=assignment_status,
                created=activated or created,
                last_modified=last_modified,
            )
        )
    partner.relationships.append(relationship)
    return [relationship]


def _mlt_relationship(partner: Partner, customer: Customer, serial: str, now: float) -> Relationship:
    """The relationship the Microsoft-led transition created: named `MLT_{first 8 of the partner tenant}_{first 8
    of the customer tenant}_{8 random}`, nine roles for one year, all assigned to AdminAgents, two to
    HelpdeskAgents."""
    activated = now - 200 * gdap.DAY
    helpdesk = _group_named(partner, gdap.HELPDESK_AGENTS_GROUP, [])
    relationship = Relationship(
        id=_relationship_id(partner, customer.tenant_id, serial),
        display_name=f"MLT_{partner.tenant_id[:8]}_{customer.tenant_id[:8]}_{serial[:8]}",
        customer_tenant_id=customer.tenant_id,
        customer_name=customer.company_name,
        roles=list(gdap.MLT_ROLES),
        status="active",
        duration=gdap.MLT_DURATION,
        auto_extend=gdap.NO_AUTO_EXTEND,
        created=activated,
        last_modified=activated,
        activated=activated,
        end=activated + gdap.duration_seconds(gdap.MLT_DURATION),
    )
    for name, container, roles in (
        ("admin", gdap.group_id(partner.tenant_id, gdap.ADMIN_AGENTS_GROUP), gdap.MLT_ROLES),
        ("helpdesk", helpdesk.id, gdap.MLT_HELPDESK_ROLES),
    ):
        relationship.assignments.append(
            AccessAssignment(
                id=_gdap_uuid(relationship.id, name),
                group_id=container,
                roles=list(roles),
                status="active",
                created=activated,
                last_modified=activated,
            )
        )
    return relationship


def _add_gdap_showcase(partner: Partner, seed: int, now: float) -> None:
    """One customer of the partner per GDAP state, named after it ("GDAP showcase: approval pending"), from a
    generator of its own (no other id moves)."""
    rng = random.Random(f"gdap-showcase:{seed}")
    for state in GDAP_STATES:
        name = "GDAP showcase: " + state.replace("_", " ")
        customer = _make_customer(rng, len(partner.customers), company_name=name)
        partner.customers.append(customer)
        _apply_gdap_state(partner, customer, state, now=now, user=None, group=None)


# ----- a reproducible RSA key and certificate -----
_SMALL_PRIMES = [p for p in range(3, 20000) if all(p % d for d in range(2, math.isqrt(p) + 1))]
_SMALL_PRIMES_PRODUCT = math.prod(_SMALL_PRIMES)


def _is_probable_prime(n: int, rng: random.Random) -> bool:
    if math.gcd(n, _SMALL_PRIMES_PRODUCT) != 1 or pow(2, n - 1, n) != 1:
        return False
    d, r = n - 1, 0
    while d % 2 == 0:
        d //= 2
        r += 1
    for _ in range(8):
        a = rng.randrange(2, n - 2)
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _random_prime(rng: random.Random, bits: int) -> int:
    while True:
        candidate = rng.getrandbits(bits) | (3 << (bits - 2)) | 1
        if _is_probable_prime(candidate, rng):
            return candidate


NATIONAL_CLOUDS = ("usgov", "china")


def _national_app(cloud: str, seed: int, cpv_app: AppRegistration) -> AppRegistration:
    """The vendor's app registered again in a national cloud: its own client id, secret and certificate (from an
    rng of its own, so that adding it changed no other id of a seeded world)."""
    rng = random.Random(f"national:{cloud}:{seed}")
    expiry = dt.datetime(2045, 1, 1, tzinfo=dt.UTC).timestamp()
    return AppRegistration(
        client_id=_uuid(rng),
        display_name=cpv_app.display_name,
        publisher=cpv_app.publisher,
        secrets=[ClientSecret(value=f"Sim8Q~SIMCANARY{_token(rng, 30)}", key_id=_uuid(rng), expires_at=expiry)],
        certificates=[_deterministic_certificate(f"cpv:{cloud}:{seed}", cpv_app.display_name)],
        redirect_uris=list(cpv_app.redirect_uris),
        delegated_permissions=dict(cpv_app.delegated_permissions),
        cloud=cloud,
    )


@lru_cache(maxsize=8)
def _deterministic_certificate(seed: str, common_name: str) -> ClientCertificate:
    """An RSA-2048 key and self-signed certificate derived from `seed` (a test credential only)."""
    rng = random.Random(f"rsa:{seed}")
    e = 65537
    while True:
        p, q = _random_prime(rng, 1024), _random_prime(rng, 1024)
        phi = (p - 1) * (q - 1)
        if p != q and math.gcd(e, phi) == 1:
            break
    d = pow(e, -1, phi)
    key = rsa.RSAPrivateNumbers(
        p=p,
        q=q,
        d=d,
        dmp1=rsa.rsa_crt_dmp1(d, p),
        dmq1=rsa.rsa_crt_dmq1(d, q),
        iqmp=rsa.rsa_crt_iqmp(p, q),
        public_numbers=rsa.RSAPublicNumbers(e, p * q),
    ).private_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(rng.getrandbits(120) | 1)
        .not_valid_before(dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2045, 1, 1, tzinfo=dt.UTC))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return ClientCertificate(
        certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode(), private_key_pem=key_pem
    )


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
